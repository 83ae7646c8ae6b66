-- Start/stop the real Tollgate binary for integration specs.
--
--   local gateway = require "tollgate.testing.server"
--   local mock = require "tollgate.testing.mock"
--
--   it("proxies", function()
--     local up = mock.start{ name = "a" }
--     finally(function() up:stop() end)
--     local g = gateway.start{
--       config = [[
--   http:
--     port: 0
--   upstreams:
--     - 127.0.0.1:${UPSTREAM_PORT}
--   ]],
--       vars = { UPSTREAM_PORT = up.port },
--     }
--     finally(function() g:cleanup() end)
--     local res = assert(g:get("/echo"))
--     assert.equal(200, res.status)
--     assert.equal(0, g:stop())
--   end)
--
-- Clean-up: g:cleanup() (idempotent) stops the gateway if it still runs
-- (SIGTERM, SIGKILL of its process group after 10 s, without raising) and
-- removes its temp dir; register it with busted's finally() right after
-- start so it also runs when the spec fails.  gateway.cleanup_all() (e.g.
-- in teardown/after_each) does it for every gateway started by this module
-- instance.  As a last resort tollgate.testing.process SIGKILLs leftovers when
-- the spec file's module instance is garbage-collected or busted exits.
-- Set TOLLGATE_SPEC_KEEP=1 to keep the temp dirs for debugging.
--
-- The binary is $TOLLGATE_BIN, else <repo>/build/tollgate; gateway.bin
-- (a path, or an argv prefix list such as { "sh", "fake.sh" }) overrides
-- both.  It runs in the repository root with TOLLGATE_HOME=<repo> (unless
-- set), so it loads the work tree's lua/ and policies/.

local process = require "tollgate.testing.process"
local http = require "tollgate.testing.http"

local assert = assert
local error = error
local ipairs = ipairs
local os = os
local pairs = pairs
local pcall = pcall
local setmetatable = setmetatable
local table = table
local tonumber = tonumber
local tostring = tostring
local type = type

local _M = {
  bin = nil,                -- override, see above
  START_TIMEOUT = 5,        -- seconds to wait for the "listening on" line
  STOP_TIMEOUT = 10,        -- seconds to wait for exit after SIGTERM
  LISTEN_PATTERN = "listening on http://127%.0%.0%.1:(%d+)",
  CONFIG_NAME = "gateway.config.yml",
}

local started = {}   -- gateway object -> true until cleaned up

-- opts.env plus TOLLGATE_HOME = <repo> (where the binary finds lua/ and
-- policies/) unless the environment or opts.env sets it.
local function gateway_env(env)
  local e = {}
  for k, v in pairs(env or {}) do e[k] = v end
  if e.TOLLGATE_HOME == nil and not os.getenv("TOLLGATE_HOME") then
    e.TOLLGATE_HOME = process.repo_root()
  end
  return e
end

-- The binary: gateway.bin, $TOLLGATE_BIN, the build tree's, else tollgate
-- on the PATH (an installation).
local function bin_argv()
  local built = process.repo_root() .. "/build/tollgate"
  local f = io.open(built, "rb")
  if f then f:close() else built = "tollgate" end
  local b = _M.bin or os.getenv("TOLLGATE_BIN") or built
  if type(b) == "table" then
    local argv = {}
    for i, a in ipairs(b) do argv[i] = a end
    return argv
  end
  return { b }
end

-- Replaces ${NAME} for every NAME in vars; other ${...} are left for the
-- gateway's own environment substitution.
local function substitute(text, vars)
  if not vars then return text end
  return (text:gsub("%${([%w_]+)}", function(name)
    local v = vars[name]
    if v ~= nil then return tostring(v) end
  end))
end
_M.substitute = substitute

local function write_files(dir, config, files, vars, config_name)
  local cfg = dir .. "/" .. (config_name or _M.CONFIG_NAME)
  assert(process.write_file(cfg, substitute(config or "", vars)))
  for name, content in pairs(files or {}) do
    assert(not name:find("%.%.") and name:sub(1, 1) ~= "/", "files: bad name " .. name)
    local sub = name:match("^(.*)/[^/]*$")
    if sub then assert(process.mkdir_p(dir .. "/" .. sub)) end
    assert(process.write_file(dir .. "/" .. name, substitute(content, vars)))
  end
  return cfg
end

local Gateway = {}
Gateway.__index = Gateway

-- Starts the gateway and waits until it logs its listening port.
--   opts.config   YAML text, written to <dir>/gateway.config.yml
--   opts.vars     { NAME = value }: ${NAME} placeholders in config and files
--                 (GATEWAY_PORT defaults to 0)
--   opts.config_name  file name for the config (default gateway.config.yml;
--                 e.g. gateway.lua for a Lua config)
--   opts.files    { ["name.lua"] = text } written beside the config
--                 (names may contain sub-directories)
--   opts.args     extra argv after -c <file> -w <workers>
--   opts.env      { NAME = value | false } environment changes; TOLLGATE_HOME
--                 defaults to the repository root (lua/, policies/)
--   opts.workers  -w value (default 1)
--   opts.cwd      working directory (default: the repository root)
--   opts.timeout  seconds to wait for the listening line (default 5)
--   opts.wait     false: do not wait for the listening line (g.port = nil;
--                 use g:wait_log())
-- Returns g = { port, pid, dir, config_path, stdout_path, stderr_path }.
-- Raises an error including the gateway's output if it exits or does not
-- log "listening on http://127.0.0.1:PORT" in time.
function _M.start(opts)
  opts = opts or {}
  local dir = process.tmpdir("tollgate-gw")
  local vars = { GATEWAY_PORT = "0" }
  for k, v in pairs(opts.vars or {}) do vars[k] = v end
  local cfg = write_files(dir, opts.config, opts.files, vars, opts.config_name)

  local argv = bin_argv()
  for _, a in ipairs{ "-c", cfg, "-w", tostring(opts.workers or 1) } do argv[#argv + 1] = a end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end

  local g = setmetatable({
    dir = dir, config_path = cfg, argv = argv,
    stdout_path = dir .. "/stdout.log", stderr_path = dir .. "/stderr.log",
  }, Gateway)
  local pid, err = process.start{
    cmd = argv, env = gateway_env(opts.env), cwd = opts.cwd or process.repo_root(),
    stdout = g.stdout_path, stderr = g.stderr_path,
  }
  if not pid then
    if not os.getenv("TOLLGATE_SPEC_KEEP") then process.rm_rf(dir) end
    error("cannot start gateway: " .. tostring(err), 2)
  end
  g.pid = pid
  started[g] = true
  if opts.wait == false then return g end

  local timeout = opts.timeout or _M.START_TIMEOUT
  local ok, caps = pcall(process.wait_for, function()
    local found = process.match_line(g:stderr(), _M.LISTEN_PATTERN, true)
    if found then return found end
    if not process.alive(pid) then
      found = process.match_line(g:stderr(), _M.LISTEN_PATTERN, false)
      if found then return found end
      local code, how = process.wait_exit(pid, 0)
      error(("it %s with status %s before logging its port"):format(how, tostring(code)), 0)
    end
  end, timeout, "the gateway to log 'listening on http://127.0.0.1:PORT'")
  if not ok then
    local logs = g:logs()
    g:cleanup()
    error(("gateway did not start (%s): %s\n--- gateway output ---\n%s")
          :format(table.concat(argv, " "), tostring(caps), process.tail(logs, 8000)), 2)
  end
  g.port = tonumber(caps[1])
  return g
end

-- Runs `<bin> -t -c <file>` on config_text.  opts: vars, files, env, args,
-- timeout (default 10 s).  Returns exit code, combined stdout+stderr.
function _M.check(config_text, opts)
  opts = opts or {}
  local dir = process.tmpdir("tollgate-check")
  local cfg = write_files(dir, config_text, opts.files, opts.vars, opts.config_name)
  local argv = bin_argv()
  for _, a in ipairs{ "-t", "-c", cfg } do argv[#argv + 1] = a end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = tostring(a) end
  local ok, code, output = pcall(process.run, {
    cmd = argv, env = gateway_env(opts.env), cwd = opts.cwd or process.repo_root(),
    timeout = opts.timeout or 10,
  })
  if not os.getenv("TOLLGATE_SPEC_KEEP") then process.rm_rf(dir) end
  if not ok then error(code, 2) end
  if not code then error("cannot run gateway: " .. tostring(output), 2) end
  return code, output
end

function Gateway:url(path)
  return "http://127.0.0.1:" .. tostring(self.port) .. (path or "/")
end

function Gateway:stdout()
  return process.read_file(self.stdout_path) or ""
end

function Gateway:stderr()
  return process.read_file(self.stderr_path) or ""
end

-- stdout followed by stderr
function Gateway:logs()
  return self:stdout() .. self:stderr()
end

-- Waits until a complete line of stderr (opts.stream = "stdout" for stdout)
-- matches the Lua pattern; returns its captures.  opts.timeout (default 5).
-- Fails at once if the gateway exits.  Note it searches the whole file: use
-- patterns that only the awaited event produces, or count matches yourself.
function Gateway:wait_log(pattern, opts)
  opts = opts or {}
  local path = opts.stream == "stdout" and self.stdout_path or self.stderr_path
  return process.wait_file_match(path, pattern, opts.timeout or 5, { pid = self.pid })
end

function Gateway:alive()
  return process.alive(self.pid)
end

-- Sends a signal to the gateway's master process ("HUP", "TERM", 15, ...).
function Gateway:signal(sig)
  return process.kill(self.pid, sig)
end

-- SIGTERM, then wait for the exit (opts.timeout, default 10 s).  Returns the
-- exit code (128 + signal if killed by a signal), how ("exited"/"signaled")
-- and the signal.  If the gateway does not exit in time its process group is
-- SIGKILLed and an error is raised including its output.
function Gateway:stop(opts)
  opts = opts or {}
  if self.exit_code then return self.exit_code, self.exit_how, self.exit_signal end
  local timeout = opts.timeout or _M.STOP_TIMEOUT
  local code, how, sig, killed = process.stop(self.pid, opts.signal or "TERM", timeout)
  self.exit_code, self.exit_how, self.exit_signal = code, how, sig
  if killed then
    error(("gateway (pid %d) did not exit within %gs after SIG%s; killed.\n--- gateway output ---\n%s")
          :format(self.pid, timeout, tostring(opts.signal or "TERM"), process.tail(self:logs(), 8000)), 2)
  end
  return code, how, sig
end

-- Waits (timeout seconds, default 5) for the gateway to exit on its own (e.g.
-- after a fatal error) and returns code, how, sig, or nil, "timeout".
function Gateway:wait_exit(timeout)
  local code, how, sig = process.wait_exit(self.pid, timeout or 5)
  if code then self.exit_code, self.exit_how, self.exit_signal = code, how, sig end
  return code, how, sig
end

-- Stops the gateway if needed (never raises) and removes its temp dir.
function Gateway:cleanup()
  if not started[self] then return end
  started[self] = nil
  if not self.exit_code then
    local code, how, sig = process.stop(self.pid, "TERM", _M.STOP_TIMEOUT)
    self.exit_code, self.exit_how, self.exit_signal = code, how, sig
  end
  -- workers left behind by a master that died
  process.kill_group(self.pid, "KILL")
  if not os.getenv("TOLLGATE_SPEC_KEEP") then process.rm_rf(self.dir) end
end

-- Convenience wrappers around tollgate.testing.http on this gateway's port.
function Gateway:connect(opts)
  return http.connect(self.port, "127.0.0.1", opts)
end

function Gateway:get(path, headers, opts)
  return http.get(self.port, path, headers, opts)
end

function Gateway:request(opts)
  return http.request(self.port, opts)
end

-- Cleans up every gateway started by this module instance.
function _M.cleanup_all()
  local list = {}
  for g in pairs(started) do list[#list + 1] = g end
  for _, g in ipairs(list) do g:cleanup() end
end

return _M
