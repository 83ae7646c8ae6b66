-- https listener: TLS 1.2 and 1.3 only, forward-secret AEAD suites for
-- TLS 1.2, ALPN http/1.1 when the client offers it.

local H = require "spec.05-tls.helpers"
local certs = require "spec.support.certs"

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
  api: { paths: '/*' }
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate: [ { action: { statusCode: 200, message: hello } } ]
]]

-- OpenSSL 3 only offers TLS < 1.2 at security level 0
local OLD_CIPHERS = "DEFAULT:@SECLEVEL=0"

describe("https: protocol versions and ALPN", function()
  local c, g

  setup(function()
    c = certs.generate()
    g = H.start{ config = CONFIG, files = H.tls_files(c, { "default" }) }
  end)

  teardown(function()
    if g then g:cleanup() end
    if c then c:cleanup() end
  end)

  local function get(tls)
    local res, err, stage = H.exchange(g.tls_port, H.tls(c, tls), { path = "/" })
    if res then
      assert.equal(200, res.status)
      assert.equal("hello", res.body)
    end
    return res, err, stage
  end

  it("TLS 1.3 is accepted (and preferred)", function()
    local res = assert(get{ protocol = "tlsv1_3" })
    assert.equal("TLSv1.3", res.tls_info.protocol)
    res = assert(get{})
    assert.equal("TLSv1.3", res.tls_info.protocol)
  end)

  it("TLS 1.2 is accepted, with an ECDHE AEAD suite", function()
    local res = assert(get{ protocol = "tlsv1_2" })
    assert.equal("TLSv1.2", res.tls_info.protocol)
    assert.matches("^ECDHE%-", res.tls_info.cipher)
    assert.truthy(res.tls_info.cipher:find("GCM", 1, true) or
                  res.tls_info.cipher:find("CHACHA20", 1, true))
  end)

  it("TLS 1.2 without a forward-secret AEAD suite is refused", function()
    local res, err, stage = get{ protocol = "tlsv1_2", ciphers = "AES128-SHA:AES256-SHA256" }
    assert.is_nil(res)
    assert.equal("handshake", stage)
    assert.matches("handshake failure", err)
  end)

  it("TLS 1.1 is refused with protocol_version, logged; the next client is served", function()
    local res, err, stage = get{ protocol = "tlsv1_1", ciphers = OLD_CIPHERS }
    assert.is_nil(res)
    assert.equal("handshake", stage)
    assert.matches("protocol version", err)
    g:wait_log("TLS handshake: .*unsupported protocol")
    assert(get{})
  end)

  it("TLS 1.0 is refused", function()
    local res, err, stage = get{ protocol = "tlsv1", ciphers = OLD_CIPHERS }
    assert.is_nil(res)
    assert.equal("handshake", stage)
    assert.matches("protocol version", err)
  end)

  it("ALPN: http/1.1 is selected when offered, also next to h2", function()
    local res = assert(get{ alpn = "http/1.1" })
    assert.equal("http/1.1", res.alpn)
    res = assert(get{ alpn = { "h2", "http/1.1" } })
    assert.equal("http/1.1", res.alpn)
    res = assert(get{ protocol = "tlsv1_2", alpn = { "h2", "http/1.1" } })
    assert.equal("http/1.1", res.alpn)
  end)

  it("ALPN: no protocol is selected for a client offering only h2, which still gets HTTP/1.1",
     function()
    local res = assert(get{ alpn = "h2" })
    assert.is_nil(res.alpn)
    assert.equal("1.1", res.version)
  end)

  it("ALPN: a client offering nothing gets nothing", function()
    local res = assert(get{})
    assert.is_nil(res.alpn)
  end)
end)
