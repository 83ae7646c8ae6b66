-- luacheck: max line length 140
-- request-size-limit in the real binary: refusals by Content-Length before
-- the body is sent, chunked bodies measured, small bodies proxied.

local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"
local http = require "spec.support.http"
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
policies: [request-size-limit, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - request-size-limit:
          - action: { maxSize: 1kb }
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("request-size-limit (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{}
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- { case, request, expected status, upstream body_length (200) }
  local CASES = {
    { "a small body is proxied", { method = "POST", path = "/upload", body = ("a"):rep(1024) }, 200, 1024 },
    { "a large body is refused", { method = "POST", path = "/upload", body = ("a"):rep(1025) }, 413 },
    { "a small chunked body is proxied with its length",
      { method = "POST", path = "/echo", chunks = { ("a"):rep(500), ("b"):rep(500) } }, 200, 1000 },
    { "a large chunked body is refused", { method = "POST", path = "/echo", chunks = { ("a"):rep(600), ("b"):rep(600) } },
      413 },
  }

  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = assert(g:request(c[2]))
      assert.equal(c[3], res.status)
      if c[3] == 200 then
        local echo = cjson.decode(res.body)
        assert.equal(c[4], echo.received or echo.body_length)
      else
        assert.equal("Payload Too Large", res.body)
      end
    end)
  end

  it("answers 413 to Expect: 100-continue without asking for the body", function()
    local conn = assert(http.connect(g.port))
    finally(function() conn:close() end)
    assert(conn:send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n" ..
      "Expect: 100-continue\r\n\r\n"))
    local res = assert(conn:read_response{ interim = true })
    assert.equal(413, res.status) -- not 100 Continue first
    assert.equal("Payload Too Large", res.body)
  end)
end)
