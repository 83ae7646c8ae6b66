-- luacheck: max line length 140
-- ip-restriction in the real binary: the client is 127.0.0.1.

local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"
local http = require "spec.support.http"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  accessLog: stdout
apiEndpoints:
  open:
    paths: ['/open', '/open/*']
  closed:
    paths: ['/closed', '/closed/*']
serviceEndpoints:
  up:
    url: http://127.0.0.1:${UPSTREAM_PORT}
policies: [ip-restriction, proxy]
pipelines:
  open:
    apiEndpoints: [open]
    policies:
      - ip-restriction:
          - action: { allow: [127.0.0.0/8, "::1"], deny: [10.0.0.0/8] }
      - proxy:
          - action: { serviceEndpoint: up }
  closed:
    apiEndpoints: [closed]
    policies:
      - ip-restriction:
          - action: { allow: [192.0.2.0/24], message: not from here }
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("ip-restriction (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{}
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, path, expected status, expected body (nil: not checked) }
  local CASES = {
    { "loopback is allowed where listed", "/open/x", 200, nil },
    { "loopback is refused elsewhere", "/closed/x", 403, "not from here" },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = assert(g:get(c[2]))
      assert.equal(c[3], res.status)
      if c[4] then assert.equal(c[4], res.body) end
    end)
  end

  it("the access log says which client was refused", function()
    assert.equal(403, assert(g:get("/closed/log")).status)
    local line = g:wait_log('"path":"/closed/log"', { stream = "stdout" })
    assert.truthy(line)
    local found
    for l in g:stdout():gmatch("[^\n]+") do
      if l:find('"path":"/closed/log"', 1, true) then found = l end
    end
    assert.truthy(found:find('"error":"ip-restriction: client 127.0.0.1 refused"', 1, true), found)
  end)

  it("a keep-alive connection goes on after a refusal", function()
    local conn = assert(http.connect(g.port))
    finally(function() conn:close() end)
    assert(conn:request{ path = "/closed/a" })
    assert.equal(403, assert(conn:read_response()).status)
    assert(conn:request{ path = "/open/a" })
    assert.equal(200, assert(conn:read_response()).status)
  end)
end)
