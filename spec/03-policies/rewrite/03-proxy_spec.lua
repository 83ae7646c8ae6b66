-- luacheck: max line length 140
-- rewrite in the real binary: rewritten URLs reach the mock upstream,
-- redirects come from the gateway.

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
policies: [rewrite, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - rewrite:
          - condition: { name: pathmatch, match: '/users/:id/posts/:post' }
            action: { rewrite: '/posts/:post\?author=:id' }     # \? : a plain ? makes :post optional
          - condition: { name: regexpmatch, match: '^/old/(.*)$' }
            action: { rewrite: '/new/$1', redirect: 301 }
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("rewrite (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{}
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, path, expected status, expected upstream path or Location }
  local CASES = {
    { "a pathmatch rewrite reaches the upstream", "/users/7/posts/99", 200, "/posts/99?author=7" },
    { "an unmatched URL goes through unchanged", "/users/7", 200, "/users/7" },
    { "a regexpmatch redirect", "/old/a/b?c=1", 301, "/new/a/b?c=1" },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = assert(g:request{ path = c[2] })
      assert.equal(c[3], res.status)
      if c[3] == 200 then
        assert.equal(c[4], cjson.decode(res.body).path)
      else
        assert.equal(c[4], res.headers["location"])
        assert.equal("Moved Permanently. Redirecting to " .. c[4], res.body)
      end
    end)
  end
end)
