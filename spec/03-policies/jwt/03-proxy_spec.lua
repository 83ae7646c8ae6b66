-- luacheck: max line length 140
-- jwt: the real binary on real sockets, a mock upstream, tokens minted by
-- spec.support.jwt (keys written next to the config).

local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"
local process = require "spec.support.process"
local jwt = require "spec.support.jwt"
local cjson = require "cjson"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  accessLog: stdout
apiEndpoints:
  api: { paths: '/api/*' }
  es: { paths: '/es/*' }
  open: { paths: '/open/*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${UPSTREAM_PORT}' }
policies: [jwt, proxy]
pipelines:
  rs:
    apiEndpoints: [api]
    policies:
      - jwt:
          - action:
              secretOrPublicKeyFile: keys/rsa.pub
              checkCredentialExistence: false
              audience: coffee-api
              issuer: https://issuer.example
      - proxy: [ { action: { serviceEndpoint: backend } } ]
  es:
    apiEndpoints: [es]
    policies:
      - jwt:
          - action:
              secretOrPublicKeyFile: keys/ec256.crt
              checkCredentialExistence: false
              algorithms: [ES256]
              jwtExtractor: header
              jwtExtractorField: x-token
      - proxy: [ { action: { serviceEndpoint: backend } } ]
  open:
    apiEndpoints: [open]
    policies:
      - jwt:
          - action: { secretOrPublicKey: s3cret, checkCredentialExistence: false, passThrough: true }
      - proxy: [ { action: { serviceEndpoint: backend } } ]
]]

-- Access-log lines (decoded), waiting until there are at least n.
local function log_lines(g, n)
  local out
  process.wait_for(function()
    out = {}
    for line in g:stdout():gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
    return #out >= n
  end, 5, n .. " access-log lines")
  return out
end

describe("jwt policy (integration)", function()
  local keys, up, g

  setup(function()
    keys = jwt.keys()
    up = mock.start{ name = "backend" }
    g = gateway.start{
      config = CONFIG,
      vars = { UPSTREAM_PORT = up.port },
      files = { ["keys/rsa.pub"] = keys.rsa.public_pem, ["keys/ec256.crt"] = keys.ec256.cert_pem },
    }
  end)

  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
    jwt.cleanup()
  end)

  local function claims(t)
    local c = { sub = "alice", aud = "coffee-api", iss = "https://issuer.example", exp = os.time() + 300 }
    for k, v in pairs(t or {}) do c[k] = v end
    return c
  end

  it("accepts a valid RS256 token end to end; eg-consumer-id reaches the upstream", function()
    local tok = jwt.sign(claims(), keys.rsa, "RS256")
    local res = assert(g:get("/api/orders", { Authorization = "Bearer " .. tok }))
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal("/api/orders", echo.path)
    assert.equal("alice", echo.headers["eg-consumer-id"])
    assert.truthy(echo.headers["eg-request-id"])
    -- a second time (the verified-token cache) is the same
    res = assert(g:get("/api/orders", { Authorization = "Bearer " .. tok }))
    assert.equal(200, res.status)
    assert.equal("alice", cjson.decode(res.body).headers["eg-consumer-id"])
  end)

  it("claim id wins over sub for eg-consumer-id", function()
    local tok = jwt.sign(claims{ id = "consumer-7" }, keys.rsa, "RS384")
    local res = assert(g:get("/api/x", { Authorization = "Bearer " .. tok }))
    assert.equal(200, res.status)
    assert.equal("consumer-7", cjson.decode(res.body).headers["eg-consumer-id"])
  end)

  it("ES256 from a certificate file, token in a header", function()
    local tok = jwt.sign({ sub = "bob" }, keys.ec256, "ES256")
    local res = assert(g:get("/es/x", { ["X-Token"] = tok }))
    assert.equal(200, res.status)
    assert.equal("bob", cjson.decode(res.body).headers["eg-consumer-id"])
    res = assert(g:get("/es/x", { Authorization = "Bearer " .. tok }))
    assert.equal(401, res.status)
  end)

  it("401 Unauthorized with WWW-Authenticate; nothing reaches the upstream", function()
    local before = assert(up:count()).requests
    local res = assert(g:get("/api/orders"))
    assert.equal(401, res.status)
    assert.equal("Unauthorized", res.body)
    assert.matches("^text/plain", res.headers["content-type"])
    assert.equal("Bearer", res.headers["www-authenticate"])

    local bad = jwt.bad_signature(jwt.sign(claims(), keys.rsa, "RS256"))
    res = assert(g:get("/api/orders", { Authorization = "Bearer " .. bad }))
    assert.equal(401, res.status)
    assert.equal("Unauthorized", res.body)
    assert.equal('Bearer error="invalid_token"', res.headers["www-authenticate"])

    for _, tok in ipairs{
      jwt.none(claims()),
      jwt.hs_with_pem(claims(), keys.rsa),
      jwt.sign(claims{ exp = os.time() - 60 }, keys.rsa, "RS256"),
      jwt.sign(claims{ nbf = os.time() + 3600 }, keys.rsa, "RS256"),
      jwt.sign(claims{ aud = "other-api" }, keys.rsa, "RS256"),
      jwt.sign(claims{ iss = "https://evil.example" }, keys.rsa, "RS256"),
    } do
      res = assert(g:get("/api/orders", { Authorization = "Bearer " .. tok }))
      assert.equal(401, res.status)
    end
    -- /count itself is the one more request
    assert.equal(before + 1, assert(up:count()).requests)
  end)

  it("logs why in the access log's error field", function()
    local marker = "/api/log-" .. os.time()
    local cases = {
      { headers = {}, error = "jwt: no token" },
      { headers = { Authorization = "Bearer " .. jwt.bad_signature(jwt.sign(claims(), keys.rsa, "RS256")) },
        error = "jwt: bad signature" },
      { headers = { Authorization = "Bearer " .. jwt.sign(claims{ exp = os.time() - 60 }, keys.rsa, "RS256") },
        error = "jwt: token expired" },
      { headers = { Authorization = "Bearer " .. jwt.none(claims()) }, error = "jwt: algorithm not allowed" },
      { headers = { Authorization = "Bearer " .. jwt.sign(claims{ aud = "x" }, keys.rsa, "RS256") },
        error = "jwt: wrong audience" },
      { headers = { Authorization = "Bearer " .. jwt.sign(claims{ iss = "x" }, keys.rsa, "RS256") },
        error = "jwt: wrong issuer" },
      { headers = { Authorization = "Bearer x.y.z" }, error = "jwt: malformed token" },
      { headers = { Authorization = "Bearer " .. jwt.sign(claims(), keys.rsa, "RS256") }, status = 200 },
    }
    for i, c in ipairs(cases) do
      local res = assert(g:get(marker .. "/" .. i, c.headers))
      assert.equal(c.status or 401, res.status)
    end
    local seen = {}
    process.wait_for(function()
      local lines = log_lines(g, 1)
      seen = {}
      for _, l in ipairs(lines) do
        local i = l.path and tonumber(l.path:match("^" .. marker:gsub("%-", "%%-") .. "/(%d+)$"))
        if i then seen[i] = l end
      end
      return seen[#cases]
    end, 5, "the marker lines")
    for i, c in ipairs(cases) do
      local l = assert(seen[i], "no access-log line for case " .. i)
      assert.equal(c.status or 401, l.status)
      if c.error then
        assert.equal(c.error, l.error)
      else
        assert.is_nil(l.error)
      end
    end
  end)

  it("passThrough: anonymous requests reach the upstream without a consumer id", function()
    local res = assert(g:get("/open/menu"))
    assert.equal(200, res.status)
    assert.is_nil(cjson.decode(res.body).headers["eg-consumer-id"])
    res = assert(g:get("/open/menu", { Authorization = "Bearer " .. jwt.sign({ sub = "carol" }, "s3cret", "HS256") }))
    assert.equal("carol", cjson.decode(res.body).headers["eg-consumer-id"])
    -- a client cannot claim to be someone by sending the header itself
    res = assert(g:get("/open/menu", { ["eg-consumer-id"] = "admin" }))
    assert.equal(200, res.status)
    assert.is_nil(cjson.decode(res.body).headers["eg-consumer-id"])
  end)

  describe("config check (tollgate -t)", function()
    local function check(action, files)
      return gateway.check([[
http: { port: 0 }
apiEndpoints:
  api: { paths: '/*' }
policies: [jwt]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - jwt:
          - action: ]] .. action .. "\n", { files = files })
    end

    it("refuses checkCredentialExistence left to its default, saying why", function()
      local code, out = check("{ secretOrPublicKey: s3cret }")
      assert.equal(1, code)
      assert.matches("gateway%.config%.yml:%d+: pipelines%.p%.policies%[1%]%.jwt%[1%]%.action: " ..
        "checkCredentialExistence: true checks the token's subject against a consumer store", out)
    end)

    it("refuses a missing key file and PEM garbage; accepts a good key file", function()
      local code, out = check("{ secretOrPublicKeyFile: nope.pem, checkCredentialExistence: false }")
      assert.equal(1, code)
      assert.matches("secretOrPublicKeyFile: .*nope%.pem: No such file or directory", out)
      code, out = check("{ secretOrPublicKeyFile: bad.pem, checkCredentialExistence: false }",
        { ["bad.pem"] = "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n" })
      assert.equal(1, code)
      assert.matches("secretOrPublicKeyFile: not a PEM public key", out)
      code, out = check("{ secretOrPublicKeyFile: k.pem, checkCredentialExistence: false }",
        { ["k.pem"] = keys.rsa.public_pem })
      assert.equal(0, code, out)
    end)
  end)
end)
