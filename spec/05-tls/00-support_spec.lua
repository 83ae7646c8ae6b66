-- The TLS spec kit itself: certificates (spec.support.certs), TLS in
-- spec.support.http, the mock upstream's HTTPS mode and /ws endpoint, and the
-- WebSocket client (spec.support.ws).

local certs = require "spec.support.certs"
local http = require "spec.support.http"
local mock = require "spec.support.mock"
local process = require "spec.support.process"
local ws = require "spec.support.ws"
local cjson = require "cjson"

describe("TLS spec kit", function()
  local c, plain_up, tls_up, mtls_up

  setup(function()
    c = certs.generate()
    plain_up = mock.start{ name = "plain" }
    tls_up = mock.start{ name = "tls", tls = { cert = c.upstream.cert, key = c.upstream.key } }
    mtls_up = mock.start{ name = "mtls", tls = { cert = c.upstream.cert, key = c.upstream.key,
                                                 ca = c.ca.cert } }
  end)

  teardown(function()
    for _, m in ipairs{ plain_up, tls_up, mtls_up } do m:stop() end
    if c then c:cleanup() end
  end)

  local function verify(cert, ca)
    local code, out = process.run{ cmd = { "openssl", "verify", "-CAfile", ca.cert, cert.cert } }
    return code == 0, out
  end

  it("certs: leaves verify against their CA, not against the other one", function()
    for _, name in ipairs{ "one", "two", "default", "client", "upstream", "wrong" } do
      assert(verify(c[name], c.ca))
      assert.is_false((verify(c[name], c.rogue_ca)))
    end
    assert(verify(c.rogue_client, c.rogue_ca))
    assert.is_false((verify(c.rogue_client, c.ca)))
  end)

  it("certs: issue() reuses a key when asked", function()
    local renewed = c:issue("renewed-key-test", { cn = "renewed.test", key = c.default.key })
    assert.equal(c.default.key, renewed.key)
    assert(verify(renewed, c.ca))
    local code, out = process.run{ cmd = { "openssl", "x509", "-noout", "-subject", "-in",
                                           renewed.cert } }
    assert.equal(0, code)
    assert.matches("CN ?= ?renewed%.test", out)
  end)

  it("http: TLS connections verify the server and expose what the handshake gave", function()
    local conn = assert(http.connect(tls_up.port, "127.0.0.1", {
      tls = { cafile = c.ca.cert, servername = "localhost", alpn = "http/1.1" } }))
    assert.equal("127.0.0.1", certs.subject_cn(conn:peer_certificate()))
    assert.matches("^TLSv1%.[23]$", conn:tls_info().protocol)
    assert(conn:request{ path = "/x" })
    local res = assert(conn:read_response())
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal("localhost", echo.tls_sni)
    assert.equal(cjson.null, echo.tls_client)
    conn:close()
  end)

  it("http: a failed handshake returns its error", function()
    local conn, err = http.connect(tls_up.port, "127.0.0.1",
                                   { tls = { cafile = c.rogue_ca.cert } })
    assert.is_nil(conn)
    assert.matches("^tls handshake: .*certificate verify failed", err)
    -- plain HTTP to a TLS server: no valid response
    local res = http.get(tls_up.port, "/x", nil, { timeout = 2 })
    assert.is_nil(res)
  end)

  it("mock: --tls-ca requires a client certificate signed by that CA", function()
    local res = http.get(mtls_up.port, "/x", nil, { tls = { verify = "none" } })
    assert.is_nil(res)
    res = assert(http.get(mtls_up.port, "/x", nil, {
      tls = { verify = "none", certificate = c.client.cert, key = c.client.key } }))
    assert.equal("client.test", cjson.decode(res.body).tls_client)
    assert.is_nil(http.get(mtls_up.port, "/x", nil, {
      tls = { verify = "none", certificate = c.rogue_client.cert, key = c.rogue_client.key } }))
    -- the /x above and the /count itself
    assert.equal(2, assert(mtls_up:count{ verify = "none", certificate = c.client.cert,
                                          key = c.client.key }).requests)
  end)

  it("ws: the accept key of RFC 6455's example", function()
    assert.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ws.accept_key("dGhlIHNhbXBsZSBub25jZQ=="))
  end)

  it("ws: frames round-trip through encode and the client's reader sizes", function()
    for _, n in ipairs{ 0, 125, 126, 65535, 65536, 100000 } do
      local f = ws.encode_frame(2, ("z"):rep(n), { mask = true })
      local fin, op, masked, len = ws.decode_head(f:byte(1), f:byte(2))
      assert.is_true(fin)
      assert.equal(2, op)
      assert.is_true(masked)
      if n < 126 then assert.equal(n, len)
      elseif n < 65536 then assert.equal(126, len); assert.equal(n, ws.be_number(f:sub(3, 4)))
      else assert.equal(127, len); assert.equal(n, ws.be_number(f:sub(3, 10))) end
    end
  end)

  for _, kind in ipairs{ "plain", "tls" } do
    it("mock /ws (" .. kind .. "): echo, ping, upstream close, count", function()
      local up = kind == "tls" and tls_up or plain_up
      local tls = kind == "tls" and { cafile = c.ca.cert } or nil
      local before = assert(up:count()).websockets
      local sock = assert(ws.connect(up.port, "/ws?hello=1", { tls = tls }))
      local hello = cjson.decode(assert(sock:receive()).payload)
      assert.equal("websocket", hello.headers.upgrade)
      assert(sock:send_text("a"))
      assert.equal("a", assert(sock:receive()).payload)
      assert(sock:ping("p"))
      assert.equal("pong", assert(sock:receive()).type)
      assert(sock:send_text("__close__"))
      local f = assert(sock:receive())
      assert.equal(1000, f.code)
      assert(sock:wait_closed(5))
      sock:drop()
      assert.equal(before + 1, assert(up:count()).websockets)
    end)
  end

  it("mock /ws: an unmasked client frame gets close 1002; a plain GET gets the echo", function()
    local sock = assert(ws.connect(plain_up.port, "/ws"))
    assert(sock:send_text("unmasked", { mask = false }))
    local f = assert(sock:receive())
    assert.equal("close", f.type)
    assert.equal(1002, f.code)
    sock:drop()
    local res = assert(http.get(plain_up.port, "/ws"))
    assert.equal(200, res.status)
    assert.equal("/ws", cjson.decode(res.body).path)
  end)
end)
