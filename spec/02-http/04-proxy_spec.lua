-- luacheck: std +busted
-- The proxy policy against the mock upstream: Host (changeOrigin), paths
-- (stripPath, service URL prefix), X-Forwarded-*, eg-request-id,
-- hop-by-hop headers, round robin, upstream failures (502/504/closed),
-- upstream keep-alive reuse; and the terminate policy.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local process = require "spec.support.process"
local socket = require "socket"
local h = require "spec.02-http.helpers"
local cjson = require "cjson"

local now = socket.gettime

local CONFIG = [[
apiEndpoints:
  strip: { host: '*', paths: '/api/*' }
  prefixed: { host: '*', paths: '/pfx/*' }
  prefixed-strip: { host: '*', paths: '/sp/*' }
  keephost: { host: '*', paths: '/keephost/*' }
  xfwd: { host: '*', paths: '/xfwd/*' }
  slow: { host: '*', paths: '/to/*' }
  rr: { host: '*', paths: '/rr/*' }
  ka: { host: '*', paths: '/ka/*' }
  refused: { host: '*', paths: '/refused/*' }
  refused-rl: { host: '*', paths: '/refused-rl/*' }
  refused-cors: { host: '*', paths: '/refused-cors/*' }
  term-default: { host: '*', paths: '/term-default' }
  term: { host: '*', paths: '/term' }
  all: { host: '*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${A_PORT}' }
  prefixed: { url: 'http://127.0.0.1:${A_PORT}/base/' }
  pair: { urls: ['http://127.0.0.1:${A_PORT}', 'http://127.0.0.1:${B_PORT}'] }
  pooled: { url: 'http://127.0.0.1:${C_PORT}' }
  dead: { url: 'http://127.0.0.1:${DEAD_PORT}' }
policies: [proxy, terminate, rate-limit, cors]
pipelines:
  strip:
    apiEndpoints: [strip]
    policies:
      - proxy: [ { action: { serviceEndpoint: backend, stripPath: true } } ]
  prefixed:
    apiEndpoints: [prefixed]
    policies:
      - proxy: [ { action: { serviceEndpoint: prefixed } } ]
  prefixed-strip:
    apiEndpoints: [prefixed-strip]
    policies:
      - proxy: [ { action: { serviceEndpoint: prefixed, stripPath: true } } ]
  keephost:
    apiEndpoints: [keephost]
    policies:
      - proxy: [ { action: { serviceEndpoint: backend, changeOrigin: false, stripPath: true } } ]
  xfwd:
    apiEndpoints: [xfwd]
    policies:
      - proxy: [ { action: { serviceEndpoint: backend, xfwd: true, stripPath: true } } ]
  slow:
    apiEndpoints: [slow]
    policies:
      - proxy: [ { action: { serviceEndpoint: backend, proxyTimeout: 300, stripPath: true } } ]
  rr:
    apiEndpoints: [rr]
    policies:
      - proxy: [ { action: { serviceEndpoint: pair, stripPath: true } } ]
  ka:
    apiEndpoints: [ka]
    policies:
      - proxy: [ { action: { serviceEndpoint: pooled, stripPath: true } } ]
  refused:
    apiEndpoints: [refused]
    policies:
      - proxy: [ { action: { serviceEndpoint: dead } } ]
  refused-rl:
    apiEndpoints: [refused-rl]
    policies:
      - rate-limit: [ { action: { max: 1000 } } ]
      - proxy: [ { action: { serviceEndpoint: dead } } ]
  refused-cors:
    apiEndpoints: [refused-cors]
    policies:
      - cors: [ { action: { origin: '*' } } ]
      - proxy: [ { action: { serviceEndpoint: dead } } ]
  term-default:
    apiEndpoints: [term-default]
    policies:
      - terminate: [ { action: {} } ]
  term:
    apiEndpoints: [term]
    policies:
      - terminate: [ { action: { statusCode: 418, message: short and stout } } ]
  all:
    apiEndpoints: [all]
    policies:
      - proxy: [ { action: { serviceEndpoint: backend } } ]
]]

-- path (through the gateway) -> path the upstream must see
local PATHS = {
  { "/echo/x?q=1", "/echo/x?q=1" },                    -- plain
  { "/api/users/7?x=1", "/users/7?x=1" },              -- stripPath with /api/*
  { "/api/", "/" },
  { "/pfx/items?y=2", "/base/pfx/items?y=2" },         -- service URL path joined
  { "/sp/items", "/base/items" },                      -- both
}

describe("proxy", function()
  local a, b, c, g

  setup(function()
    a = mock.start{ name = "a" }
    b = mock.start{ name = "b" }
    c = mock.start{ name = "c" }
    g = gateway.start{
      config = h.head() .. CONFIG,
      vars = { A_PORT = a.port, B_PORT = b.port, C_PORT = c.port,
               DEAD_PORT = process.free_port() },
    }
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  local function echo(path, headers, opts)
    local o = { path = path, headers = headers }
    for k, v in pairs(opts or {}) do o[k] = v end
    local res = assert(g:request(o))
    assert.equal(200, res.status)
    return cjson.decode(res.body), res
  end

  for _, p in ipairs(PATHS) do
    it("sends " .. p[1] .. " upstream as " .. p[2], function()
      assert.equal(p[2], (echo(p[1])).path)
    end)
  end

  it("sends the upstream's host:port as Host with changeOrigin (the default)", function()
    local e = echo("/echo", nil, { host = "client.example:1234" })
    assert.equal("127.0.0.1:" .. a.port, e.headers.host)
  end)

  it("keeps the client's Host with changeOrigin: false", function()
    local e = echo("/keephost/echo", nil, { host = "client.example:1234" })
    assert.equal("client.example:1234", e.headers.host)
  end)

  it("appends to X-Forwarded-For with xfwd", function()
    local e = echo("/xfwd/echo", { ["X-Forwarded-For"] = "10.0.0.1, 10.0.0.2" },
                   { host = "client.example:1234" })
    -- http-proxy (Express Gateway) appends with "," and no space
    assert.equal("10.0.0.1, 10.0.0.2,127.0.0.1", e.headers["x-forwarded-for"])
    assert.equal("http", e.headers["x-forwarded-proto"])
    assert.equal("1234", e.headers["x-forwarded-port"])
    assert.equal("client.example:1234", e.headers["x-forwarded-host"])
  end)

  it("adds no X-Forwarded-For without xfwd", function()
    local e = echo("/echo/noxfwd")
    assert.is_nil(e.headers["x-forwarded-for"])
  end)

  it("sends eg-request-id upstream and logs the same id", function()
    local e = echo("/echo/request-id-check")
    local id = e.headers["eg-request-id"]
    assert.is_string(id)
    assert.is_true(#id >= 8)
    local entry = process.wait_for(function()
      for _, l in ipairs(h.access_log(g)) do
        if l.path == "/echo/request-id-check" then return l end
      end
    end, 5, "the access log line of /echo/request-id-check")
    assert.equal(id, entry.id)
    assert.equal(200, entry.status)
    -- ids are unique per request
    assert.are_not.equal(id, echo("/echo/request-id-check2").headers["eg-request-id"])
  end)

  it("drops hop-by-hop request headers, including those named by Connection", function()
    local e = echo("/echo/hop", {
      { "Connection", "keep-alive, X-Secret" },
      { "X-Secret", "1" },
      { "Keep-Alive", "timeout=5" },
      { "Proxy-Connection", "keep-alive" },
      { "Upgrade", "h2c" },
      { "X-Kept", "yes" },
    })
    assert.is_nil(e.headers["x-secret"])
    assert.is_nil(e.headers["keep-alive"])
    assert.is_nil(e.headers["proxy-connection"])
    assert.is_nil(e.headers["upgrade"])
    assert.equal("yes", e.headers["x-kept"])
  end)

  it("drops hop-by-hop response headers, including those named by Connection", function()
    local res = assert(g:get("/headers?Keep-Alive=timeout%3D5&Connection=x-up&X-Up=1&X-Kept=yes"))
    assert.equal(200, res.status)
    assert.is_nil(res.headers["keep-alive"])
    assert.is_nil(res.headers["x-up"])
    assert.equal("yes", res.headers["x-kept"])
    local res2 = assert(g:get("/header/Keep-Alive/timeout%3D5"))
    assert.equal(200, res2.status)
    assert.is_nil(res2.headers["keep-alive"])
  end)

  it("alternates between urls (round robin)", function()
    local seen = {}
    for i = 1, 6 do
      local res = assert(g:get("/rr/echo"))
      assert.equal(200, res.status)
      seen[i] = res.headers["x-upstream"]
    end
    for i = 2, 6 do
      assert.are_not.equal(seen[i - 1], seen[i], "order: " .. table.concat(seen, ","))
    end
    assert.is_truthy(seen[1] == "a" or seen[1] == "b")
  end)

  it("answers 502 'Bad gateway.' when the upstream refuses the connection", function()
    local res = assert(g:get("/refused/x"))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
    assert.matches("^text/html", res.headers["content-type"])
  end)

  -- rate-limit and proxy: no response or log phase, so Lua is done once it
  -- asks for the proxy, and the gateway makes the 502 itself
  it("answers 502 with the headers earlier policies set when Lua is not resumed", function()
    local res = assert(g:get("/refused-rl/x"))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
    assert.matches("^text/html", res.headers["content-type"])
    assert.equal("1000", res.headers["x-ratelimit-limit"])
    assert.equal("999", res.headers["x-ratelimit-remaining"])
  end)

  -- cors has a response phase: Lua is resumed after the failed proxy
  it("answers 502 and runs later phases when a policy has a response phase", function()
    local res = assert(g:get("/refused-cors/x", { Origin = "http://o.example" }))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
    assert.matches("^text/html", res.headers["content-type"])
    assert.equal("*", res.headers["access-control-allow-origin"])
  end)

  it("answers 504 when the upstream does not answer within proxyTimeout", function()
    local t0 = now()
    local res = assert(g:get("/to/never-answer", nil, { timeout = 5 }))
    local took = now() - t0
    assert.equal(504, res.status)
    assert.equal("Gateway timeout.", res.body)
    assert.is_true(took >= 0.25 and took < 3, ("504 after %.3fs, proxyTimeout is 0.3s"):format(took))
  end)

  it("answers 502 when the upstream resets before the head", function()
    local res = assert(g:get("/reset-before-head"))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
  end)

  it("answers 502 to an invalid upstream response", function()
    local res = assert(g:get("/invalid-response"))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
  end)

  it("closes the client connection when the upstream dies mid-body", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:request{ path = "/reset-mid-body" })
    local res, err, partial = conn:read_response{ timeout = 3 }
    assert.is_nil(res)
    assert.is_truthy(err == "closed" or err == "connection reset by peer",
                     "expected the connection closed, got " .. tostring(err))
    assert.equal(200, partial.status)
    assert.is_true(partial.body_length < 100000)
  end)

  it("streams a chunked upstream response", function()
    local res = assert(g:get("/chunked/5"))
    assert.equal(200, res.status)
    assert.equal("chunk1\nchunk2\nchunk3\nchunk4\nchunk5\n", res.body)
  end)

  it("passes a close-delimited upstream body through", function()
    local res = assert(g:get("/close-delimited"))
    assert.equal(200, res.status)
    assert.is_true(#res.body > 0)
  end)

  it("reuses one upstream connection for sequential requests", function()
    for i = 1, 4 do
      local e = echo("/ka/echo/" .. i)
      assert.equal(i, e.connection_request)
    end
    local res = assert(g:get("/ka/count"))
    assert.equal(200, res.status)
    local count = cjson.decode(res.body)
    assert.equal(5, count.requests)
    assert.equal(1, count.connections)
  end)

  it("retries a GET once when the pooled upstream connection went stale", function()
    assert.equal(200, assert(g:get("/ka/echo/pool")).status)
    -- restart the upstream on the same port: the pooled connection is dead
    local port = c.port
    c:stop()
    c = mock.start{ name = "c2", port = port }
    local res = assert(g:get("/ka/echo/after-restart"))
    assert.equal(200, res.status)
    assert.equal("c2", res.headers["x-upstream"])
  end)

  it("terminate answers 400 'Terminated' by default", function()
    local res = assert(g:get("/term-default"))
    assert.equal(400, res.status)
    assert.equal("Terminated", res.body)
    assert.matches("^text/html", res.headers["content-type"])
  end)

  it("terminate answers its statusCode and message", function()
    local res = assert(g:get("/term"))
    assert.equal(418, res.status)
    assert.equal("short and stout", res.body)
  end)
end)

-- Upstream responses that are not valid HTTP/1.1, or that a lenient reading
-- would frame differently: never passed on as they are.
local RAW = {
  ["/bare-cr"] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\rXok",
  ["/bare-lf"] = "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
  ["/one-digit-status"] = "HTTP/1.1 2 OK\r\nContent-Length: 2\r\n\r\nok",
  ["/nul-in-value"] = "HTTP/1.1 200 OK\r\nX-A: \0b\r\nContent-Length: 2\r\n\r\nok",
  ["/space-before-colon"] = "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok",
  -- a 1xx has no content, whatever it declares: the final response follows it
  ["/interim-with-length"] = "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
    .. "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
  ["/chunk-not-crlf"] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhelloXX5\r\nworld\r\n0\r\n\r\n",
  ["/chunk-trailers"] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5\r\nhello\r\n0\r\nX-Trailer: t\r\nSet-Cookie: s=1\r\n\r\n",
}
RAW["/read/chunk-trailers"] = RAW["/chunk-trailers"]

-- /read/*: a policy reads the upstream's body whole (the head is written
-- after it)
local RAW_CONFIG = [[
apiEndpoints:
  read: { host: '*', paths: '/read/*' }
  all: { host: '*' }
serviceEndpoints:
  raw: { url: 'http://127.0.0.1:${RAW}' }
policies: [proxy, readbody]
pipelines:
  read:
    apiEndpoints: [read]
    policies:
      - readbody:
      - proxy: [ { action: { serviceEndpoint: raw } } ]
  all: { apiEndpoints: [all], policies: [ { proxy: [ { action: { serviceEndpoint: raw } } ] } ] }
]]

local READ_BODY = [[
return {
  name = "readbody",
  response = function(self, req) req.response:body() end,
}
]]

describe("proxy, invalid upstream responses", function()
  local up, g

  setup(function()
    up = h.raw_upstream(RAW)
    g = gateway.start{ config = h.head{ upstream = { keepalive = 0 } } .. RAW_CONFIG,
                       vars = { RAW = up.port }, files = { ["policies/readbody.lua"] = READ_BODY } }
  end)

  teardown(function()
    gateway.cleanup_all()
    up.stop()
  end)

  for _, path in ipairs{ "/bare-cr", "/bare-lf", "/one-digit-status", "/nul-in-value",
                         "/space-before-colon" } do
    it("answers 502 to " .. path:sub(2), function()
      local res = assert(g:get(path))
      assert.equal(502, res.status)
      assert.equal("Bad gateway.", res.body)
    end)
  end

  it("drops a 1xx response's declared content: the final response is the one after its head",
     function()
    local res = assert(g:get("/interim-with-length"))
    assert.equal(200, res.status)
    assert.equal("real", res.body)
  end)

  it("cuts the client connection when a chunk's data is not followed by CRLF", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:request{ path = "/chunk-not-crlf" })
    local res, err, partial = conn:read_response{ timeout = 3 }
    assert.is_nil(res, "a complete response")
    assert.is_truthy(err == "closed" or err == "connection reset by peer", tostring(err))
    if partial then assert.equal(200, partial.status) end
  end)

  for _, path in ipairs{ "/chunk-trailers", "/read/chunk-trailers" } do
    it("drops the trailer section of a chunked response (" .. path .. ")", function()
      local res = assert(g:get(path))
      assert.equal(200, res.status)
      assert.equal("hello", res.body)
      assert.is_nil(res.headers["x-trailer"])
      assert.is_nil(res.headers["set-cookie"])
    end)
  end
end)
