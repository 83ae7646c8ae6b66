-- https listener: client certificates (https.options.requestCert /
-- rejectUnauthorized, CAs from https.tls.<pattern>.ca) and the
-- tlsClientAuthenticated condition.

local H = require "spec.05-tls.helpers"
local certs = require "spec.support.certs"
local http = require "spec.support.http"
local process = require "spec.support.process"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
https:
  hostname: 127.0.0.1
  port: 0
  tls:
    two.test:
      key: tls/two.key
      cert: tls/two.pem
      ca: tls/ca.pem
    default:
      key: tls/default.key
      cert: tls/default.pem
      ca: [tls/ca.pem]
  options:
    requestCert: true
    rejectUnauthorized: ${REJECT}
tollgate:
  accessLog: off
apiEndpoints:
  api: { paths: '/*' }
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate:
          - condition: { name: tlsClientAuthenticated }
            action: { statusCode: 200, message: verified }
          - condition: { name: not, condition: { name: tlsClientAuthenticated } }
            action: { statusCode: 200, message: unverified }
]]

local function client(c, name, extra)
  local t = H.tls(c, extra)
  if name then
    t.certificate, t.key = c[name].cert, c[name].key
  end
  return t
end

-- A refused client: with TLS 1.2 the handshake fails with the server's
-- alert; with TLS 1.3 the client finishes its side first and gets the alert
-- instead of a response, or only the close when the alert is lost to the
-- reset (the server closes with the client's request unread).
local function assert_refused(res, err, stage, alert)
  assert.is_nil(res)
  if stage == "handshake" then
    assert.matches(alert, err)
  else
    assert.equal("response", stage)
    if not (err:find(alert, 1, true) or err == "closed" or err:find("reset", 1, true)) then
      error("expected the alert '" .. alert .. "' or a closed connection, got: " .. err, 2)
    end
  end
end

describe("https: client certificates required (requestCert + rejectUnauthorized)", function()
  local c, g

  setup(function()
    c = certs.generate()
    g = H.start{ config = CONFIG, vars = { REJECT = "true" }, files = H.tls_files(c) }
  end)

  teardown(function()
    if g then g:cleanup() end
    if c then c:cleanup() end
  end)

  it("refuses a client without a certificate (TLS 1.3)", function()
    local res, err, stage = H.exchange(g.tls_port, client(c, nil), { path = "/" })
    assert_refused(res, err, stage, "certificate required")
    g:wait_log("TLS handshake: .*peer did not return a certificate")
  end)

  it("refuses a client without a certificate in the handshake (TLS 1.2)", function()
    local res, err, stage = H.exchange(g.tls_port, client(c, nil, { protocol = "tlsv1_2" }),
                                       { path = "/" })
    assert.equal("handshake", stage)
    assert_refused(res, err, stage, "handshake failure")
  end)

  it("refuses a client whose certificate another CA signed", function()
    local res, err, stage = H.exchange(g.tls_port, client(c, "rogue_client"), { path = "/" })
    assert_refused(res, err, stage, "unknown ca")
    g:wait_log("TLS handshake: .*certificate verify failed")
    res, err, stage = H.exchange(g.tls_port, client(c, "rogue_client", { protocol = "tlsv1_2" }),
                                 { path = "/" })
    assert_refused(res, err, stage, "unknown ca")
  end)

  it("serves a client with a certificate the CA signed; tlsClientAuthenticated holds", function()
    local res = assert(H.exchange(g.tls_port, client(c, "client"), { path = "/" }))
    assert.equal(200, res.status)
    assert.equal("verified", res.body)
    res = assert(H.exchange(g.tls_port, client(c, "client", { protocol = "tlsv1_2" }),
                            { path = "/" }))
    assert.equal("verified", res.body)
  end)

  it("asks for a certificate under an SNI-selected certificate too", function()
    -- the verify settings must follow the switch to two.test's context
    local NO_CERT = "TLS handshake: .*peer did not return a certificate"
    local before = H.count_log(g, NO_CERT)
    local res, err, stage = H.exchange(g.tls_port, client(c, nil, { servername = "two.test" }),
                                       { path = "/" })
    assert_refused(res, err, stage, "certificate required")
    process.wait_for(function() return H.count_log(g, NO_CERT) > before end, 5,
                     "the refusal in the log")
    res, err, stage = H.exchange(g.tls_port, client(c, nil, { servername = "two.test",
                                                              protocol = "tlsv1_2" }))
    assert.equal("handshake", stage)
    assert_refused(res, err, stage, "handshake failure")
    res = assert(H.exchange(g.tls_port, client(c, "client", { servername = "two.test" }),
                            { path = "/" }))
    assert.equal("two.test", res.cn)
    assert.equal("verified", res.body)
  end)

  it("the plain http listener serves without a certificate; the condition does not hold there",
     function()
    local res = assert(g:get("/"))
    assert.equal(200, res.status)
    assert.equal("unverified", res.body)
  end)
end)

describe("https: client certificates requested, not required (rejectUnauthorized: false)",
         function()
  local c, g

  setup(function()
    c = certs.generate()
    g = H.start{ config = CONFIG, vars = { REJECT = "false" }, files = H.tls_files(c) }
  end)

  teardown(function()
    if g then g:cleanup() end
    if c then c:cleanup() end
  end)

  it("serves a client without a certificate; tlsClientAuthenticated does not hold", function()
    for _, proto in ipairs{ "tlsv1_3", "tlsv1_2" } do
      local res = assert(H.exchange(g.tls_port, client(c, nil, { protocol = proto }),
                                    { path = "/" }))
      assert.equal(200, res.status)
      assert.equal("unverified", res.body)
    end
  end)

  it("serves a client whose certificate another CA signed; the condition does not hold",
     function()
    for _, proto in ipairs{ "tlsv1_3", "tlsv1_2" } do
      local res = assert(H.exchange(g.tls_port, client(c, "rogue_client", { protocol = proto }),
                                    { path = "/" }))
      assert.equal(200, res.status)
      assert.equal("unverified", res.body)
    end
  end)

  it("serves a client with a certificate the CA signed; the condition holds", function()
    for _, proto in ipairs{ "tlsv1_3", "tlsv1_2" } do
      local res = assert(H.exchange(g.tls_port, client(c, "client", { protocol = proto }),
                                    { path = "/" }))
      assert.equal(200, res.status)
      assert.equal("verified", res.body)
    end
  end)

  it("tells them apart on one keep-alive connection each, request after request", function()
    local verified = assert(http.connect(g.tls_port, "127.0.0.1", { tls = client(c, "client") }))
    local anonymous = assert(http.connect(g.tls_port, "127.0.0.1", { tls = client(c, nil) }))
    for _ = 1, 3 do
      for conn, want in pairs{ [verified] = "verified", [anonymous] = "unverified" } do
        assert(conn:request{ path = "/" })
        local res = assert(conn:read_response())
        assert.equal(want, res.body)
      end
    end
    verified:close()
    anonymous:close()
  end)
end)
