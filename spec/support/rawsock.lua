-- spec/support/rawsock.lua: what the load generators share
-- (spec/04-reload/load.lua, spec/07-hardening/load_client.lua): non-blocking
-- TCP sockets and poll(2) through the FFI with the errno values they meet,
-- `--key value` arguments, and the files they are driven by.

local ffi = require "ffi"
local bit = require "bit"

ffi.cdef [[
int socket(int domain, int type, int protocol);
int connect(int fd, const void *addr, unsigned int len);
long send(int fd, const void *buf, unsigned long len, int flags);
long recv(int fd, void *buf, unsigned long len, int flags);
int close(int fd);
int getsockopt(int fd, int level, int name, void *val, unsigned int *len);
struct rs_pollfd { int fd; short events; short revents; };
int poll(struct rs_pollfd *fds, unsigned long n, int timeout);
unsigned short htons(unsigned short v);
int inet_pton(int af, const char *src, void *dst);
struct rs_sockaddr_in { unsigned short family; unsigned short port; unsigned int addr; char zero[8]; };
char *strerror(int errnum);
]]
local C = ffi.C

local AF_INET, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC = 2, 1, 2048, 524288

local M = {
  C = C,
  SOL_SOCKET = 1, SO_ERROR = 4,
  MSG_NOSIGNAL = 0x4000, MSG_DONTWAIT = 0x40,
  POLLIN = 1, POLLOUT = 4, POLLERR = 8, POLLHUP = 16,
  EINTR = 4, EAGAIN = 11, EINPROGRESS = 115,
  ECONNRESET = 104, EPIPE = 32, ECONNREFUSED = 111,
}

-- `--key value` pairs of argv into a table; prog names the script in errors.
function M.args(argv, prog)
  local args, i = {}, 1
  while i <= #argv do
    local k = argv[i]:match("^%-%-(.+)$")
    if not k then error(prog .. ": unexpected argument " .. argv[i]) end
    args[k] = argv[i + 1]
    i = i + 2
  end
  return args
end

-- An IPv4 address to connect to.
function M.address(host, port)
  local addr = ffi.new("struct rs_sockaddr_in")
  addr.family = AF_INET
  addr.port = C.htons(port)
  assert(C.inet_pton(AF_INET, host, ffi.cast("char *", addr) + 4) == 1, "bad host " .. host)
  return addr
end

function M.strerror(e) return ffi.string(C.strerror(e)) end

-- Starts a non-blocking connect to addr. Returns fd and whether it is
-- connected already (false: in progress, POLLOUT then SO_ERROR tell), or
-- nil, errno and the step that failed ("socket" or "connect").
function M.connect(addr)
  local fd = C.socket(AF_INET, bit.bor(SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC), 0)
  if fd < 0 then return nil, ffi.errno(), "socket" end
  local rc = C.connect(fd, addr, ffi.sizeof(addr))
  if rc ~= 0 and ffi.errno() ~= M.EINPROGRESS then
    local e = ffi.errno()
    C.close(fd)
    return nil, e, "connect"
  end
  return fd, rc == 0
end

function M.pollfds(n) return ffi.new("struct rs_pollfd[?]", n) end

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Replaces path's contents in one rename, so a reader never sees half.
function M.write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(text)
  f:close()
  assert(os.rename(tmp, path))
end

return M
