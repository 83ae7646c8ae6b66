-- luacheck: max line length 140
-- expression (policy and condition) in the real binary, with a mock upstream.

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
policies: [expression, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - expression:
          - condition: { name: expression, lua: "req:header('x-version') == '2'" }
            action: { lua: "req.url = '/v2' .. req.url" }
          - action:
              lua: |
                if req.path == '/private' then
                  req:respond(403, 'private', { ['Content-Type'] = 'text/plain' })
                end
                req:set_header('x-seen', 'yes')
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("expression (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{}
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, path, request headers, expected status, upstream path (or body) }
  local CASES = {
    { "the condition holds: URL rewritten", "/items", { ["X-Version"] = "2" }, 200, "/v2/items" },
    { "the condition does not hold", "/items", {}, 200, "/items" },
    { "the Lua answers itself", "/private", {}, 403, "private" },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = assert(g:request{ path = c[2], headers = c[3] })
      assert.equal(c[4], res.status)
      if c[4] == 200 then
        local echo = cjson.decode(res.body)
        assert.equal(c[5], echo.path)
        assert.equal("yes", echo.headers["x-seen"])
      else
        assert.equal(c[5], res.body)
      end
    end)
  end
end)
