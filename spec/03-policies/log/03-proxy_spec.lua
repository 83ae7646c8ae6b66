-- luacheck: max line length 140
-- log in the real binary: the line in the gateway's error log (stderr), the
-- request proxied as usual.

local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  logLevel: info
apiEndpoints:
  api:
    paths: '*'
serviceEndpoints:
  up:
    url: http://127.0.0.1:${UPSTREAM_PORT}
policies: [log, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - log:
          - action:
              message: "policy-log ${req.method} ${req.url} key=${req.headers['x-key']}"
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("log (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{}
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, request, the line's text }
  local CASES = {
    { "a GET", { path = "/one?x=1", headers = { ["X-Key"] = "k1" } }, "policy-log GET /one?x=1 key=k1" },
    { "a POST without the header", { method = "POST", path = "/two", body = "b" }, "policy-log POST /two key=undefined" },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = assert(g:request(c[2]))
      assert.equal(200, res.status)
      local pattern = "%[info%] worker %d+: " .. c[3]:gsub("%p", "%%%0") .. "$"
      assert.truthy(g:wait_log(pattern))
    end)
  end
end)
