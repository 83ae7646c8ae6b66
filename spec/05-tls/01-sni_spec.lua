-- https listener: the certificate is chosen by SNI (first matching pattern
-- in config order, then `default`); without a match and without a default
-- the handshake fails, is logged, and costs the next client nothing.

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
    "*.one.test":
      key: tls/one.key
      cert: tls/one.pem
    two.test:
      key: tls/two.key
      cert: tls/two.pem
    api.one.test:            # shadowed by *.one.test, which comes first
      key: tls/two.key
      cert: tls/two.pem
${DEFAULT}
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

local DEFAULT = [[
    default:
      key: tls/default.key
      cert: tls/default.pem]]

describe("https: SNI", function()
  local c, g

  setup(function()
    c = certs.generate()
    g = H.start{ config = CONFIG, vars = { DEFAULT = DEFAULT }, files = H.tls_files(c) }
  end)

  teardown(function()
    if g then g:cleanup() end
    if c then c:cleanup() end
  end)

  -- The CN of the certificate the gateway presented for `name` (nil: no
  -- SNI), after checking the connection serves a request.
  local function cn_for(name)
    local res, err = H.exchange(g.tls_port, H.tls(c, { servername = name }),
                                { path = "/", host = name })
    assert(res, err)
    assert.equal(200, res.status)
    assert.equal("hello", res.body)
    return res.cn
  end

  it("a name matching a wildcard pattern gets that pattern's certificate", function()
    assert.equal("one.test", cn_for("api.one.test"))
    assert.equal("one.test", cn_for("www.one.test"))
  end)

  it("an exact name gets its certificate, case-insensitively", function()
    assert.equal("two.test", cn_for("two.test"))
    assert.equal("two.test", cn_for("TWO.Test"))
  end)

  it("the first matching pattern in config order wins", function()
    -- api.one.test is listed with two.test's certificate, after *.one.test
    assert.equal("one.test", cn_for("api.one.test"))
  end)

  it("a name no pattern matches gets the default certificate", function()
    assert.equal("default.test", cn_for("other.test"))
    -- *.one.test needs a label before .one.test
    assert.equal("default.test", cn_for("one.test"))
    assert.equal("default.test", cn_for("x.two.test"))
  end)

  it("a client without SNI gets the default certificate", function()
    assert.equal("default.test", cn_for(nil))
  end)

  it("the certificates verify against the test CA (the client checks the chain)", function()
    local res, err = H.exchange(g.tls_port, H.tls(c, { servername = "two.test", verify = "peer" }))
    assert(res, err)
    assert.equal(200, res.status)
    -- and a client trusting another CA refuses the gateway
    local _, herr, stage = H.exchange(g.tls_port, { cafile = c.rogue_ca.cert, verify = "peer",
                                                    servername = "two.test" })
    assert.equal("handshake", stage)
    assert.matches("certificate verify failed", herr)
  end)
end)

describe("https: no matching pattern and no default", function()
  local c, g

  setup(function()
    c = certs.generate()
    g = H.start{ config = CONFIG, vars = { DEFAULT = "" }, files = H.tls_files(c) }
  end)

  teardown(function()
    if g then g:cleanup() end
    if c then c:cleanup() end
  end)

  it("fails the handshake with unrecognized_name and logs it; the next client is served",
     function()
    local res, err, stage = H.exchange(g.tls_port, H.tls(c, { servername = "other.test" }))
    assert.is_nil(res)
    assert.equal("handshake", stage)
    assert.matches("unrecognized name", err)
    g:wait_log('no certificate for "other.test" and no default: handshake refused')

    -- the same worker goes on serving names it knows
    res, err = H.exchange(g.tls_port, H.tls(c, { servername = "two.test" }), { path = "/" })
    assert(res, err)
    assert.equal(200, res.status)
    assert.equal("two.test", res.cn)
    assert.truthy(g:alive())
  end)

  it("fails the handshake of a client without SNI", function()
    local res, err, stage = H.exchange(g.tls_port, H.tls(c))
    assert.is_nil(res)
    assert.equal("handshake", stage)
    assert.matches("unrecognized name", err)
    g:wait_log("no certificate for a client without SNI and no default")

    res, err = H.exchange(g.tls_port, H.tls(c, { servername = "www.one.test" }), { path = "/" })
    assert(res, err)
    assert.equal(200, res.status)
  end)

  it("the plain http listener is unaffected", function()
    local res = assert(g:get("/"))
    assert.equal(200, res.status)
  end)
end)
