-- luacheck: max line length 140
-- request-transformer in the real binary: the mock upstream echoes the
-- headers and body it received.

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
policies: [request-transformer, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - request-transformer:
          - action:
              headers:
                add: { X-Via: "'tollgate'" }
                remove: [x-internal]
              body:
                add: { via: "'tollgate'", method: req.method }
                remove: [password]
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("request-transformer (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{}
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, request (for g:request), expected upstream body, expected upstream headers (false: absent) }
  local CASES = {
    { "a JSON body with Content-Length",
      { method = "POST", path = "/j", headers = { ["Content-Type"] = "application/json", ["X-Internal"] = "1" },
        body = '{"user":"u","password":"p"}' },
      '{"user":"u","method":"POST","via":"tollgate"}', { ["x-via"] = "tollgate", ["x-internal"] = false } },
    { "a chunked JSON body",
      { method = "PUT", path = "/j", headers = { ["Content-Type"] = "application/json" },
        chunks = { '{"pass', 'word":"p",', '"n":1}' } },
      '{"n":1,"method":"PUT","via":"tollgate"}', { ["x-via"] = "tollgate", ["transfer-encoding"] = false } },
    { "a text body is left alone",
      { method = "POST", path = "/t", headers = { ["Content-Type"] = "text/plain" }, body = "password=p" },
      "password=p", { ["x-via"] = "tollgate" } },
    { "a form body",
      { method = "POST", path = "/f", headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body = "a=1&password=p" },
      "a=1&method=POST&via=tollgate", {} },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = assert(g:request(c[2]))
      assert.equal(200, res.status)
      local echo = cjson.decode(res.body)
      local body = c[3]
      -- new fields come after the others, in name order
      assert.equal(body, echo.body)
      assert.equal(#body, echo.body_length)
      assert.equal(tostring(#body), echo.headers["content-length"])
      for name, v in pairs(c[4]) do
        if v == false then assert.is_nil(echo.headers[name], name)
        else assert.equal(v, echo.headers[name], name) end
      end
    end)
  end
end)
