-- https listener: certificates are reloaded with the config. Replacing a
-- certificate file (by rename, as renewal tools do) reloads the workers,
-- new connections get the new certificate, open ones go on; a broken
-- certificate is refused and the previous one stays in use.

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
    default:
      key: tls/default.key
      cert: tls/default.pem
tollgate:
  accessLog: off
  logLevel: info
apiEndpoints:
  api: { paths: '/*' }
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate: [ { action: { statusCode: 200, message: hello } } ]
]]

describe("https: certificate reload", function()
  local c, g

  setup(function()
    c = certs.generate()
    -- renewals of the default certificate, for the same key
    c:issue("renewed", { cn = "renewed.test", key = c.default.key })
    c:issue("renewed2", { cn = "renewed2.test", key = c.default.key })
  end)

  before_each(function()
    g = H.start{ config = CONFIG, files = H.tls_files(c, { "two", "default" }), workers = 2 }
  end)

  after_each(function()
    if g then g:cleanup() end
  end)

  teardown(function()
    if c then c:cleanup() end
  end)

  -- Replaces <gateway dir>/<name> by rename, with `content`.
  local function replace(name, content)
    local path = g.dir .. "/" .. name
    assert(process.write_file(path .. ".new", content))
    assert(os.rename(path .. ".new", path))
  end

  local function pem(name)
    return assert(process.read_file(c[name].cert))
  end

  local function cn(servername)
    local res, err = H.exchange(g.tls_port, H.tls(c, { servername = servername }),
                                { path = "/" })
    assert(res, err)
    assert.equal(200, res.status)
    return res.cn
  end

  -- Waits until both workers logged "configuration reloaded (generation N)".
  local function wait_generation(n)
    local pattern = "configuration reloaded %(generation " .. n .. "%)"
    process.wait_for(function() return H.count_log(g, pattern) >= 2 end, 10,
                     "both workers to log generation " .. n)
  end

  it("a renewed certificate renamed over the old one is served to new connections", function()
    assert.equal("default.test", cn(nil))
    -- a keep-alive connection opened before the renewal
    local old = assert(http.connect(g.tls_port, "127.0.0.1", { tls = H.tls(c) }))
    assert(old:request{ path = "/" })
    assert.equal(200, assert(old:read_response()).status)

    replace("tls/default.pem", pem("renewed"))
    wait_generation(2)

    for _ = 1, 4 do -- whichever worker accepts
      assert.equal("renewed.test", cn(nil))
      assert.equal("renewed.test", cn("other.test"))
    end
    -- the SNI certificates are untouched
    assert.equal("two.test", cn("two.test"))
    -- the old connection still works, with the certificate it got
    assert(old:request{ path = "/" })
    assert.equal(200, assert(old:read_response()).status)
    assert.equal("default.test", certs.subject_cn(old:peer_certificate()))
    old:close()
  end)

  it("a broken certificate is refused and the previous one stays; a good one is then taken",
     function()
    replace("tls/default.pem", pem("renewed"))
    wait_generation(2)
    assert.equal("renewed.test", cn(nil))

    replace("tls/default.pem", "-----BEGIN CERTIFICATE-----\nnot a certificate\n" ..
                               "-----END CERTIFICATE-----\n")
    g:wait_log("reload refused.*https%.tls%.default%.cert")
    for _ = 1, 4 do
      assert.equal("renewed.test", cn(nil))
    end

    -- a certificate that does not match the key is refused too
    replace("tls/default.pem", pem("two"))
    process.wait_for(function() return H.count_log(g, "reload refused") >= 2 end, 10,
                     "the second refusal")
    assert.matches("https%.tls%.default%.key", g:stderr())
    assert.equal("renewed.test", cn(nil))

    replace("tls/default.pem", pem("renewed2"))
    wait_generation(3)
    for _ = 1, 4 do
      assert.equal("renewed2.test", cn(nil))
    end
    assert.truthy(g:alive())
  end)

  it("a renewed certificate and key (both renamed) are served once both are in place", function()
    c:issue("rekeyed", { cn = "rekeyed.test" })
    -- key first: until the certificate follows, the pair does not match and
    -- the reload (if one happens in between) is refused
    replace("tls/default.key", assert(process.read_file(c.rekeyed.key)))
    replace("tls/default.pem", pem("rekeyed"))
    wait_generation(2)
    for _ = 1, 4 do
      assert.equal("rekeyed.test", cn(nil))
    end
  end)
end)
