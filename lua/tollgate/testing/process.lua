-- Process, file and waiting helpers for Tollgate specs.
--
-- Processes are started with fork()/execvp() through LuaJIT's ffi, so every
-- started process is a direct child of the spec runner:
--   * the pid returned by start() is the pid of the command itself (no shell
--     in between), so kill(pid, "TERM") reaches the program, and
--     wait_exit(pid) gets its real exit status from waitpid();
--   * the child gets its own process group (pgid == pid), so kill_group()
--     also reaches processes it forked (e.g. gateway workers);
--   * the child gets PR_SET_PDEATHSIG=SIGTERM: if the spec runner dies (even
--     by SIGKILL) the child is sent SIGTERM instead of being left behind;
--   * descriptors other than 0/1/2 are closed in the child (LuaSocket sockets
--     are not close-on-exec: an inherited client socket would keep a
--     connection open after the spec closed it), signal dispositions and the
--     signal mask are reset to defaults (LuaSocket ignores SIGPIPE);
--   * a close-on-exec pipe reports a failed exec, so start() returns
--     nil, "exec ... failed: No such file or directory" at once.
--
-- Clean-up: every started process is remembered until it has been reaped.
-- kill_all() SIGKILLs the process groups of those still running; it also runs
-- automatically when this module instance is garbage-collected (busted drops
-- it after each insulated spec file) and when the Lua state is closed (busted
-- exits with os.exit(code, true)).  Specs should still stop what they start:
--   local pid = assert(process.start{ cmd = {...} })
--   finally(function() process.stop(pid) end)
-- or in a describe block: teardown(function() process.kill_all() end).

local ffi = require "ffi"
local socket = require "socket"

local C = ffi.C
local assert = assert
local collectgarbage = collectgarbage
local debug = debug
local error = error
local io = io
local ipairs = ipairs
local math = math
local os = os
local pairs = pairs
local pcall = pcall
local table = table
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack or table.unpack -- luacheck: ignore 143

local _M = {}

-- Wall-clock seconds (fractional), for measuring elapsed time in specs.
_M.now = socket.gettime

local cdefs = {
  "int fork(void);",
  "int execvp(const char *file, char *const argv[]);",
  "void _exit(int status);",
  "int open(const char *pathname, int flags, int mode);",
  "int close(int fd);",
  "int dup2(int oldfd, int newfd);",
  "int chdir(const char *path);",
  "int setenv(const char *name, const char *value, int overwrite);",
  "int unsetenv(const char *name);",
  "int setpgid(int pid, int pgid);",
  "int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);",
  "int getpid(void);",
  "int getppid(void);",
  "int kill(int pid, int sig);",
  "int waitpid(int pid, int *status, int options);",
  "int pipe2(int pipefd[2], int flags);",
  "long read(int fd, void *buf, unsigned long count);",
  "long write(int fd, const void *buf, unsigned long count);",
  "char *strerror(int errnum);",
  "long syscall(long number, ...);",
  "char *mkdtemp(char *template);",
  "char *getcwd(char *buf, unsigned long size);",
  "void *signal(int signum, void *handler);",
  "int sigprocmask(int how, const void *set, void *oldset);",
  "int getrlimit(int resource, void *rlim);",
}
for _, d in ipairs(cdefs) do pcall(ffi.cdef, d) end

-- Linux constants (x86_64 / aarch64 generic values)
local O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC = 0, 1, 64, 512
local O_CLOEXEC = 524288
local WNOHANG = 1
local EINTR, EPERM = 4, 1
local PR_SET_PDEATHSIG = 1
local SIG_SETMASK = 2
local SYS_close_range = 436
local RLIMIT_NOFILE = 7

local SIGNALS = {
  HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, SEGV = 11, USR2 = 12,
  PIPE = 13, ALRM = 14, TERM = 15, CHLD = 17, CONT = 18, STOP = 19, WINCH = 28,
}
_M.SIGNALS = SIGNALS

local now = socket.gettime

local function strerror(e)
  return ffi.string(C.strerror(e))
end

local function signum(sig)
  if sig == nil then return SIGNALS.TERM end
  if type(sig) == "number" then return sig end
  local n = SIGNALS[tostring(sig):upper():gsub("^SIG", "")]
  if not n then error("unknown signal " .. tostring(sig), 3) end
  return n
end

---------------------------------------------------------------------------
-- small file helpers

function _M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local data = f:read("*a")
  f:close()
  return data
end

function _M.write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(data)
  f:close()
  if not ok then return nil, werr end
  return true
end

-- Single-quote a string for sh.
function _M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local quote = _M.quote

function _M.mkdir_p(path)
  local ok = os.execute("mkdir -p -- " .. quote(path))
  if ok == true or ok == 0 then return true end
  return nil, "mkdir -p " .. path .. " failed"
end

function _M.getcwd()
  local buf = ffi.new("char[?]", 4096)
  if C.getcwd(buf, 4096) == nil then return nil, strerror(ffi.errno()) end
  return ffi.string(buf)
end

function _M.abspath(path)
  if path:sub(1, 1) == "/" then return path end
  local cwd = assert(_M.getcwd())
  path = path:gsub("^%./", "")
  return cwd .. "/" .. path
end

-- The tollgate tree (or installation, make install's share/tollgate) this
-- kit belongs to: its lua/ and policies/ are there.
function _M.repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local abs = _M.abspath(src)
  local root = abs:match("^(.*)/lua/tollgate/testing/[^/]+$")
  return root or assert(_M.getcwd())
end

-- Creates a unique directory under $TMPDIR (or /tmp) and returns its path.
function _M.tmpdir(prefix)
  local base = os.getenv("TMPDIR") or "/tmp"
  local template = ("%s/%s-XXXXXX"):format(base, prefix or "tollgate-spec")
  local buf = ffi.new("char[?]", #template + 1)
  ffi.copy(buf, template)
  if C.mkdtemp(buf) == nil then
    error("mkdtemp(" .. template .. "): " .. strerror(ffi.errno()), 2)
  end
  return ffi.string(buf)
end

-- rm -rf, refusing relative paths, "/", paths with "..", and top-level
-- directories.
function _M.rm_rf(path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("%.%.")
     or not path:match("^/[^/]+/.") then
    return nil, "refusing to remove " .. tostring(path)
  end
  local ok = os.execute("rm -rf -- " .. quote(path))
  if ok == true or ok == 0 then return true end
  return nil, "rm -rf " .. path .. " failed"
end

---------------------------------------------------------------------------
-- waiting

-- Polls fn() (first every 1 ms, backing off to every 20 ms) until it returns
-- a truthy value, and returns everything fn returned.  After `timeout`
-- seconds (default 5) raises "timed out after Ns waiting for <what>"
-- (plus the last error if fn returned nil, err).
function _M.wait_for(fn, timeout, what)
  timeout = timeout or 5
  local deadline = now() + timeout
  local delay = 0.001
  while true do
    local res = { fn() }
    if res[1] then return unpack(res, 1, table.maxn(res)) end
    local t = now()
    if t >= deadline then
      local msg = ("timed out after %gs waiting for %s"):format(timeout, what or "condition")
      if res[2] ~= nil then msg = msg .. " (last: " .. tostring(res[2]) .. ")" end
      error(msg, 2)
    end
    socket.sleep(math.min(delay, deadline - t))
    delay = math.min(delay * 2, 0.02)
  end
end

local function tail(text, n)
  n = n or 4000
  if #text > n then return "...\n" .. text:sub(-n) end
  return text
end
_M.tail = tail

-- Returns the captures (as a list) of the first line of text matching the
-- Lua pattern, or nil.  complete_only: ignore a last line without "\n".
local function match_lines(text, pattern, complete_only)
  for line in text:gmatch("([^\n]*)\n") do
    local caps = { line:match(pattern) }
    if caps[1] ~= nil then return caps end
  end
  if not complete_only then
    local last = text:match("([^\n]+)$")
    if last then
      local caps = { last:match(pattern) }
      if caps[1] ~= nil then return caps end
    end
  end
end

_M.match_line = match_lines

-- Waits until a line of the file at `path` matches the Lua pattern, and
-- returns that line's captures (or the whole match if there are none).
-- Only complete (newline-terminated) lines count, so a half-written line
-- cannot match early.  opts.pid: give up at once (with an error) when that
-- process has exited.  Raises an error with the end of the file on timeout
-- (default 5 s).
function _M.wait_file_match(path, pattern, timeout, opts)
  opts = opts or {}
  timeout = timeout or 5
  local deadline = now() + timeout
  local delay = 0.001
  while true do
    local text = _M.read_file(path) or ""
    local caps = match_lines(text, pattern, true)
    if caps then return unpack(caps) end
    if opts.pid and not _M.alive(opts.pid) then
      text = _M.read_file(path) or ""
      caps = match_lines(text, pattern, false)
      if caps then return unpack(caps) end
      local code = _M.wait_exit(opts.pid, 0)
      error(("process %d exited (status %s) before %s matched %q; it printed:\n%s")
            :format(opts.pid, tostring(code), path, pattern, tail(text)), 2)
    end
    local t = now()
    if t >= deadline then
      error(("timed out after %gs waiting for %s to match %q; it contains:\n%s")
            :format(timeout, path, pattern, tail(text)), 2)
    end
    socket.sleep(math.min(delay, deadline - t))
    delay = math.min(delay * 2, 0.02)
  end
end

-- A port that was free a moment ago (bind 127.0.0.1:0, read it, close).
-- Prefer letting servers pick port 0 themselves: another process may take
-- the port before it is used.
function _M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- True if a TCP connection to host:port is accepted right now.
function _M.port_open(port, host)
  local s = socket.tcp()
  s:settimeout(1)
  local ok = s:connect(host or "127.0.0.1", port)
  s:close()
  return ok and true or false
end

-- Waits until port accepts connections; raises after timeout (default 5 s).
function _M.wait_port(port, timeout, host)
  return _M.wait_for(function() return _M.port_open(port, host) end,
                     timeout, "127.0.0.1:" .. tostring(port) .. " to accept connections")
end

---------------------------------------------------------------------------
-- processes

local owner_pid = C.getpid()
local children = {}   -- pid -> { cmd = string } for started, not yet reaped
local reaped = {}     -- pid -> { code, how, sig }

local function decode_status(st)
  local sig = st % 128
  if sig == 0 then
    return math.floor(st / 256) % 256, "exited"
  end
  return 128 + sig, "signaled", sig
end

-- Non-blocking reap.  Returns true if the child has exited (its status is
-- then in reaped[pid]), false if it runs, nil if it is not our child.
local function try_reap(pid)
  if reaped[pid] then return true end
  local st = ffi.new("int[1]")
  while true do
    local r = C.waitpid(pid, st, WNOHANG)
    if r == pid then
      reaped[pid] = { decode_status(st[0]) }
      children[pid] = nil
      return true
    elseif r == 0 then
      return false
    else
      -- ECHILD: not our child (or already reaped elsewhere)
      if ffi.errno() ~= EINTR then return nil end
    end
  end
end

-- Starts a process.
--   opts.cmd    argv list; cmd[1] is looked up in PATH (execvp)
--   opts.env    { NAME = "value" | false } added to (false: removed from)
--               the inherited environment
--   opts.stdout, opts.stderr   file paths (truncated); default /dev/null;
--               the same path for both gives one interleaved file
--   opts.stdin  file path (default /dev/null)
--   opts.cwd    working directory
-- Returns pid, or nil and an error message.
function _M.start(opts)
  local cmd = assert(opts and opts.cmd, "start: cmd is required")
  assert(#cmd >= 1, "start: cmd is empty")

  -- everything the child needs is prepared before fork(): after fork() the
  -- child only makes ffi calls
  local anchors = {}
  local function cstr(s)
    s = tostring(s)
    anchors[#anchors + 1] = s
    return s
  end
  local argv = ffi.new("const char *[?]", #cmd + 1)
  for i, a in ipairs(cmd) do argv[i - 1] = cstr(a) end
  argv[#cmd] = nil
  local file = cstr(cmd[1])

  local env_set, env_unset = {}, {}
  for k, v in pairs(opts.env or {}) do
    if v == false then
      env_unset[#env_unset + 1] = cstr(k)
    else
      env_set[#env_set + 1] = { cstr(k), cstr(v) }
    end
  end
  local stdin_path = cstr(opts.stdin or "/dev/null")
  local stdout_path = cstr(opts.stdout or "/dev/null")
  local stderr_path = cstr(opts.stderr or "/dev/null")
  local same_out = stdout_path == stderr_path
  local cwd = opts.cwd and cstr(opts.cwd)

  local rlim = ffi.new("unsigned long[2]")
  local maxfd = 65536
  if C.getrlimit(RLIMIT_NOFILE, rlim) == 0 and tonumber(rlim[0]) < maxfd then
    maxfd = tonumber(rlim[0])
  end
  local zero_mask = ffi.new("unsigned char[128]")
  local SIG_DFL = ffi.cast("void *", 0)
  -- syscall() is variadic: pass C integers, not Lua numbers (doubles)
  local nr_close_range = ffi.new("long", SYS_close_range)
  local l3, l0, lmax = ffi.new("long", 3), ffi.new("long", 0), ffi.new("long", 0xFFFFFFFF)

  local pipefd = ffi.new("int[2]")
  if C.pipe2(pipefd, O_CLOEXEC) ~= 0 then
    return nil, "pipe2: " .. strerror(ffi.errno())
  end
  local rfd, wfd = pipefd[0], pipefd[1]
  local wfd_below, wfd_above = ffi.new("long", wfd - 1), ffi.new("long", wfd + 1)
  local report = ffi.new("int[2]")
  local parent = C.getpid()

  io.stdout:flush()
  io.stderr:flush()
  local pid = C.fork()
  if pid < 0 then
    local e = ffi.errno()
    C.close(rfd); C.close(wfd)
    return nil, "fork: " .. strerror(e)
  end

  if pid == 0 then
    -- child: no Lua allocations that could run finalizers, no return
    collectgarbage("stop")
    local function fail(stage)
      report[0] = stage
      report[1] = ffi.errno()
      C.write(wfd, report, 8)
      C._exit(127)
    end
    C.setpgid(0, 0)
    C.prctl(PR_SET_PDEATHSIG, SIGNALS.TERM, 0, 0, 0)
    if C.getppid() ~= parent then C._exit(127) end
    for _, s in pairs(SIGNALS) do
      if s ~= SIGNALS.KILL and s ~= SIGNALS.STOP then C.signal(s, SIG_DFL) end
    end
    C.sigprocmask(SIG_SETMASK, zero_mask, nil)
    local fd = C.open(stdin_path, O_RDONLY, 0)
    if fd < 0 or C.dup2(fd, 0) < 0 then fail(1) end
    fd = C.open(stdout_path, O_WRONLY + O_CREAT + O_TRUNC, 420)
    if fd < 0 or C.dup2(fd, 1) < 0 then fail(2) end
    if same_out then
      if C.dup2(1, 2) < 0 then fail(3) end
    else
      fd = C.open(stderr_path, O_WRONLY + O_CREAT + O_TRUNC, 420)
      if fd < 0 or C.dup2(fd, 2) < 0 then fail(3) end
    end
    -- close every other descriptor except the error pipe
    if wfd > 3 and C.syscall(nr_close_range, l3, wfd_below, l0) ~= 0 then
      for i = 3, wfd - 1 do C.close(i) end
    end
    if C.syscall(nr_close_range, wfd_above, lmax, l0) ~= 0 then
      for i = wfd + 1, maxfd do C.close(i) end
    end
    if cwd and C.chdir(cwd) ~= 0 then fail(4) end
    for i = 1, #env_set do C.setenv(env_set[i][1], env_set[i][2], 1) end
    for i = 1, #env_unset do C.unsetenv(env_unset[i]) end
    C.execvp(file, ffi.cast("char *const *", argv))
    fail(5)
  end

  -- parent
  C.close(wfd)
  local got = 0
  local buf = ffi.cast("char *", report)
  while got < 8 do
    local n = C.read(rfd, buf + got, 8 - got)
    if n > 0 then
      got = got + n
    elseif n == 0 or ffi.errno() ~= EINTR then
      break
    end
  end
  C.close(rfd)
  anchors = nil -- luacheck: ignore 311
  if got == 8 then
    -- the child failed before or at exec; reap it
    local st = ffi.new("int[1]")
    while C.waitpid(pid, st, 0) < 0 and ffi.errno() == EINTR do end -- luacheck: ignore 542
    local stages = { "open stdin", "open stdout", "open stderr", "chdir", "exec" }
    return nil, ("%s %s failed: %s"):format(stages[report[0]] or "start",
      report[0] == 4 and tostring(opts.cwd) or tostring(cmd[1]), strerror(report[1]))
  end
  children[pid] = { cmd = table.concat(cmd, " ") }
  return pid
end

-- Sends a signal (number or name: "TERM", "SIGKILL", ...; default TERM).
-- Returns true or nil, err.
function _M.kill(pid, sig)
  assert(type(pid) == "number" and pid > 0, "kill: bad pid")
  if reaped[pid] then return nil, "process has exited" end
  if C.kill(pid, signum(sig)) == 0 then return true end
  return nil, strerror(ffi.errno())
end

-- Signals the process group led by pid (a process started by start() and
-- everything it forked that stayed in its group).
function _M.kill_group(pid, sig)
  assert(type(pid) == "number" and pid > 0, "kill_group: bad pid")
  if C.kill(-pid, signum(sig)) == 0 then return true end
  return nil, strerror(ffi.errno())
end

-- True if /proc says pid is a zombie (exited, not yet reaped by its parent).
local function is_zombie(pid)
  local stat = _M.read_file("/proc/" .. tostring(pid) .. "/stat")
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state == "Z" or state == "X"
end

-- True while the process runs.  For our children this reaps them (a zombie
-- is not alive); for other pids it uses kill(pid, 0) and /proc (a zombie
-- waiting for its parent, e.g. init, to reap it is not alive either).
function _M.alive(pid)
  local r = try_reap(pid)
  if r ~= nil then return not r end
  if C.kill(pid, 0) == 0 or ffi.errno() == EPERM then
    return not is_zombie(pid)
  end
  return false
end

-- Waits up to `timeout` seconds (default 5; 0 = just check) for the process
-- to exit.  Returns code, how[, signal]:
--   exit(n)          -> n, "exited"
--   killed by signal -> 128 + signal, "signaled", signal
--   still running    -> nil, "timeout"
-- For processes not started by start() the status cannot be read: once the
-- pid is gone it returns -1, "unknown".
function _M.wait_exit(pid, timeout)
  timeout = timeout or 5
  local deadline = now() + timeout
  local delay = 0.001
  while true do
    local r = try_reap(pid)
    if r then return unpack(reaped[pid]) end
    if r == nil and not _M.alive(pid) then return -1, "unknown" end
    local t = now()
    if t >= deadline then return nil, "timeout" end
    socket.sleep(math.min(delay, deadline - t))
    delay = math.min(delay * 2, 0.02)
  end
end

-- Stops a started process: `sig` (default TERM), wait up to `timeout`
-- (default 10 s), then SIGKILL its process group.  Returns code, how, sig as
-- wait_exit; the 4th value is true if it had to be killed.  Harmless on a
-- process that already exited.
function _M.stop(pid, sig, timeout)
  if not _M.alive(pid) then return _M.wait_exit(pid, 0) end
  _M.kill(pid, sig or "TERM")
  local code, how, s = _M.wait_exit(pid, timeout or 10)
  if code then return code, how, s, false end
  _M.kill_group(pid, "KILL")
  _M.kill(pid, "KILL")
  code, how, s = _M.wait_exit(pid, 5)
  return code, how, s, true
end

-- Runs a command to completion (stdout and stderr into one file) and returns
-- code, output, how.  Raises if it does not finish within timeout (default
-- 10 s; the process is killed first).
function _M.run(opts)
  local dir = _M.tmpdir("tollgate-run")
  local out = dir .. "/output"
  local pid, err = _M.start{ cmd = opts.cmd, env = opts.env, cwd = opts.cwd,
                             stdin = opts.stdin, stdout = out, stderr = out }
  if not pid then
    _M.rm_rf(dir)
    return nil, err
  end
  local code, how = _M.wait_exit(pid, opts.timeout or 10)
  if not code then
    _M.kill_group(pid, "KILL")
    _M.wait_exit(pid, 5)
  end
  local output = _M.read_file(out) or ""
  _M.rm_rf(dir)
  if not code then
    error(("%s did not finish within %gs; output:\n%s")
          :format(table.concat(opts.cmd, " "), opts.timeout or 10, tail(output)), 2)
  end
  return code, output, how
end

-- SIGKILLs the process group of every started process still running and
-- reaps them.  Returns the number of processes killed.
function _M.kill_all()
  if C.getpid() ~= owner_pid then return 0 end
  local n = 0
  for pid in pairs(children) do
    if _M.alive(pid) then
      C.kill(-pid, SIGNALS.KILL)
      C.kill(pid, SIGNALS.KILL)
      _M.wait_exit(pid, 2)
      n = n + 1
    end
  end
  return n
end

-- pids started by this module instance that have not been reaped yet
function _M.running()
  local list = {}
  for pid in pairs(children) do
    if _M.alive(pid) then list[#list + 1] = pid end
  end
  table.sort(list)
  return list
end

---------------------------------------------------------------------------
-- /proc inspection

-- Sorted list of the pids of pid's live (non-zombie) children, read from
-- /proc/<pid>/task/*/children (any process, not only ours).
function _M.children(pid)
  local list, seen = {}, {}
  local p = io.popen("cat /proc/" .. tostring(pid) .. "/task/*/children 2>/dev/null")
  local text = p and p:read("*a") or ""
  if p then p:close() end
  for c in text:gmatch("%d+") do
    c = tonumber(c)
    if not seen[c] and not is_zombie(c) then
      seen[c] = true
      list[#list + 1] = c
    end
  end
  table.sort(list)
  return list
end

-- Resident set size of pid in KB (VmRSS in /proc/<pid>/status), or nil.
function _M.rss_kb(pid)
  local status = _M.read_file("/proc/" .. tostring(pid) .. "/status")
  local kb = status and status:match("\nVmRSS:%s*(%d+) kB")
  return kb and tonumber(kb) or nil
end

-- kill leftovers when this module instance is collected or the state closes
_M._sentinel = ffi.gc(ffi.new("char[1]"), function()
  pcall(_M.kill_all)
end)

return _M
