-- luacheck: max line length 140
-- cors on requests parsed by the gateway's C, without a server: the headers
-- of preflights the gateway answers, and of responses from the upstream.

local testing = require "tollgate.testing"

local A = "https://a.example"
local DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"

local function preflight(origin, extra)
  local h = { Origin = origin, ["Access-Control-Request-Method"] = "PUT" }
  for k, v in pairs(extra or {}) do h[k] = v end
  return { method = "OPTIONS", path = "/r", headers = h }
end

local function get(origin)
  return { method = "GET", path = "/r", headers = { Origin = origin } }
end

-- { case, action, request, upstream answer (nil: 200 ""), expected:
--   status, upstream (was it called), headers (name = value, or false: absent) }
local CASES = {
  { "default: a request gets Allow-Origin *, without Vary", {}, get(A), nil,
    { status = 200, upstream = true, headers = { ["access-control-allow-origin"] = "*", vary = false,
      ["access-control-allow-methods"] = false, ["access-control-allow-credentials"] = false } } },
  { "default: a preflight is answered 204, empty, by the gateway", {},
    preflight(A, { ["Access-Control-Request-Headers"] = "X-A, Content-Type" }), nil,
    { status = 204, upstream = false, body = "", headers = {
      ["access-control-allow-origin"] = "*",
      ["access-control-allow-methods"] = DEFAULT_METHODS,
      ["access-control-allow-headers"] = "X-A, Content-Type",
      vary = "Access-Control-Request-Headers",
      ["access-control-max-age"] = false } } },
  { "a preflight without Access-Control-Request-Headers allows no headers", {}, preflight(A), nil,
    { status = 204, upstream = false, headers = { ["access-control-allow-headers"] = false,
      vary = "Access-Control-Request-Headers" } } },
  { "any OPTIONS is a preflight (the cors module's rule)", {},
    { method = "OPTIONS", path = "/r" }, nil,
    { status = 204, upstream = false, headers = { ["access-control-allow-origin"] = "*" } } },
  { "a fixed origin is sent whatever the request's, with Vary: Origin", { origin = A },
    get("https://other.example"), nil,
    { status = 200, upstream = true, headers = { ["access-control-allow-origin"] = A, vary = "Origin" } } },
  { "origin true reflects the request's origin", { origin = true }, get("https://x.example"), nil,
    { status = 200, headers = { ["access-control-allow-origin"] = "https://x.example", vary = "Origin" } } },
  { "origin true without an Origin header: no Allow-Origin", { origin = true },
    { path = "/r" }, nil,
    { status = 200, headers = { ["access-control-allow-origin"] = false, vary = "Origin" } } },
  { "a list reflects an origin in it", { origin = { "https://b.example", A } }, get(A), nil,
    { status = 200, headers = { ["access-control-allow-origin"] = A, vary = "Origin" } } },
  { "a list refuses an origin not in it (no Allow-Origin, request still served)",
    { origin = { "https://b.example", A } }, get("https://evil.example"), nil,
    { status = 200, upstream = true, headers = { ["access-control-allow-origin"] = false, vary = "Origin" } } },
  { "list items are exact: no prefix match", { origin = { A } }, get(A .. ".evil"), nil,
    { status = 200, headers = { ["access-control-allow-origin"] = false } } },
  { "a regex in a list matches", { origin = { "/^https:\\/\\/[a-z]+\\.example$/" } },
    get("https://shop.example"), nil,
    { status = 200, headers = { ["access-control-allow-origin"] = "https://shop.example", vary = "Origin" } } },
  { "a regex in a list does not match", { origin = { "/^https:\\/\\/[a-z]+\\.example$/" } },
    get("http://shop.example"), nil,
    { status = 200, headers = { ["access-control-allow-origin"] = false, vary = "Origin" } } },
  { "a regex alone, with the i flag", { origin = "/SHOP\\.example$/i" }, get("https://shop.example"), nil,
    { status = 200, headers = { ["access-control-allow-origin"] = "https://shop.example" } } },
  { "a regex without the i flag is case-sensitive", { origin = "/SHOP\\.example$/" },
    get("https://shop.example"), nil,
    { status = 200, headers = { ["access-control-allow-origin"] = false } } },
  { "origin false: no headers, and preflights go upstream", { origin = false }, preflight(A), nil,
    { status = 200, upstream = true, headers = { ["access-control-allow-origin"] = false, vary = false } } },
  { "credentials on a request", { credentials = true, origin = true }, get(A), nil,
    { status = 200, headers = { ["access-control-allow-credentials"] = "true",
      ["access-control-allow-origin"] = A } } },
  { "credentials on a preflight", { credentials = true }, preflight(A), nil,
    { status = 204, headers = { ["access-control-allow-credentials"] = "true" } } },
  { "exposedHeaders on a request, joined with commas", { exposedHeaders = { "X-A", "X-B" } }, get(A), nil,
    { status = 200, headers = { ["access-control-expose-headers"] = "X-A,X-B" } } },
  { "exposedHeaders on a preflight too", { exposedHeaders = "X-A" }, preflight(A), nil,
    { status = 204, headers = { ["access-control-expose-headers"] = "X-A" } } },
  { "maxAge on a preflight", { maxAge = 600 }, preflight(A), nil,
    { status = 204, headers = { ["access-control-max-age"] = "600" } } },
  { "maxAge 0 is sent", { maxAge = 0 }, preflight(A), nil,
    { status = 204, headers = { ["access-control-max-age"] = "0" } } },
  { "maxAge not on a request", { maxAge = 600 }, get(A), nil,
    { status = 200, headers = { ["access-control-max-age"] = false } } },
  { "allowedHeaders replaces the reflection (no Vary for it)",
    { allowedHeaders = { "Content-Type", "Authorization" }, origin = A },
    preflight(A, { ["Access-Control-Request-Headers"] = "X-Other" }), nil,
    { status = 204, headers = { ["access-control-allow-headers"] = "Content-Type,Authorization",
      vary = "Origin" } } },
  { "methods as a string, as written", { methods = "GET, POST" }, preflight(A), nil,
    { status = 204, headers = { ["access-control-allow-methods"] = "GET, POST" } } },
  { "reflected origin and headers: both in Vary", { origin = true },
    preflight(A, { ["Access-Control-Request-Headers"] = "X-A" }), nil,
    { status = 204, headers = { vary = "Origin, Access-Control-Request-Headers" } } },
  { "optionsSuccessStatus", { optionsSuccessStatus = 200 }, preflight(A), nil,
    { status = 200, upstream = false, body = "" } },
  { "preflightContinue: the upstream answers the preflight, with the headers added",
    { preflightContinue = true, maxAge = 5 }, preflight(A), { status = 200, body = "from upstream" },
    { status = 200, upstream = true, body = "from upstream", headers = {
      ["access-control-allow-origin"] = "*", ["access-control-max-age"] = "5",
      ["access-control-allow-methods"] = DEFAULT_METHODS } } },
  { "Origin is added to the upstream's Vary", { origin = true }, get(A),
    { headers = { Vary = "Accept-Encoding" } },
    { status = 200, headers = { vary = "Accept-Encoding, Origin" } } },
  { "Origin is not repeated in the upstream's Vary", { origin = true }, get(A),
    { headers = { Vary = "origin, Accept" } },
    { status = 200, headers = { vary = "origin, Accept" } } },
  { "Vary: * stays", { origin = true }, get(A), { headers = { Vary = "*" } },
    { status = 200, headers = { vary = "*" } } },
  { "the policy's Allow-Origin replaces the upstream's", { origin = A }, get(A),
    { headers = { ["Access-Control-Allow-Origin"] = "*" } },
    { status = 200, headers = { ["access-control-allow-origin"] = A } } },
  { "an upstream error still gets the headers", {}, get(A), { status = 500, body = "boom" },
    { status = 500, body = "boom", headers = { ["access-control-allow-origin"] = "*" } } },
}

describe("cors", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local p = testing.policy("cors", c[2])
      local res = p:run(c[3], { upstream = c[4] })
      local want = c[5]
      assert.equal(want.status, res.status)
      if want.upstream ~= nil then assert.equal(want.upstream, res.upstream ~= nil) end
      if want.body then assert.equal(want.body, res.body) end
      for name, v in pairs(want.headers or {}) do
        if v == false then
          assert.is_nil(res.headers[name], name)
        else
          assert.equal(v, res.headers[name], name)
        end
      end
    end)
  end

  it("a preflight answer has Content-Length 0 or none, and no body", function()
    local res = testing.policy("cors", { optionsSuccessStatus = 200 }):run(preflight(A))
    assert.equal(200, res.status)
    assert.equal("0", res.headers["content-length"])
    assert.equal("", res.body)
  end)

  it("a response made by a later policy gets the headers (a 401 from the pipeline)", function()
    local gw = testing.gateway([[
http:
  port: 0
apiEndpoints:
  api:
    paths: '*'
policies: [cors, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - cors:
          - action: { origin: true, credentials: true }
      - terminate:
          - action: { statusCode: 401, message: Unauthorized }
]])
    local res = gw:request{ path = "/x", headers = { Origin = A } }
    assert.equal(401, res.status)
    assert.equal(A, res.headers["access-control-allow-origin"])
    assert.equal("true", res.headers["access-control-allow-credentials"])
    assert.equal("Origin", res.headers["vary"])
  end)

  it("two cors steps under conditions: only the one that ran adds headers", function()
    local gw = testing.gateway([[
http:
  port: 0
apiEndpoints:
  api:
    paths: '*'
policies: [cors, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - cors:
          - condition: { name: pathExact, path: /public }
            action: { origin: '*' }
          - condition: { name: pathExact, path: /private }
            action: { origin: https://a.example }
      - terminate:
          - action: { statusCode: 200, message: ok }
]])
    local pub = gw:request{ path = "/public", headers = { Origin = A } }
    assert.equal("*", pub.headers["access-control-allow-origin"])
    assert.is_nil(pub.headers["vary"])
    local priv = gw:request{ path = "/private", headers = { Origin = A } }
    assert.equal(A, priv.headers["access-control-allow-origin"])
    assert.equal("Origin", priv.headers["vary"])
  end)
end)
