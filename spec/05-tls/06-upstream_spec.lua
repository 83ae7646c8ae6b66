-- https upstreams: verified by default (caFile for the test CA), 502 with a
-- log line that says why when verification fails, `secure: false` with a
-- warning at load, SNI set to the upstream host, client certificates
-- (certFile/keyFile), and TLS connections kept alive in the pool.

local H = require "spec.05-tls.helpers"
local certs = require "spec.support.certs"
local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"
local process = require "spec.support.process"
local cjson = require "cjson"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  accessLog: stdout
apiEndpoints:
  verified: { paths: '/verified/*' }
  byname: { paths: '/byname/*' }
  target: { paths: '/target/*' }
  nocafile: { paths: '/nocafile/*' }
  wrongname: { paths: '/wrongname/*' }
  untrusted: { paths: '/untrusted/*' }
  insecure: { paths: '/insecure/*' }
  keepalive: { paths: '/keepalive/*' }
  mtls: { paths: '/mtls/*' }
  nomtls: { paths: '/nomtls/*' }
serviceEndpoints:
  ok: { url: 'https://127.0.0.1:${OK_PORT}' }
  byname: { url: 'https://localhost:${OK_PORT}' }
  wrong: { url: 'https://127.0.0.1:${WRONG_PORT}' }
  keepalive: { url: 'https://127.0.0.1:${KA_PORT}' }
  mtls: { url: 'https://127.0.0.1:${MTLS_PORT}' }
policies: [proxy]
pipelines:
  verified:
    apiEndpoints: [verified]
    policies:
      - proxy: [ { action: { serviceEndpoint: ok, caFile: tls/ca.pem, stripPath: true } } ]
  byname:
    apiEndpoints: [byname]
    policies:
      - proxy: [ { action: { serviceEndpoint: byname, caFile: tls/ca.pem, stripPath: true } } ]
  target:
    apiEndpoints: [target]
    policies:
      - proxy:
          - action:
              serviceEndpoint: ok
              stripPath: true
              target: { caFile: tls/ca.pem }
  nocafile:
    apiEndpoints: [nocafile]
    policies:
      - proxy: [ { action: { serviceEndpoint: ok, stripPath: true } } ]
  wrongname:
    apiEndpoints: [wrongname]
    policies:
      - proxy: [ { action: { serviceEndpoint: wrong, caFile: tls/ca.pem, stripPath: true } } ]
  untrusted:
    apiEndpoints: [untrusted]
    policies:
      - proxy: [ { action: { serviceEndpoint: ok, caFile: tls/rogue_ca.pem, stripPath: true } } ]
  insecure:
    apiEndpoints: [insecure]
    policies:
      - proxy: [ { action: { serviceEndpoint: wrong, secure: false, stripPath: true } } ]
  keepalive:
    apiEndpoints: [keepalive]
    policies:
      - proxy: [ { action: { serviceEndpoint: keepalive, caFile: tls/ca.pem, stripPath: true } } ]
  mtls:
    apiEndpoints: [mtls]
    policies:
      - proxy:
          - action:
              serviceEndpoint: mtls
              caFile: tls/ca.pem
              certFile: tls/client.pem
              keyFile: tls/client.key
              stripPath: true
  nomtls:
    apiEndpoints: [nomtls]
    policies:
      - proxy: [ { action: { serviceEndpoint: mtls, caFile: tls/ca.pem, stripPath: true } } ]
]]

describe("https upstreams", function()
  local c, g, ok_up, wrong_up, ka_up, mtls_up

  setup(function()
    c = certs.generate()
    local up_tls = { cert = c.upstream.cert, key = c.upstream.key }
    ok_up = mock.start{ name = "ok", tls = up_tls }
    ka_up = mock.start{ name = "keepalive", tls = up_tls }
    wrong_up = mock.start{ name = "wrong", tls = { cert = c.wrong.cert, key = c.wrong.key } }
    mtls_up = mock.start{ name = "mtls", tls = { cert = c.upstream.cert, key = c.upstream.key,
                                                 ca = c.ca.cert } }
    local files = H.tls_files(c, { "client" })
    files["tls/rogue_ca.pem"] = assert(process.read_file(c.rogue_ca.cert))
    g = gateway.start{
      config = CONFIG, files = files,
      vars = { OK_PORT = ok_up.port, WRONG_PORT = wrong_up.port, KA_PORT = ka_up.port,
               MTLS_PORT = mtls_up.port },
    }
  end)

  teardown(function()
    if g then g:cleanup() end
    for _, m in ipairs{ ok_up, wrong_up, ka_up, mtls_up } do m:stop() end
    if c then c:cleanup() end
  end)

  -- Waits for the gateway's log line about request `id` and returns it.
  local function log_for(id)
    return g:wait_log("(request " .. id .. ": .*)$")
  end

  local function access_line(path)
    local line
    process.wait_for(function()
      for _, l in ipairs(H.access_log(g)) do
        if l.path == path then line = l end
      end
      return line
    end, 5, "the access-log line for " .. path)
    return line
  end

  it("verifies the upstream against caFile: 200", function()
    local res = assert(g:get("/verified/hello"))
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal("ok", echo.upstream)
    assert.equal("/hello", echo.path)
    -- an address: no SNI (RFC 6066)
    assert.equal(cjson.null, echo.tls_sni)
    assert.equal(cjson.null, echo.tls_client)
  end)

  it("sends SNI with the upstream's host name and checks the name", function()
    local res = assert(g:get("/byname/hello"))
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal("localhost", echo.tls_sni)
    assert.equal("localhost:" .. ok_up.port, echo.headers.host)
  end)

  it("takes caFile from Express Gateway's target option too", function()
    local res = assert(g:get("/target/hello"))
    assert.equal(200, res.status)
    assert.equal("ok", cjson.decode(res.body).upstream)
  end)

  it("without caFile (the system's CAs do not know the test CA): 502, logged with the reason",
     function()
    local res = assert(g:get("/nocafile/hello"))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
    local line = access_line("/nocafile/hello")
    assert.equal(502, line.status)
    local why = log_for(line.id)
    assert.matches("upstream 127%.0%.0%.1:" .. ok_up.port, why)
    assert.matches("certificate verification failed: unable to get local issuer certificate",
                   why)
  end)

  it("a CA that did not sign the upstream's certificate: 502, logged", function()
    local res = assert(g:get("/untrusted/hello"))
    assert.equal(502, res.status)
    local why = log_for(access_line("/untrusted/hello").id)
    assert.matches("certificate verification failed", why)
  end)

  it("a certificate for another name: 502, logged as a name mismatch", function()
    local res = assert(g:get("/wrongname/hello"))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
    local why = log_for(access_line("/wrongname/hello").id)
    assert.matches("upstream 127%.0%.0%.1:" .. wrong_up.port, why)
    assert.matches("certificate verification failed: IP address mismatch", why)
  end)

  it("secure: false: served without verification, with a warning at load", function()
    local res = assert(g:get("/insecure/hello"))
    assert.equal(200, res.status)
    assert.equal("wrong", cjson.decode(res.body).upstream)
    assert.matches("%[warn%].*serviceEndpoints%.wrong: secure: false: the certificate of " ..
                   "https://127%.0%.0%.1:" .. wrong_up.port .. " is not verified", g:stderr())
  end)

  it("keeps upstream TLS connections alive and reuses them", function()
    for i = 1, 5 do
      local res = assert(g:get("/keepalive/n" .. i))
      assert.equal(200, res.status)
      local echo = cjson.decode(res.body)
      assert.equal(1, echo.connection_id)
      assert.equal(i, echo.connection_request)
    end
    -- the mock's own count, through the same pooled connection
    local res = assert(g:get("/keepalive/count"))
    local count = cjson.decode(res.body)
    assert.equal(1, count.connections)
    assert.equal(6, count.requests)
  end)

  it("presents certFile/keyFile to an upstream that requires a client certificate", function()
    local res = assert(g:get("/mtls/hello"))
    assert.equal(200, res.status)
    assert.equal("client.test", cjson.decode(res.body).tls_client)
  end)

  it("without a client certificate for an upstream that requires one: 502, logged with why",
     function()
    local res = assert(g:get("/nomtls/hello"))
    assert.equal(502, res.status)
    local why = log_for(access_line("/nomtls/hello").id)
    assert.matches("upstream 127%.0%.0%.1:" .. mtls_up.port, why)
    -- TLS 1.3: the upstream's refusal comes as an alert after the client's
    -- side of the handshake; the log must still say what it was
    assert.matches("certificate required", why)
  end)

  it("the failures left the gateway serving", function()
    local res = assert(g:get("/verified/again"))
    assert.equal(200, res.status)
  end)
end)
