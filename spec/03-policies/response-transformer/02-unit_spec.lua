-- luacheck: max line length 140
-- response-transformer on upstream answers played by the test kit: the
-- headers and body the client gets.

local testing = require "tollgate.testing"

local function json(body, extra)
  local h = { ["Content-Type"] = "application/json; charset=utf-8" }
  for k, v in pairs(extra or {}) do h[k] = v end
  return { status = 200, headers = h, body = body }
end

-- { case, action, request, upstream answer, expected: status, body, headers (false: absent) }
local CASES = {
  { "adds and removes top-level fields", { body = { add = { m = "req.method" }, remove = { "secret" } } },
    { path = "/" }, json('{"a":1,"secret":"s","b":[1,2]}'), { body = '{"a":1,"b":[1,2],"m":"GET"}' } },
  { "replaces a field in place", { body = { add = { a = "'x'" } } },
    { path = "/" }, json('{"a":1,"b":2}'), { body = '{"a":"x","b":2}' } },
  { "Content-Length follows", { body = { add = { longer = "'some more text'" } } },
    { path = "/" }, json('{}'), { body = '{"longer":"some more text"}', headers = { ["content-length"] = "27" } } },
  { "a body without Content-Type is tried as JSON", { body = { remove = { "a" } } },
    { path = "/" }, { body = '{"a":1,"b":2}' }, { body = '{"b":2}' } },
  { "an HTML body is left alone", { body = { remove = { "a" } } },
    { path = "/" }, { headers = { ["Content-Type"] = "text/html" }, body = '{"a":1}' }, { body = '{"a":1}' } },
  { "a JSON array is left alone", { body = { add = { a = "'1'" } } },
    { path = "/" }, json("[1]"), { body = "[1]" } },
  { "invalid JSON is left alone", { body = { add = { a = "'1'" } } },
    { path = "/" }, json("{oops"), { body = "{oops" } },
  { "an empty body stays empty", { body = { add = { a = "'1'" } } },
    { path = "/" }, json(""), { body = "", headers = { ["content-length"] = "0" } } },
  { "a compressed body is left alone", { body = { add = { a = "'1'" } } },
    { path = "/" }, json("{}", { ["Content-Encoding"] = "gzip" }), { body = "{}" } },
  { "a 204 is left alone", { body = { add = { a = "'1'" } } },
    { path = "/" }, { status = 204, headers = { ["Content-Type"] = "application/json" } },
    { status = 204, body = "" } },
  { "a HEAD response gets no body", { body = { add = { a = "'1'" } } },
    { method = "HEAD", path = "/" }, json("{}"), { body = "" } },
  { "an error status is transformed too", { body = { remove = { "stack" } } },
    { path = "/" }, { status = 500, headers = { ["Content-Type"] = "application/json" },
      body = '{"error":"e","stack":"..."}' }, { status = 500, body = '{"error":"e"}' } },
  { "adds a header", { headers = { add = { ["X-Id"] = "requestID" } } },
    { path = "/" }, json("{}"), { headers = { ["x-id"] = "=request" } } },
  { "an added header replaces the upstream's", { headers = { add = { ["Cache-Control"] = "'no-store'" } } },
    { path = "/" }, json("{}", { ["Cache-Control"] = "max-age=60" }), { headers = { ["cache-control"] = "no-store" } } },
  { "removes upstream headers, whatever the case", { headers = { remove = { "SERVER", "x-powered-by" } } },
    { path = "/" }, json("{}", { Server = "s", ["X-Powered-By"] = "p", ["X-Keep"] = "k" }),
    { headers = { server = false, ["x-powered-by"] = false, ["x-keep"] = "k" } } },
  { "a header value from the request", { headers = { add = { ["X-Echo"] = "req.headers['x-in']" } } },
    { path = "/", headers = { ["X-In"] = "v" } }, json("{}"), { headers = { ["x-echo"] = "v" } } },
}

describe("response-transformer", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = testing.policy("response-transformer", c[2]):run(c[3], { upstream = c[4] })
      local want = c[5]
      assert.equal(want.status or 200, res.status)
      if want.body then assert.equal(want.body, res.body) end
      for name, v in pairs(want.headers or {}) do
        if v == false then assert.is_nil(res.headers[name], name)
        elseif v == "=request" then assert.equal(res.upstream.headers["eg-request-id"], res.headers[name])
        else assert.equal(v, res.headers[name], name) end
      end
    end)
  end

  it("a Content-Length above maxBufferedBody is not read (the body streams as is)", function()
    local p = testing.policy("response-transformer", { body = { add = { a = "'1'" } } })
    p.instance.max_buffered = 10
    local res = p:run({ path = "/" }, { upstream = json('{"long":"more than ten bytes"}') })
    assert.equal('{"long":"more than ten bytes"}', res.body)
  end)

  it("a response made by a later policy is transformed too", function()
    local gw = testing.gateway([[
http:
  port: 0
apiEndpoints:
  api:
    paths: '*'
policies: [response-transformer, rate-limit]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - response-transformer:
          - action:
              headers: { add: { X-Gw: "'yes'" } }
              body: { add: { hint: "'slow down'" } }
      - rate-limit:
          - action: { max: 1, windowMs: 60000, rateLimitBy: "response-transformer-spec" }
]])
    gw:request{ path = "/x", headers = { Accept = "application/json" }, upstream = json("{}") }
    local res = gw:request{ path = "/x", headers = { Accept = "application/json" } }
    assert.equal(429, res.status)
    assert.equal('{"message":"Too many requests, please try again later.","hint":"slow down"}', res.body)
    assert.equal("yes", res.headers["x-gw"])
  end)
end)
