-- Shared bits for the spec/07-hardening specs: gateways proxying to mock
-- upstreams, what a worker holds (/proc: descriptors, RSS, CPU time), raw
-- sockets for mass connections, and "a normal client is served" checks
-- made while an attack is in progress.
--
--   local H = require "spec.07-hardening.helpers"
--   local up = mock.start{ name = "a" }
--   local g = H.gateway(up, { client = { headTimeout = 500 } })
--   finally(function() g:cleanup() end)
--   local w = H.worker(g)                -- the worker's pid
--   local base = H.settled_fds(w)        -- its descriptor count, once stable
--   ... attack, calling H.served(g) meanwhile ...
--   H.wait_fds(w, base)                  -- back to the baseline
--
-- Nothing here sleeps to synchronise: waits poll a condition until a
-- deadline (process.wait_for).  The only deliberate delays are the pace of
-- hostile clients (a byte every N ms, a reader throttled to N KB/s), which
-- is what they are.

local ffi = require "ffi"
local bit = require "bit"
local socket = require "socket"
local cjson = require "cjson"
local gateway = require "spec.support.gateway"
local process = require "spec.support.process"
local h2 = require "spec.02-http.helpers"

local C = ffi.C
local now = socket.gettime

local _M = {}

_M.now = now
_M.access_log = h2.access_log
_M.wait_access_log = h2.wait_access_log

-- one declaration per cdef: others (tollgate.testing.*) declare some of
-- these already, and a redefinition would stop a whole block
for _, d in ipairs{
  "typedef struct __dirstream DIR;",
  "int socket(int domain, int type, int protocol);",
  "int connect(int fd, const void *addr, unsigned int len);",
  "int setsockopt(int fd, int level, int name, const void *val, unsigned int len);",
  "int getsockopt(int fd, int level, int name, void *val, unsigned int *len);",
  "long send(int fd, const void *buf, unsigned long len, int flags);",
  "long recv(int fd, void *buf, unsigned long len, int flags);",
  "int close(int fd);",
  "unsigned short htons(unsigned short v);",
  "char *strerror(int errnum);",
  "DIR *opendir(const char *name);",
  "int closedir(DIR *d);",
  "long readlink(const char *path, char *buf, unsigned long size);",
  -- glibc x86_64 / aarch64 struct dirent
  [[struct hardening_dirent { unsigned long d_ino; long d_off; unsigned short d_reclen;
    unsigned char d_type; char d_name[256]; };]],
  "struct hardening_dirent *readdir(DIR *d);",
  "struct hardening_pollfd { int fd; short events; short revents; };",
  [[struct hardening_sockaddr_in { unsigned short family; unsigned short port;
    unsigned char addr[4]; char zero[8]; };]],
} do pcall(ffi.cdef, d) end

pcall(ffi.cdef, "int poll(struct hardening_pollfd *fds, unsigned long n, int timeout);")
-- poll(2) with our struct, whatever type an earlier declaration gave it
local poll = ffi.cast("int (*)(struct hardening_pollfd *, unsigned long, int)", C.poll)
local readdir = ffi.cast("struct hardening_dirent *(*)(DIR *)", C.readdir)

local AF_INET, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC = 2, 1, 2048, 524288
local SOL_SOCKET, SO_LINGER, SO_ERROR = 1, 13, 4
local MSG_NOSIGNAL, MSG_DONTWAIT = 0x4000, 0x40
local POLLOUT = 4
local EINPROGRESS = 115

---------------------------------------------------------------------------
-- the binary

-- The gateway binary the specs run (as tollgate.testing.server picks it).
function _M.bin()
  return os.getenv("TOLLGATE_BIN") or (process.repo_root() .. "/build/tollgate")
end

local sanitized
-- True when the gateway is an ASan build (make test-asan): its RSS follows
-- ASan's quarantine and shadow memory, not the gateway's own allocations,
-- so memory bounds are only checked on a normal build (LeakSanitizer
-- checks leaks there).
function _M.sanitized()
  if sanitized == nil then
    local data = process.read_file(_M.bin()) or ""
    sanitized = data:find("__asan_init", 1, true) ~= nil
  end
  return sanitized
end

-- Starts a gateway whose process is `argv_prefix .. {binary, args...}`
-- (e.g. { "prlimit", "--nofile=64:64", "--" }); returns g.
function _M.start_wrapped(prefix, opts)
  local argv = {}
  for _, a in ipairs(prefix) do argv[#argv + 1] = a end
  argv[#argv + 1] = _M.bin()
  local saved = gateway.bin
  gateway.bin = argv
  local ok, g = pcall(gateway.start, opts)
  gateway.bin = saved
  if not ok then error(g, 2) end
  return g
end

---------------------------------------------------------------------------
-- configs

-- A gateway proxying everything to the mock `up` (spec/02-http/helpers'
-- proxy_gateway): opts.client, opts.upstream (flat tables of tollgate
-- settings), opts.action (proxy options), opts.workers (default 1),
-- opts.shutdownTimeout, opts.accessLog (default stdout).
function _M.gateway(up, opts)
  return h2.proxy_gateway(up, opts or {})
end

-- A config text: the head (opts.client, opts.upstream, ...) then `body`
-- (apiEndpoints, serviceEndpoints, policies, pipelines), with ${NAME}
-- replaced from vars by gateway.start.
function _M.config(body, opts)
  return h2.head(opts) .. body
end

-- The single worker's pid (waits for it).
function _M.worker(g, n)
  return h2.workers(g, n or 1)[1]
end

function _M.workers(g, n)
  return h2.workers(g, n)
end

---------------------------------------------------------------------------
-- /proc

-- Number of open descriptors of pid (entries of /proc/pid/fd, without .
-- and ..), or nil when the process is gone.
function _M.fd_count(pid)
  local d = C.opendir("/proc/" .. tostring(pid) .. "/fd")
  if d == nil then return nil end
  local n = 0
  while true do
    local e = readdir(d)
    if e == nil then break end
    if e.d_name[0] ~= 46 then n = n + 1 end -- skip "." and ".."
  end
  C.closedir(d)
  return n
end

-- "fd -> target" lines, for failure messages.
function _M.fd_list(pid)
  local out = {}
  local d = C.opendir("/proc/" .. tostring(pid) .. "/fd")
  if d == nil then return "(process gone)" end
  local buf = ffi.new("char[512]")
  while true do
    local e = readdir(d)
    if e == nil then break end
    local name = ffi.string(e.d_name)
    if name:sub(1, 1) ~= "." then
      local n = C.readlink("/proc/" .. pid .. "/fd/" .. name, buf, 511)
      out[#out + 1] = name .. " -> " .. (n > 0 and ffi.string(buf, n) or "?")
    end
  end
  C.closedir(d)
  table.sort(out, function(a, b) return tonumber(a:match("^%d+")) < tonumber(b:match("^%d+")) end)
  return table.concat(out, "\n")
end

-- The descriptor count once it has not changed for `stable` consecutive
-- polls (10 ms apart at most; default 10), within timeout (default 5 s).
function _M.settled_fds(pid, timeout, stable)
  stable = stable or 10
  local last, same = nil, 0
  return process.wait_for(function()
    local n = _M.fd_count(pid)
    if n == last then same = same + 1 else last, same = n, 0 end
    if same >= stable then return n end
  end, timeout or 5, "the descriptor count of " .. pid .. " to settle")
end

-- Waits until pid has exactly `base` descriptors (timeout default 5 s);
-- the error lists what it holds.
function _M.wait_fds(pid, base, timeout, what)
  local ok, err = pcall(process.wait_for, function()
    return _M.fd_count(pid) == base
  end, timeout or 5, (what or "the worker's descriptors") .. " to return to " .. base)
  if not ok then
    error(tostring(err) .. " (now " .. tostring(_M.fd_count(pid)) .. "):\n" .. _M.fd_list(pid), 2)
  end
end

_M.rss_kb = process.rss_kb

-- utime + stime of pid in clock ticks (/proc/pid/stat fields 14 and 15).
function _M.cpu_ticks(pid)
  local stat = process.read_file("/proc/" .. tostring(pid) .. "/stat")
  if not stat then return nil end
  local rest = stat:match("^.*%)%s(.*)$")
  local fields = {}
  for f in rest:gmatch("%S+") do fields[#fields + 1] = f end
  -- rest starts at field 3 (state)
  return tonumber(fields[12]) + tonumber(fields[13])
end

---------------------------------------------------------------------------
-- the normal client

local served_n = 0

-- A normal client, on a new connection: GET /echo/served-N through the
-- gateway; asserts a complete 200 whose echo names that path.  Returns the
-- response.  (The gateway must proxy /echo/* to a mock.)
function _M.served(g, opts)
  served_n = served_n + 1
  local path = "/echo/served-" .. served_n
  local t0 = now()
  local res, err = g:request{ path = path, timeout = (opts and opts.timeout) or 5 }
  assert(res, "a normal client was not served: " .. tostring(err))
  assert(res.status == 200, "a normal client got " .. res.status .. ": " .. tostring(res.body))
  local ok, echo = pcall(cjson.decode, res.body)
  assert(ok and echo.path == path, "a normal client got the wrong answer: " .. tostring(res.body))
  res.took = now() - t0
  return res
end

---------------------------------------------------------------------------
-- raw sockets (mass connections without LuaSocket's FD_SETSIZE limit)

local function sockaddr(port)
  local sa = ffi.new("struct hardening_sockaddr_in")
  sa.family = AF_INET
  sa.port = C.htons(port)
  sa.addr[0], sa.addr[1], sa.addr[2], sa.addr[3] = 127, 0, 0, 1
  return sa
end

local function strerror(e)
  return ffi.string(C.strerror(e))
end

-- A non-blocking connect to 127.0.0.1:port.  Returns fd (connected or in
-- progress) or nil, err.
function _M.raw_connect(port)
  local fd = C.socket(AF_INET, bit.bor(SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC), 0)
  if fd < 0 then return nil, "socket: " .. strerror(ffi.errno()) end
  local sa = sockaddr(port)
  if C.connect(fd, sa, ffi.sizeof(sa)) ~= 0 and ffi.errno() ~= EINPROGRESS then
    local e = ffi.errno()
    C.close(fd)
    return nil, "connect: " .. strerror(e)
  end
  return fd
end

-- Waits until fd is connected (writable) within timeout seconds; returns
-- true, or nil, "timeout" / the connect error.
function _M.raw_wait_connected(fd, timeout)
  local p = ffi.new("struct hardening_pollfd[1]")
  p[0].fd, p[0].events = fd, POLLOUT
  if poll(p, 1, math.floor(timeout * 1000)) <= 0 then return nil, "timeout" end
  local e = ffi.new("int[1]")
  local len = ffi.new("unsigned int[1]", 4)
  C.getsockopt(fd, SOL_SOCKET, SO_ERROR, e, len)
  if e[0] ~= 0 then return nil, strerror(e[0]) end
  return true
end

-- Sends what it can of s without blocking; returns bytes sent (or -1).
function _M.raw_send(fd, s)
  return tonumber(C.send(fd, s, #s, MSG_NOSIGNAL + MSG_DONTWAIT))
end

-- Closes fd; rst = true sends a reset (SO_LINGER 0) instead of a FIN.
function _M.raw_close(fd, rst)
  if rst then
    local l = ffi.new("int[2]", 1, 0)
    C.setsockopt(fd, SOL_SOCKET, SO_LINGER, l, 8)
  end
  C.close(fd)
end

-- A listener on 127.0.0.1 that never accepts, with its accept queue full:
-- a connect to it gets no SYN-ACK (Linux drops the SYN), so it hangs until
-- the connecting side gives up.  Returns { port, close = fn }.
function _M.full_backlog_listener()
  local srv = assert(socket.bind("127.0.0.1", 0, 0))
  local _, port = srv:getsockname()
  port = tonumber(port)
  local fillers = {}
  local full = false
  for _ = 1, 16 do
    local fd = assert(_M.raw_connect(port))
    fillers[#fillers + 1] = fd
    if not _M.raw_wait_connected(fd, 0.3) then
      full = true
      break
    end
  end
  assert(full, "could not fill the accept queue of a listener with backlog 0")
  return {
    port = port,
    close = function()
      for _, fd in ipairs(fillers) do C.close(fd) end
      fillers = {}
      srv:close()
    end,
  }
end

---------------------------------------------------------------------------
-- clients

-- Sends raw bytes on a new connection and reads one response (or the
-- connection's end).  Returns conn, res, err.
function _M.raw_request(g, raw, opts)
  local conn = assert(g:connect{ timeout = (opts and opts.timeout) or 3 })
  local ok, serr = conn:send(raw)
  local res, err = conn:read_response{ method = (opts and opts.method) or "GET" }
  if not res and not ok then err = err .. " (send: " .. tostring(serr) .. ")" end
  return conn, res, err
end

-- A reader that takes at most `rate` bytes per second of a response body
-- (a deliberately slow client: the pauses are its pace, not a wait for the
-- gateway).  Calls sample() after every read.  Returns the byte count, or
-- nil, err, count.
function _M.throttled_read(conn, total, rate, sample, timeout)
  local got = 0
  local t0 = now()
  local deadline = t0 + (timeout or 60)
  -- what read_response buffered after the head
  if #conn.buf > 0 then
    got = #conn.buf
    conn.buf = ""
  end
  while got < total do
    local allowed = (now() - t0) * rate
    if got >= allowed then
      socket.select(nil, nil, math.min(0.05, (got - allowed) / rate + 0.001))
    else
      local data, err = conn:receive_some(math.min(16384, total - got),
                                          { timeout = math.max(0.01, deadline - now()) })
      if not data then return nil, err, got end
      got = got + #data
    end
    if sample then sample(got) end
    if now() > deadline then return nil, "timeout", got end
  end
  return got
end

_M.process = process

return _M
