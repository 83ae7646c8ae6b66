-- luacheck: max line length 140
-- headers in the real binary: the mock upstream echoes what it received.

local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"
local cjson = require "cjson"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
apiEndpoints:
  api:
    paths: '*'
serviceEndpoints:
  up:
    url: http://127.0.0.1:${UPSTREAM_PORT}
policies: [headers, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - headers:
          - action:
              headersPrefix: X-Gw-
              forwardHeaders:
                Request-Id: egContext.requestID
                Method: req.method
                Key: "req.headers['x-api-key'] || 'none'"
                Lua: { lua: "'len=' .. #req.url" }
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("headers (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{}
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, method, path, request headers, expected upstream headers }
  local CASES = {
    { "computed headers reach the upstream", "GET", "/a/b", {},
      { ["x-gw-method"] = "GET", ["x-gw-key"] = "none", ["x-gw-lua"] = "len=4" } },
    { "a request header is copied", "POST", "/k", { ["X-Api-Key"] = "k1" },
      { ["x-gw-method"] = "POST", ["x-gw-key"] = "k1", ["x-gw-lua"] = "len=2" } },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = assert(g:request{ method = c[2], path = c[3], headers = c[4] })
      assert.equal(200, res.status)
      local echo = cjson.decode(res.body)
      for name, v in pairs(c[5]) do assert.equal(v, echo.headers[name], name) end
      assert.equal(echo.headers["eg-request-id"], echo.headers["x-gw-request-id"])
      assert.equal(22, #echo.headers["x-gw-request-id"])
    end)
  end
end)
