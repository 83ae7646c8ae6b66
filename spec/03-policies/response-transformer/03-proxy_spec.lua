-- luacheck: max line length 140
-- response-transformer in the real binary: the mock upstream's JSON echo,
-- edited on its way to the client.

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
policies: [response-transformer, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - response-transformer:
          - action:
              headers:
                add: { X-Gw: "'tollgate'" }
                remove: [x-upstream]
              body:
                add: { gateway: "'tollgate'" }
                remove: [headers, connection_id]
      - proxy:
          - action: { serviceEndpoint: up }
]]

describe("response-transformer (binary)", function()
  local up, g

  lazy_setup(function()
    up = mock.start{ name = "m" }
    g = gateway.start{ config = CONFIG, vars = { UPSTREAM_PORT = up.port } }
  end)

  lazy_teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  it("edits the JSON echo and its headers; Content-Length matches", function()
    local res = assert(g:request{ method = "POST", path = "/echo", body = "hi" })
    assert.equal(200, res.status)
    assert.equal("tollgate", res.headers["x-gw"])
    assert.is_nil(res.headers["x-upstream"])
    assert.equal(tostring(#res.body), res.headers["content-length"])
    local echo = cjson.decode(res.body)
    assert.equal("tollgate", echo.gateway)
    assert.equal("hi", echo.body)
    assert.equal("/echo", echo.path)
    assert.is_nil(echo.headers)
    assert.is_nil(echo.connection_id)
  end)

  it("leaves a text body alone, edits its headers", function()
    local res = assert(g:request{ path = "/status/201" })
    assert.equal(201, res.status)
    assert.equal("status 201", res.body)
    assert.equal("tollgate", res.headers["x-gw"])
    assert.is_nil(res.headers["x-upstream"])
  end)

  it("a large chunked text response streams through untouched", function()
    local res = assert(g:request{ path = "/chunked/200" })
    assert.equal(200, res.status)
    local n = 0
    for _ in res.body:gmatch("chunk%d+\n") do n = n + 1 end
    assert.equal(200, n)
  end)
end)
