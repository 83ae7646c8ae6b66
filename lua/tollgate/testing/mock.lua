-- Start/stop mock upstream servers (tollgate/testing/mock_upstream.lua) as
-- separate processes.
--
--   local mock = require "tollgate.testing.mock"
--   local up = mock.start{ name = "a" }
--   finally(function() up:stop() end)      -- or: teardown(mock.stop_all)
--   -- up.port, up.pid, up:url("/echo"), up:count()
--
-- The mock's behaviours are documented at the top of mock_upstream.lua.

local process = require "tollgate.testing.process"
local http = require "tollgate.testing.http"
local cjson = require "cjson"

local error = error
local ipairs = ipairs
local os = os
local pairs = pairs
local pcall = pcall
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring

local _M = {}

local SCRIPT = process.repo_root() .. "/lua/tollgate/testing/mock_upstream.lua"

local started = {}   -- mock object -> true, until stopped

local Mock = {}
Mock.__index = Mock

-- Starts a mock upstream and waits (default 5 s) until it listens.
--   opts.name     value of the X-Upstream response header
--   opts.port     port to listen on (default 0: a free one)
--   opts.verbose  log requests to the mock's stderr (m.stderr_path)
--   opts.timeout  seconds to wait for the mock to start
--   opts.tls      { cert = PEM file, key = PEM file, ca = PEM file (optional:
--                 require a client certificate signed by it) }: serve HTTPS
--                 (m.tls = true; m:url() and m:count() use https; m:count(tls)
--                 takes http.connect's tls parameters, e.g. a client certificate)
-- Returns a mock { port, pid, name, dir, stderr_path, stop = function }.
-- Raises an error (with the mock's output) if it does not start.
function _M.start(opts)
  opts = opts or {}
  local dir = process.tmpdir("tollgate-mock")
  local portfile = dir .. "/port"
  local cmd = { os.getenv("LUAJIT") or "luajit", SCRIPT,
                "--port", tostring(opts.port or 0), "--portfile", portfile }
  if opts.name then
    cmd[#cmd + 1] = "--name"
    cmd[#cmd + 1] = opts.name
  end
  if opts.verbose then cmd[#cmd + 1] = "--verbose" end
  if opts.tls then
    for _, a in ipairs{ "--tls-cert", opts.tls.cert, "--tls-key", opts.tls.key } do
      cmd[#cmd + 1] = a
    end
    if opts.tls.ca then
      cmd[#cmd + 1] = "--tls-ca"
      cmd[#cmd + 1] = opts.tls.ca
    end
  end
  local out = dir .. "/output.log"
  local pid, err = process.start{ cmd = cmd, stdout = out, stderr = out }
  if not pid then
    process.rm_rf(dir)
    error("mock_upstream did not start: " .. tostring(err), 2)
  end
  local m = setmetatable({ pid = pid, name = opts.name, dir = dir, stderr_path = out,
                           tls = opts.tls and true or false }, Mock)
  started[m] = true
  local ok, port = pcall(process.wait_for, function()
    local text = process.read_file(portfile)
    local p = text and tonumber(text:match("^(%d+)\n"))
    if p then return p end
    if not process.alive(pid) then
      error("mock_upstream exited (status " .. tostring(process.wait_exit(pid, 0))
            .. "); output:\n" .. (process.read_file(out) or ""), 0)
    end
  end, opts.timeout or 5, "mock_upstream to write its port file")
  if not ok then
    local log = process.read_file(out) or ""
    m:stop()
    error(tostring(port) .. "\nmock output:\n" .. process.tail(log), 2)
  end
  m.port = port
  -- callable both as m.stop() and m:stop()
  m.stop = function() return Mock.stop(m) end
  return m
end

-- Stops the mock (SIGTERM, then SIGKILL after 5 s) and removes its temp dir.
-- Idempotent.  Returns the exit code.
function Mock:stop()
  if not started[self] then return self.exit_code end
  started[self] = nil
  self.exit_code = process.stop(self.pid, "TERM", 5)
  if not os.getenv("TOLLGATE_SPEC_KEEP") then process.rm_rf(self.dir) end
  return self.exit_code
end

function Mock:url(path)
  return (self.tls and "https" or "http") .. "://127.0.0.1:" .. tostring(self.port) .. (path or "/")
end

function Mock:alive()
  return process.alive(self.pid)
end

-- The mock's own counters, fetched directly: { requests = R, connections = C,
-- rejected = B, websockets = W } (the /count request itself is included in R
-- and C; B counts malformed requests the mock answered with 400, which are
-- not in R; W counts WebSocket upgrades).
-- tls: http.connect's TLS parameters for a TLS mock (default: no
-- verification, no client certificate).
function Mock:count(tls)
  local res, err = http.get(self.port, "/count", nil,
                            { tls = self.tls and (tls or { verify = "none" }) or nil })
  if not res then return nil, err end
  return cjson.decode(res.body)
end

-- The mock's stderr (only has content with verbose = true, or on a crash).
function Mock:logs()
  return process.read_file(self.stderr_path) or ""
end

-- Stops every mock started by this module instance and not yet stopped.
function _M.stop_all()
  local list = {}
  for m in pairs(started) do list[#list + 1] = m end
  for _, m in ipairs(list) do m:stop() end
end

return _M
