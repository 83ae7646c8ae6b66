-- luacheck: max line length 140
-- cors in the real binary, in front of a mock upstream: preflights answered
-- by the gateway, headers added to proxied responses, config errors.

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
policies: [cors, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - cors:
          - action:
              origin: [https://a.example, '/^https:\/\/[a-z]+\.b\.example$/']
              credentials: true
              exposedHeaders: [X-Upstream]
              maxAge: 60
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("cors (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{ name = "m" }
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, method, path, request headers, expected status, expected headers (false: absent),
  --   reached the upstream }
  local CASES = {
    { "a preflight from an allowed origin is answered by the gateway", "OPTIONS", "/any",
      { Origin = "https://a.example", ["Access-Control-Request-Method"] = "POST",
        ["Access-Control-Request-Headers"] = "Content-Type" },
      204, { ["access-control-allow-origin"] = "https://a.example",
             ["access-control-allow-credentials"] = "true",
             ["access-control-allow-methods"] = "GET,HEAD,PUT,PATCH,POST,DELETE",
             ["access-control-allow-headers"] = "Content-Type",
             ["access-control-max-age"] = "60",
             vary = "Origin, Access-Control-Request-Headers" }, false },
    { "a preflight from another origin: 204 without Allow-Origin", "OPTIONS", "/any",
      { Origin = "https://evil.example" },
      204, { ["access-control-allow-origin"] = false }, false },
    { "a GET from a regex-allowed origin is proxied with the headers", "GET", "/echo",
      { Origin = "https://shop.b.example" },
      200, { ["access-control-allow-origin"] = "https://shop.b.example",
             ["access-control-expose-headers"] = "X-Upstream",
             ["access-control-max-age"] = false, ["x-upstream"] = "m" }, true },
    { "Origin joins the upstream's Vary", "GET", "/header/Vary/Accept-Encoding",
      { Origin = "https://a.example" },
      200, { vary = "Accept-Encoding, Origin", ["access-control-allow-origin"] = "https://a.example" }, true },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local before = assert(up:count()).requests
      local res = assert(g:request{ method = c[2], path = c[3], headers = c[4] })
      assert.equal(c[5], res.status)
      for name, v in pairs(c[6]) do
        if v == false then assert.is_nil(res.headers[name], name)
        else assert.equal(v, res.headers[name], name) end
      end
      if c[5] == 204 then assert.equal("", res.body) end
      -- the /count request itself is counted
      assert.equal(before + (c[7] and 2 or 1), assert(up:count()).requests)
    end)
  end

  it("the upstream sees the request unchanged", function()
    local res = assert(g:request{ path = "/echo", headers = { Origin = "https://a.example" } })
    local echo = cjson.decode(res.body)
    assert.equal("https://a.example", echo.headers.origin)
    assert.equal("/echo", echo.path)
  end)
end)

describe("cors config errors (binary -t)", function()
  -- { case, origin YAML, text of the error }
  local ERRORS = {
    { "an invalid regex", "'/(x/'", "cors[1].action: origin: invalid regular expression" },
    { "Express Gateway's regex tag with an invalid regex", "!!js/regexp /(x/",
      "cors[1].action: origin: invalid regular expression" },
  }
  for _, c in ipairs(ERRORS) do
    it(c[1], function()
      local text = CONFIG:gsub("origin: %b[]", function() return "origin: " .. c[2] end)
      local code, out = gateway.check(text, { vars = { UPSTREAM_PORT = 1 } })
      assert.equal(1, code)
      assert.truthy(out:find(c[3], 1, true), out)
      assert.truthy(out:find("gateway.config.yml:%d+:"), out)
    end)
  end
end)
