-- TLS behind the transport interface: the HTTP code works the same over
-- TLS on either side (large bodies both ways with backpressure, chunked
-- responses, keep-alive, pipelining, HEAD), and an upgrade the upstream
-- declines leaves an ordinary HTTP exchange.

local H = require "spec.05-tls.helpers"
local certs = require "spec.support.certs"
local http = require "spec.support.http"
local mock = require "spec.support.mock"
local ws = require "spec.support.ws"
local cjson = require "cjson"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
https:
  hostname: 127.0.0.1
  port: 0
  tls:
    default:
      key: tls/default.key
      cert: tls/default.pem
tollgate:
  accessLog: off
apiEndpoints:
  plain: { paths: '/plain/*' }
  tls: { paths: '/tls/*' }
serviceEndpoints:
  plain: { url: 'http://127.0.0.1:${PLAIN_PORT}' }
  tls: { url: 'https://127.0.0.1:${TLS_PORT}' }
policies: [proxy]
pipelines:
  plain:
    apiEndpoints: [plain]
    policies:
      - proxy: [ { action: { serviceEndpoint: plain, stripPath: true } } ]
  tls:
    apiEndpoints: [tls]
    policies:
      - proxy: [ { action: { serviceEndpoint: tls, caFile: tls/ca.pem, stripPath: true } } ]
]]

local BIG = 8 * 1024 * 1024

describe("TLS transport: HTTP over TLS on either side", function()
  local c, plain_up, tls_up, g

  setup(function()
    c = certs.generate()
    plain_up = mock.start{ name = "plain" }
    tls_up = mock.start{ name = "tls", tls = { cert = c.upstream.cert, key = c.upstream.key } }
    g = H.start{ config = CONFIG, files = H.tls_files(c, { "default" }),
                 vars = { PLAIN_PORT = plain_up.port, TLS_PORT = tls_up.port } }
  end)

  teardown(function()
    if g then g:cleanup() end
    if plain_up then plain_up:stop() end
    if tls_up then tls_up:stop() end
    if c then c:cleanup() end
  end)

  local function tls_conn()
    return assert(http.connect(g.tls_port, "127.0.0.1", { tls = H.tls(c), timeout = 20 }))
  end

  -- each combination: client side TLS or not, upstream TLS or not
  local SIDES = {
    { "https client, http upstream", true, "/plain" },
    { "http client, https upstream", false, "/tls" },
    { "https client, https upstream", true, "/tls" },
  }

  for _, side in ipairs(SIDES) do
    local name, client_tls, prefix = side[1], side[2], side[3]

    local function conn()
      if client_tls then return tls_conn() end
      return assert(http.connect(g.port, "127.0.0.1", { timeout = 20 }))
    end

    it(name .. ": a large response body arrives whole", function()
      local cn = conn()
      assert(cn:request{ path = prefix .. "/bytes/" .. BIG })
      local res = assert(cn:read_response{ discard = true })
      assert.equal(200, res.status)
      assert.equal(BIG, res.body_length)
      cn:close()
    end)

    it(name .. ": a reader taking 16 KB at a time gets the large body whole", function()
      local cn = conn()
      assert(cn:request{ path = prefix .. "/bytes/" .. BIG })
      local res = assert(cn:read_response{ head_only = true })
      assert.equal(200, res.status)
      local got = #cn.buf
      cn.buf = ""
      while got < BIG do
        local piece = assert(cn:receive_some(16384))
        got = got + #piece
      end
      assert.equal(BIG, got)
      cn:close()
    end)

    it(name .. ": a large request body arrives whole", function()
      local cn = conn()
      assert(cn:request{ method = "POST", path = prefix .. "/upload",
                         headers = { ["Content-Length"] = BIG },
                         body = http.source_bytes(BIG) })
      local res = assert(cn:read_response())
      assert.equal(200, res.status)
      assert.equal(BIG, cjson.decode(res.body).received)
      -- chunked too
      assert(cn:request{ method = "POST", path = prefix .. "/upload",
                         body = http.source_bytes(BIG / 4) })
      res = assert(cn:read_response())
      assert.equal(BIG / 4, cjson.decode(res.body).received)
      cn:close()
    end)

    it(name .. ": chunked responses, HEAD, keep-alive and pipelining", function()
      local cn = conn()
      assert(cn:request{ path = prefix .. "/chunked/200" })
      local res = assert(cn:read_response())
      assert.equal(200, res.status)
      assert.equal("chunked", res.framing)
      assert.matches("^chunk1\n.*chunk200\n$", res.body)

      assert(cn:request{ method = "HEAD", path = prefix .. "/bytes/1000" })
      res = assert(cn:read_response())
      assert.equal("1000", res.headers["content-length"])
      assert.equal("", res.body)

      for i = 1, 10 do assert(cn:request{ path = prefix .. "/pipelined/" .. i }) end
      for i = 1, 10 do
        res = assert(cn:read_response())
        assert.equal(200, res.status)
        assert.equal("/pipelined/" .. i, cjson.decode(res.body).path)
      end
      cn:close()
    end)
  end

  it("an upgrade the upstream declines is an ordinary exchange; the connection goes on",
     function()
    for _, client_tls in ipairs{ false, true } do
      local cn = client_tls and tls_conn() or assert(http.connect(g.port))
      -- /not-ws on the mock answers with its JSON echo, not a 101
      local sock, err, res = ws.handshake(cn, "/tls/not-ws")
      assert.is_nil(sock)
      assert.matches("no upgrade", err)
      assert.equal(200, res.status)
      assert.equal("websocket", cjson.decode(res.body).headers["upgrade"])
      assert(cn:request{ path = "/plain/after" })
      res = assert(cn:read_response())
      assert.equal(200, res.status)
      assert.equal("/after", cjson.decode(res.body).path)
      cn:close()
    end
  end)
end)
