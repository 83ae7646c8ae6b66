-- luacheck: max line length 140
-- jwt: the options, as the schema and the constructor take them (Express
-- Gateway's names and defaults; what tollgate cannot do yet is refused at
-- load with a message saying so).

local testing = require "tollgate.testing"
local jwt = require "spec.support.jwt"
local process = require "spec.support.process"
local certs = require "spec.support.certs"

-- The error testing.policy raises when loading fails (schema or new()).
local function load_error(action, opts)
  local ok, err = pcall(testing.policy, "jwt", action, opts)
  assert.is_false(ok, "expected the policy to be refused")
  return tostring(err)
end

local function loads(action, opts)
  local ok, p = pcall(testing.policy, "jwt", action, opts)
  assert(ok, p)
  return p
end

-- The action with checkCredentialExistence: false (what every working
-- config must say today) unless the test sets it.
local function action(t)
  if t.checkCredentialExistence == nil then t.checkCredentialExistence = false end
  return t
end

local function contains(needle, haystack)
  assert.is_string(haystack)
  assert(haystack:find(needle, 1, true), ("expected %q in %q"):format(needle, haystack))
end

describe("jwt schema", function()
  local keys

  setup(function() keys = jwt.keys() end)
  teardown(function() jwt.cleanup() end)

  describe("defaults", function()
    it("are Express Gateway's: authBearer, passThrough false, checkCredentialExistence true", function()
      local conf = assert(testing.validate("jwt", { secretOrPublicKey = "s" }))
      assert.equal("authBearer", conf.jwtExtractor)
      assert.is_false(conf.passThrough)
      assert.is_true(conf.checkCredentialExistence)
      assert.equal(0, conf.leeway)
      assert.equal(10000, conf.cacheSize)
      assert.is_nil(conf.algorithms)
      assert.is_nil(conf.audience)
      assert.is_nil(conf.issuer)
    end)
  end)

  describe("accepts", function()
    it("a secret, a public key, a certificate, a private key (its public half)", function()
      loads(action{ secretOrPublicKey = "s3cret" })
      loads(action{ secretOrPublicKey = keys.rsa.public_pem })
      loads(action{ secretOrPublicKey = keys.rsa.cert_pem })
      loads(action{ secretOrPublicKey = keys.ec384.private_pem })
      loads(action{ secretOrPublicKey = keys.rsa.pkcs1_pem })
    end)

    it("jwksUri (https), with its defaults: refresh every 5 min, 5 s timeout", function()
      local conf = assert(testing.validate("jwt", action{ jwksUri = "https://idp.example/jwks.json" }))
      assert.equal(300000, conf.jwksRefreshInterval)
      assert.equal(5000, conf.jwksTimeout)
      assert.is_nil(conf.jwksCaFile)
      local p = loads(action{ jwksUri = "https://idp.example/jwks.json", jwksRefreshInterval = 60000,
                              jwksTimeout = 2000, algorithms = { "RS256", "ES256" } })
      assert.equal(60, p.instance.jwks.interval)
      assert.equal(2, p.instance.jwks.timeout)
      assert.is_nil(p.instance.jwks.set) -- nothing fetched at load
    end)

    it("jwksCaFile: absolute, or relative to the config directory", function()
      local c = certs.generate()
      finally(function() c:cleanup() end)
      local p = loads(action{ jwksUri = "https://idp.example/jwks", jwksCaFile = c.ca.cert })
      assert.equal(c.ca.cert, p.instance.jwks.ca_file)
      p = loads(action{ jwksUri = "https://idp.example/jwks", jwksCaFile = "ca.pem" }, { dir = c.dir })
      assert.equal(c.dir .. "/ca.pem", p.instance.jwks.ca_file)
    end)

    it("an http:// jwksUri on 127.0.0.1 or localhost, with a warning", function()
      for _, url in ipairs{ "http://127.0.0.1:8080/jwks.json", "http://localhost/jwks", "http://[::1]:1/k" } do
        local warnings = {}
        local mod = dofile("policies/jwt.lua")
        local conf = assert(testing.validate("jwt", action{ jwksUri = url }))
        local inst = assert(mod.new(conf, { dir = ".", id = "step", warn = function(m) warnings[#warnings + 1] = m end }))
        assert.equal(url, inst.jwks.url)
        assert.equal(1, #warnings, url)
        contains("is plain http", warnings[1])
        contains(url, warnings[1])
      end
    end)

    it("secretOrPublicKeyFile: absolute, or relative to the config directory", function()
      loads(action{ secretOrPublicKeyFile = keys.ec256.public })
      loads(action{ secretOrPublicKeyFile = "ec256.pub" }, { dir = keys.dir })
      loads(action{ secretOrPublicKeyFile = "rsa.crt" }, { dir = keys.dir })
    end)

    it("every extractor with its field", function()
      loads(action{ secretOrPublicKey = "s", jwtExtractor = "authBearer" })
      loads(action{ secretOrPublicKey = "s", jwtExtractor = "header", jwtExtractorField = "x-token" })
      loads(action{ secretOrPublicKey = "s", jwtExtractor = "query", jwtExtractorField = "token" })
      loads(action{ secretOrPublicKey = "s", jwtExtractor = "authScheme", jwtExtractorField = "JWT" })
    end)

    it("audience and issuer as a string or a list; algorithms; leeway; cacheSize 0", function()
      loads(action{ secretOrPublicKey = "s", audience = "api", issuer = "https://issuer.example" })
      loads(action{ secretOrPublicKey = "s", audience = { "api", "web" }, issuer = { "a", "b" } })
      loads(action{ secretOrPublicKey = "s", algorithms = { "HS256", "HS512" } })
      loads(action{ secretOrPublicKey = keys.rsa.public_pem, algorithms = { "RS256", "HS256" } })
      loads(action{ secretOrPublicKey = "s", leeway = 30, cacheSize = 0, passThrough = true })
    end)
  end)

  describe("refuses (schema)", function()
    local function schema_error(a)
      local conf, err = testing.validate("jwt", a)
      assert.is_nil(conf)
      return err
    end

    it("an unknown option, naming it", function()
      contains("action.secret: unknown option", schema_error{ secret = "s" })
      contains("action.jwtExtractorFeild: unknown option",
        schema_error{ secretOrPublicKey = "s", jwtExtractorFeild = "x" })
    end)

    it("two of secretOrPublicKey, secretOrPublicKeyFile and jwksUri, or none", function()
      local one = "exactly one of secretOrPublicKey, secretOrPublicKeyFile and jwksUri"
      contains(one, schema_error{ secretOrPublicKey = "s", secretOrPublicKeyFile = "f" })
      contains(one, schema_error{ secretOrPublicKey = "s", jwksUri = "https://idp.example/jwks" })
      contains(one, schema_error{ secretOrPublicKeyFile = "f", jwksUri = "https://idp.example/jwks" })
      contains(one, schema_error{})
      contains(one, schema_error{ checkCredentialExistence = false })
    end)

    it("jwks options of the wrong type or range", function()
      local base = "https://idp.example/jwks"
      contains("action.jwksUri", schema_error{ jwksUri = { "https://idp.example/jwks" } })
      contains("action.jwksRefreshInterval", schema_error{ jwksUri = base, jwksRefreshInterval = 0 })
      contains("action.jwksRefreshInterval", schema_error{ jwksUri = base, jwksRefreshInterval = "5m" })
      contains("action.jwksTimeout", schema_error{ jwksUri = base, jwksTimeout = -1 })
      contains("action.jwksTimeout", schema_error{ jwksUri = base, jwksTimeout = 1.5 })
      contains("action.jwksCaFile", schema_error{ jwksUri = base, jwksCaFile = { "ca.pem" } })
    end)

    it("an algorithm name that does not exist", function()
      local err = schema_error{ secretOrPublicKey = "s", algorithms = { "HS256", "XS256" } }
      contains("action.algorithms[2]", err)
      contains("XS256", err)
      contains("must be one of", schema_error{ secretOrPublicKey = "s", algorithms = { "none" } })
      contains("must be one of", schema_error{ secretOrPublicKey = "s", algorithms = { "hs256" } })
    end)

    it("wrong types and ranges", function()
      contains("action.algorithms", schema_error{ secretOrPublicKey = "s", algorithms = "HS256" })
      contains("action.leeway", schema_error{ secretOrPublicKey = "s", leeway = -1 })
      contains("action.cacheSize", schema_error{ secretOrPublicKey = "s", cacheSize = -1 })
      contains("action.cacheSize", schema_error{ secretOrPublicKey = "s", cacheSize = 1.5 })
      contains("action.jwtExtractor", schema_error{ secretOrPublicKey = "s", jwtExtractor = "cookie" })
      contains("action.passThrough", schema_error{ secretOrPublicKey = "s", passThrough = "yes" })
      contains("action.checkCredentialExistence",
        schema_error{ secretOrPublicKey = "s", checkCredentialExistence = "no" })
    end)
  end)

  describe("refuses at load", function()
    it("checkCredentialExistence by default (true), saying there is no consumer store", function()
      local err = load_error{ secretOrPublicKey = "s" }
      contains("checkCredentialExistence", err)
      contains("consumer store", err)
      contains("checkCredentialExistence: false", err)
      contains("consumer store", load_error{ secretOrPublicKey = "s", checkCredentialExistence = true })
    end)

    it("checkCredentialExistence in a gateway config, naming the file, line and step", function()
      local ok, err = pcall(testing.gateway, [[
http: { port: 0 }
apiEndpoints:
  api: { paths: '/*' }
policies: [jwt]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - jwt:
          - action:
              secretOrPublicKey: s3cret
]])
      assert.is_false(ok)
      contains("gateway.config.yml:10: pipelines.p.policies[1].jwt[1].action: checkCredentialExistence", err)
      contains("consumer store", err)
    end)

    it("a jwksUri that is not an https:// URL (http:// only on this machine)", function()
      contains("jwksUri: the key set must come over https://",
        load_error(action{ jwksUri = "http://idp.example/jwks.json" }))
      contains("jwksUri: the key set must come over https://",
        load_error(action{ jwksUri = "http://10.0.0.1:8080/jwks.json" }))
      contains("jwksUri: unsupported scheme ftp://", load_error(action{ jwksUri = "ftp://idp.example/jwks" }))
      contains("jwksUri: \"/jwks.json\" is not an absolute URL", load_error(action{ jwksUri = "/jwks.json" }))
      contains("jwksUri: no host", load_error(action{ jwksUri = "https:///jwks.json" }))
    end)

    it("a jwksCaFile that does not exist or is not PEM, or with an http:// jwksUri", function()
      local err = load_error(action{ jwksUri = "https://idp.example/jwks", jwksCaFile = "nope.pem" },
        { dir = keys.dir })
      contains("jwksCaFile: " .. keys.dir .. "/nope.pem", err)
      contains("No such file", err)
      local junk = keys.dir .. "/junk-ca.pem"
      assert(process.write_file(junk, "not a certificate\n"))
      contains("jwksCaFile: " .. junk, load_error(action{ jwksUri = "https://idp.example/jwks", jwksCaFile = junk }))
      contains("jwksCaFile: only used with an https:// jwksUri",
        load_error(action{ jwksUri = "http://127.0.0.1:1/jwks", jwksCaFile = keys.rsa.cert }))
    end)

    it("a jwksUri step in a gateway config, naming the file, line and option", function()
      local ok, err = pcall(testing.gateway, [[
http: { port: 0 }
apiEndpoints:
  api: { paths: '/*' }
policies: [jwt]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - jwt:
          - action:
              checkCredentialExistence: false
              jwksUri: http://idp.example/jwks.json
]])
      assert.is_false(ok)
      contains("gateway.config.yml:12: pipelines.p.policies[1].jwt[1].action: jwksUri: the key set must come over https://", err)
    end)

    it("algorithms the key cannot verify", function()
      contains("algorithms: none of them can be verified with this key",
        load_error(action{ secretOrPublicKey = "s", algorithms = { "RS256" } }))
      contains("a secret verifies HS256/384/512",
        load_error(action{ secretOrPublicKey = "s", algorithms = { "ES256", "RS512" } }))
      contains("an RSA key verifies RS256/384/512",
        load_error(action{ secretOrPublicKey = keys.rsa.public_pem, algorithms = { "HS256" } }))
      contains("this EC key verifies one ES algorithm",
        load_error(action{ secretOrPublicKey = keys.ec256.public_pem, algorithms = { "ES384" } }))
      contains("algorithms:",
        load_error(action{ secretOrPublicKey = keys.ec521.cert_pem, algorithms = { "ES256", "RS256" } }))
    end)

    it("a key file that does not exist, naming the file", function()
      local err = load_error(action{ secretOrPublicKeyFile = keys.dir .. "/nope.pem" })
      contains("secretOrPublicKeyFile: " .. keys.dir .. "/nope.pem", err)
      contains("No such file", err)
      err = load_error(action{ secretOrPublicKeyFile = "missing.pem" }, { dir = keys.dir })
      contains(keys.dir .. "/missing.pem", err)
    end)

    it("a key file that is a directory, saying why", function()
      local dir = keys.dir .. "/a-directory"
      assert(process.mkdir_p(dir))
      local err = load_error(action{ secretOrPublicKeyFile = dir })
      contains("secretOrPublicKeyFile", err)
      -- the reason, not a bare "nil"
      assert.is_nil(err:find("secretOrPublicKeyFile: nil", 1, true), err)
      assert(err:find("directory", 1, true) or err:find(dir, 1, true), err)
    end)

    it("an empty key file or an empty secret", function()
      local path = keys.dir .. "/empty.pem"
      assert(process.write_file(path, ""))
      contains("empty secret", load_error(action{ secretOrPublicKeyFile = path }))
      contains("empty secret", load_error(action{ secretOrPublicKey = "" }))
    end)

    it("PEM garbage, saying it is not a key", function()
      local garbage = "-----BEGIN PUBLIC KEY-----\nthis is not a key\n-----END PUBLIC KEY-----\n"
      local err = load_error(action{ secretOrPublicKey = garbage })
      contains("secretOrPublicKey: not a PEM public key, certificate or private key", err)
      local path = keys.dir .. "/garbage.pem"
      assert(process.write_file(path, garbage))
      contains("secretOrPublicKeyFile: not a PEM", load_error(action{ secretOrPublicKeyFile = path }))
      -- a real PEM cut in half
      contains("not a PEM", load_error(action{ secretOrPublicKey = keys.rsa.public_pem:sub(1, 200) }))
    end)

    it("header, query and authScheme extractors without jwtExtractorField", function()
      for _, ex in ipairs{ "header", "query", "authScheme" } do
        contains("jwtExtractorField: required with jwtExtractor " .. ex,
          load_error(action{ secretOrPublicKey = "s", jwtExtractor = ex }))
      end
    end)
  end)
end)
