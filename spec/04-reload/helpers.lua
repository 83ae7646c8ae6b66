-- Shared bits for the spec/04-reload specs: a gateway wrapper that knows
-- its workers and their generations, and waits for reloads by their log
-- lines (never by sleeping).
--
--   local H = require "spec.04-reload.helpers"
--   local r = H.start{ config = H.config{ steps = { H.terminate("one") } } }
--   finally(function() r:cleanup() end)
--   r:write(H.config{ steps = { H.terminate("two") } })  -- in place; r:replace() renames
--   r:wait_reload()          -- every worker logged "configuration reloaded (generation 2)"
--   assert.equal("two", r:get("/").body)
--
-- Configs are built as lists of lines so a spec knows the line of each key:
-- H.config returns the text and a table { [marker] = line } for the lines
-- that carry a `# @marker` comment.

local gateway = require "spec.support.gateway"
local http = require "spec.support.http"
local process = require "spec.support.process"

local _M = {}

-- ---------------------------------------------------------------- configs

-- opts.port (default 0), opts.tollgate (extra lines under tollgate:, indented
-- 2), opts.services ({ name = url }), opts.policies (declared names; default
-- derived from the steps), opts.steps (lines of the pipeline's policies list,
-- each already indented 6), opts.endpoints (extra lines under apiEndpoints,
-- indented 2; the default endpoint is `api` on paths /*), opts.pipelines
-- (extra lines under pipelines, indented 2).
-- Returns text, marks ({ marker = line number } for `# @marker` comments).
function _M.config(opts)
  opts = opts or {}
  local lines = {
    "http:",
    "  hostname: 127.0.0.1",
    "  port: " .. tostring(opts.port or 0),
    "tollgate:",
    "  accessLog: off",
    "  logLevel: debug",
  }
  for _, l in ipairs(opts.tollgate or {}) do lines[#lines + 1] = "  " .. l end
  lines[#lines + 1] = "apiEndpoints:"
  lines[#lines + 1] = "  api:"
  lines[#lines + 1] = "    paths: '/*'"
  for _, l in ipairs(opts.endpoints or {}) do lines[#lines + 1] = l end
  if opts.services then
    lines[#lines + 1] = "serviceEndpoints:"
    local names = {}
    for name in pairs(opts.services) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      lines[#lines + 1] = "  " .. name .. ":"
      lines[#lines + 1] = "    url: '" .. opts.services[name] .. "'"
    end
  end
  local declared = opts.policies
  if not declared then
    declared = {}
    local seen = {}
    for _, step in ipairs(opts.steps or {}) do
      local name = step:match("^      %- ([%w%-_]+):")
      if name and not seen[name] then
        seen[name] = true
        declared[#declared + 1] = name
      end
    end
  end
  lines[#lines + 1] = "policies:"
  for _, name in ipairs(declared) do lines[#lines + 1] = "  - " .. name end
  lines[#lines + 1] = "pipelines:"
  lines[#lines + 1] = "  main:"
  lines[#lines + 1] = "    apiEndpoints:"
  lines[#lines + 1] = "      - api"
  lines[#lines + 1] = "    policies:"
  for _, step in ipairs(opts.steps or {}) do
    for l in (step .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  end
  for _, l in ipairs(opts.pipelines or {}) do lines[#lines + 1] = l end
  local marks = {}
  for i, l in ipairs(lines) do
    local m = l:match("#%s*@([%w_%-]+)%s*$")
    if m then marks[m] = i end
  end
  return table.concat(lines, "\n") .. "\n", marks
end

-- A terminate step answering 200 with message (flow style, one line).
function _M.terminate(message, status)
  return ("      - terminate: { action: { statusCode: %d, message: %s } }")
    :format(status or 200, message)
end

-- A proxy step to service `backend`.
function _M.proxy(service)
  return "      - proxy: { action: { serviceEndpoint: " .. (service or "backend") .. " } }"
end

-- A user policy (write it to <dir>/policies/NAME.lua) that sets response
-- header X-Value to its `value` option (or to what the module-level
-- VALUE says when the option is absent), optionally after sleeping `sleep`
-- seconds in access, and logs "hdr access PATH" when a request enters
-- access (so a spec can tell the request is in flight).
function _M.hdr_policy(module_value)
  return ([[
local core = require "tollgate.core"
local VALUE = %q
return {
  name = "hdr",
  schema = { properties = {
    value = { type = "string" },
    sleep = { type = "number", default = 0 },
    file = { type = "string" },
  } },
  new = function(conf, env)
    local value = conf.value or VALUE
    if conf.file then -- read at construction; deliberately not watched
      local f = assert(io.open(env.dir .. "/" .. conf.file, "rb"))
      value = f:read("*l")
      f:close()
    end
    return { value = value, sleep = conf.sleep }
  end,
  access = function(self, req)
    core.log_info("hdr access " .. req.path)
    if self.sleep > 0 then req:sleep(self.sleep) end
    req.ctx.hdr_value = self.value
  end,
  response = function(self, req)
    req.response:set_header("X-Value", self.value)
    req.response:set_header("X-Access-Value", req.ctx.hdr_value or "none")
  end,
}
]]):format(module_value or "module-v1")
end

-- A user policy, `switch` (H.SWITCH_FILES puts it in <dir>/policies/), for specs
-- that act on a build while it runs. Its constructor looks for files in the
-- gateway's directory, none of them watched:
--   die    it kills its own process, as a crash would
--   slow   it takes `busy` seconds of CPU (the option; 0.4 by default)
--   hold   it writes `holding`, then waits (polling every 5 ms) until `hold`
--          is removed
_M.SWITCH_POLICY = [[
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void); int kill(int pid, int sig); " ..
  "int poll(void *fds, unsigned long nfds, int timeout);")
return {
  name = "switch",
  schema = { properties = { busy = { type = "number", default = 0.4 } } },
  new = function(conf, env)
    local function exists(name)
      local f = io.open(env.dir .. "/" .. name, "rb")
      if f then f:close() end
      return f ~= nil
    end
    if exists("die") then ffi.C.kill(ffi.C.getpid(), 9) end
    if exists("slow") then
      local t = os.clock() + conf.busy
      while os.clock() < t do end
    end
    if exists("hold") then
      local f = assert(io.open(env.dir .. "/holding", "wb"))
      f:close()
      while exists("hold") do ffi.C.poll(nil, 0, 5) end
    end
    return {}
  end,
  access = function() end,
}
]]
_M.SWITCH_FILES = { ["policies/switch.lua"] = _M.SWITCH_POLICY }

-- A config whose pipeline is `switch` (its step line: `step`, default
-- "      - switch:"; false: none) then a terminate step answering message;
-- tollgate: the lines under tollgate: (default { "watch: false" }).
function _M.switch_config(message, opts)
  opts = opts or {}
  local steps
  if opts.step == false then steps = {} else steps = { opts.step or "      - switch:" } end
  steps[#steps + 1] = _M.terminate(message)
  return _M.config{ tollgate = opts.tollgate or { "watch: false" }, steps = steps }
end

-- ---------------------------------------------------------------- the gateway

local R = {}
R.__index = R

-- Starts a gateway (opts as spec.support.gateway.start; workers default 2)
-- and waits until every worker logged "worker N ready" (debug level: the
-- configs above set logLevel: debug), so a SIGHUP cannot arrive before a
-- worker handles it.
function _M.start(opts)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.workers = o.workers or 2
  local g = gateway.start(o)
  local r = setmetatable({ g = g, gen = 1, refused = 0, nworkers = o.workers }, R)
  r.workers = r:wait_ready(o.workers)
  return r
end

function R:cleanup() self.g:cleanup() end
function R:stderr() return self.g:stderr() end
function R:get(path, headers, opts) return http.get(self.g.port, path, headers, opts) end

-- Counts the stderr lines matching pattern.
function R:count(pattern)
  local n = 0
  for line in self:stderr():gmatch("([^\n]*)\n") do
    if line:find(pattern) then n = n + 1 end
  end
  return n
end

-- Captures of every stderr line matching pattern, in order.
function R:matches(pattern)
  local list = {}
  for line in self:stderr():gmatch("([^\n]*)\n") do
    local caps = { line:match(pattern) }
    if caps[1] ~= nil then list[#list + 1] = caps end
  end
  return list
end

-- Waits until at least n stderr lines match; returns their captures.
function R:wait_count(pattern, n, timeout, what)
  return process.wait_for(function()
    if not self.g:alive() then
      error("the gateway exited; it printed:\n" .. process.tail(self:stderr()), 0)
    end
    local list = self:matches(pattern)
    if #list >= n then return list end
    return nil, #list .. " so far"
  end, timeout or 5, what or (n .. " line(s) matching " .. pattern))
end

-- Waits for n workers (ready lines not yet consumed); returns their pids.
function R:wait_ready(n, timeout)
  self.ready_seen = self.ready_seen or 0
  local list = self:wait_count("worker (%d+): worker %d+ ready", self.ready_seen + n, timeout,
    n .. " worker(s) ready")
  local pids = {}
  for i = self.ready_seen + 1, self.ready_seen + n do pids[#pids + 1] = tonumber(list[i][1]) end
  self.ready_seen = self.ready_seen + n
  return pids
end

-- Waits until every worker logged "configuration reloaded (generation
-- self.gen + 1)"; returns the list of reload times in ms.
function R:wait_reload(timeout)
  self.gen = self.gen + 1
  local times = {}
  process.wait_for(function()
    if not self.g:alive() then
      error("the gateway exited; it printed:\n" .. process.tail(self:stderr()), 0)
    end
    local text = self:stderr()
    local from = self.scan_from or 1
    local last = from
    for i, pid in ipairs(self.workers) do
      local key = "worker " .. pid .. ": configuration reloaded (generation " .. self.gen .. ") in "
      local _, e = text:find(key, from, true)
      local ms = e and text:match("^([%d%.]+) ms[^\n]*\n", e + 1)
      if not ms then return nil, "worker " .. pid .. " not yet" end
      times[i] = tonumber(ms)
      if e > last then last = e end
    end
    -- later generations are logged after this one: search from here next time
    self.scan_from = text:find("\n", last, true) or last
    return true
  end, timeout or 5, "every worker to log 'configuration reloaded (generation " .. self.gen .. ")'")
  return times
end

-- Waits for the next "reload refused" line of the master; returns its reason.
function R:wait_refused(timeout)
  self.refused = self.refused + 1
  local list = self:wait_count("master %d+: reload refused, still serving the previous " ..
    "configuration: (.*)$", self.refused, timeout, "the master to refuse the reload")
  return list[self.refused][1]
end

-- Checks that nothing reloads within `window` seconds (a negative check:
-- bounded, it cannot be a wait for something that happens).
function R:assert_no_reload(window)
  local pattern = "configuration reloaded %(generation " .. (self.gen + 1) .. "%)"
  local deadline = process.now() + window
  while process.now() < deadline do
    assert(self:count(pattern) == 0, "an unexpected reload happened:\n" ..
      process.tail(self:stderr(), 2000))
    require("socket").sleep(0.02)
  end
end

-- The config file, written in place (open, truncate, write, close).
function R:write(text)
  assert(process.write_file(self.g.config_path, text))
end

-- Any file in the gateway's directory, written in place.
function R:write_file(name, text)
  local path = self.g.dir .. "/" .. name
  local sub = path:match("^(.*)/[^/]*$")
  assert(process.mkdir_p(sub))
  assert(process.write_file(path, text))
  return path
end

-- A file replaced the way editors save: a temp file beside it, then rename.
local function replace(path, text)
  local tmp = path:gsub("([^/]*)$", ".%1.tmp~")
  assert(process.write_file(tmp, text))
  assert(os.rename(tmp, path))
end

-- The config file replaced by a rename.
function R:replace(text)
  replace(self.g.config_path, text)
end

-- A file in the gateway's directory replaced by a rename.
function R:replace_file(name, text)
  replace(self.g.dir .. "/" .. name, text)
end

-- `tollgate -t -c FILE` (the gateway's own file by default): code, output.
function R:check(path)
  local bin = os.getenv("TOLLGATE_BIN") or (process.repo_root() .. "/build/tollgate")
  return process.run{ cmd = { bin, "-t", "-c", path or self.g.config_path },
    env = { TOLLGATE_HOME = os.getenv("TOLLGATE_HOME") or process.repo_root() },
    cwd = process.repo_root() }
end

-- `tollgate reload -c FILE [args]`: code, output.
function R:reload_command(args)
  local bin = os.getenv("TOLLGATE_BIN") or (process.repo_root() .. "/build/tollgate")
  local cmd = { bin, "reload", "-c", self.g.config_path }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = a end
  return process.run{ cmd = cmd,
    env = { TOLLGATE_HOME = os.getenv("TOLLGATE_HOME") or process.repo_root() },
    cwd = process.repo_root() }
end

-- VmRSS (KB) of every worker.
function R:rss()
  local list = {}
  for i, pid in ipairs(self.workers) do list[i] = assert(process.rss_kb(pid)) end
  return list
end

-- ---------------------------------------------------------------- load

local LOAD = process.repo_root() .. "/spec/04-reload/load.lua"

-- Starts spec/04-reload/load.lua against port; returns a handle with
-- :wait_responses(n) and :finish() -> the summary table.
function _M.load(port, opts)
  opts = opts or {}
  local dir = process.tmpdir("tollgate-load")
  local cmd = { os.getenv("LUAJIT") or "luajit", LOAD, "--port", tostring(port),
    "--keepalive", tostring(opts.keepalive or 4), "--fresh", tostring(opts.fresh or 2),
    "--path", opts.path or "/echo", "--stopfile", dir .. "/stop", "--out", dir .. "/out.json",
    "--progress", dir .. "/progress", "--max-seconds", tostring(opts.max_seconds or 120) }
  local pid = assert(process.start{ cmd = cmd, stdout = dir .. "/log", stderr = dir .. "/log" })
  local l = { pid = pid, dir = dir }
  function l.responses()
    local p = process.read_file(dir .. "/progress") or ""
    return tonumber(p:match("^(%d+)")) or 0
  end
  function l.wait_responses(n, timeout)
    return process.wait_for(function()
      if not process.alive(pid) then
        error("load.lua exited: " .. (process.read_file(dir .. "/log") or ""), 0)
      end
      return l.responses() >= n
    end, timeout or 10, n .. " responses from the load")
  end
  function l.finish(timeout)
    assert(process.write_file(dir .. "/stop", ""))
    local code = process.wait_exit(pid, timeout or 15)
    local out = process.read_file(dir .. "/out.json")
    local log = process.read_file(dir .. "/log") or ""
    process.rm_rf(dir)
    assert(code == 0, "load.lua failed (" .. tostring(code) .. "): " .. log)
    return require("cjson").decode(out)
  end
  function l.kill()
    if process.alive(pid) then process.stop(pid, "KILL", 2) end
    process.rm_rf(dir)
  end
  return l
end

return _M
