-- One access-log line per request, however the connection ends.

local gateway = require "spec.support.gateway"
local http = require "spec.support.http"
local process = require "spec.support.process"
local cjson = require "cjson"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  accessLog: stdout
apiEndpoints:
  a: { paths: /hi }
policies: [terminate]
pipelines:
  p:
    apiEndpoints: [a]
    policies:
      - terminate: { action: { statusCode: 200, message: hi } }
]]

local function lines_for(g, id_count)
  local out = {}
  process.wait_for(function()
    out = {}
    for line in g:stdout():gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
    return #out >= id_count
  end, 5, id_count .. " access-log lines")
  return out
end

describe("access log", function()
  teardown(function() gateway.cleanup_all() end)

  it("has exactly one line per request: keep-alive, Connection: close, HTTP/1.0, 404", function()
    local g = gateway.start{ config = CONFIG }
    finally(function() g:cleanup() end)
    local c = assert(http.connect(g.port))
    assert(c:request{ path = "/hi" })
    assert.equal(200, assert(c:read_response()).status)
    assert(c:request{ path = "/hi", headers = { Connection = "close" } })
    assert.equal(200, assert(c:read_response()).status)
    c:close()
    assert.equal(200, assert(http.request(g.port, { path = "/hi", version = "1.0" })).status)
    assert.equal(404, assert(http.request(g.port, { path = "/nope",
      headers = { Connection = "close" } })).status)
    -- the marker request is logged last: everything before it is in the file
    assert.equal(200, assert(g:get("/hi?marker")).status)
    local lines = lines_for(g, 5)
    local ids = {}
    for _, l in ipairs(lines) do
      assert.is_nil(ids[l.id], "request " .. l.id .. " logged twice")
      ids[l.id] = true
    end
    assert.equal(5, #lines)
    assert.equal("/hi?marker", lines[5].path)
  end)
end)
