-- Shared bits for the spec/06-lua specs (Lua gateways, custom policies,
-- non-blocking I/O, the busted kit). Everything goes through the public kit
-- (tollgate.testing.*), as a user's specs would.
--
--   local H = require "spec.06-lua.helpers"
--   local g = H.start{ config = H.HEAD .. "...", files = {...}, vars = {...} }
--   -- stopped by finally() when the spec ends (g:cleanup(), by PID)
--   H.contains(needle, haystack)         plain-text find with a readable failure
--   H.until_(fn, timeout, what)          polls fn until truthy (deadline, no fixed sleep)
--   H.json(res)                          the decoded body of a mock echo
--   H.counter(g, key)                    a shdict number read through /shdict/<key>
--                                        (needs H.PEEK in the pipeline)

local assert = require "luassert"
local cjson = require "cjson"
local server = require "tollgate.testing.server"
local mock = require "tollgate.testing.mock"
local http = require "tollgate.testing.http"
local process = require "tollgate.testing.process"

local tostring, tonumber = tostring, tonumber

local _M = {
  server = server, mock = mock, http = http, process = process, cjson = cjson,
  ROOT = process.repo_root(),
}

-- A YAML head: loopback only, a free port, the access log on stdout.
_M.HEAD = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  accessLog: stdout
]]

-- server.start, cleaned up (stopped by PID, temp dir removed) when the
-- running spec ends, passed or failed (busted's finally, from the calling
-- spec file's environment).
function _M.start(opts)
  local g = server.start(opts)
  getfenv(2).finally(function() g:cleanup() end)
  return g
end

function _M.contains(needle, haystack, msg)
  assert.is_string(haystack, msg)
  assert.is_truthy(haystack:find(needle, 1, true), (msg and (msg .. ": ") or "") ..
    ("expected %q in:\n%s"):format(needle, haystack))
end

function _M.not_contains(needle, haystack, msg)
  assert.is_string(haystack, msg)
  assert.is_falsy(haystack:find(needle, 1, true), (msg and (msg .. ": ") or "") ..
    ("did not expect %q in:\n%s"):format(needle, haystack))
end

-- Polls fn() until it returns a truthy value (every few ms) and returns
-- what it returned; fails after timeout seconds (default 5).
function _M.until_(fn, timeout, what)
  return process.wait_for(fn, timeout or 5, what)
end

function _M.json(res)
  return cjson.decode(res.body)
end

-- A policy that answers GET /shdict/<key> with the shared dictionary's
-- value (X-Value, X-Ttl headers; 404 when absent), GET /shdicts/<k1>,<k2>
-- with a JSON object of several values read at one instant (absent: 0),
-- and lets anything else through.
-- Files: { ["policies/peek.lua"] = H.PEEK }.
_M.PEEK = [[
local shdict = require "tollgate.shdict"
local cjson = require "cjson"
return {
  name = "peek",
  access = function(self, req)
    local keys = req.path:match("^/shdicts/(.+)$")
    if keys then
      local out = {}
      for k in keys:gmatch("[^,]+") do out[k] = shdict.get(k) or 0 end
      return 200, cjson.encode(out), { ["Content-Type"] = "application/json" }
    end
    local key = req.path:match("^/shdict/(.+)$")
    if not key then return end
    local v, ttl = shdict.get(key)
    if v == nil then return 404, "absent" end
    return 200, tostring(v), { ["X-Value"] = tostring(v), ["X-Ttl"] = tostring(ttl) }
  end,
}
]]

-- The number stored under key (0 when absent), read through H.PEEK.
function _M.counter(g, key)
  local res = assert(g:get("/shdict/" .. key))
  if res.status == 404 then return 0 end
  assert(res.status == 200, "peek " .. key .. ": " .. tostring(res.status) .. " " .. res.body)
  local n = tonumber(res.body)
  assert(n, "not a number: " .. res.body)
  return n
end

-- Several numbers read at one instant through H.PEEK: { key = n }.
function _M.counters(g, keys)
  local res = assert(g:get("/shdicts/" .. table.concat(keys, ",")))
  assert(res.status == 200, "peek: " .. tostring(res.status) .. " " .. res.body)
  return cjson.decode(res.body)
end

_M.now = process.now

return _M
