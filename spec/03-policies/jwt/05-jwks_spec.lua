-- luacheck: max line length 140
-- jwt with jwksUri: the real binary fetching a JSON Web Key Set over HTTPS
-- from a test server (tollgate.testing.jwks) with a CA and certificates made
-- at test time, tokens signed at test time. The server counts the fetches;
-- every wait is for a condition (a log line, a fetch count), with a deadline.

local gateway = require "spec.support.gateway"
local process = require "spec.support.process"
local jwt = require "spec.support.jwt"
local certs = require "spec.support.certs"
local jwks = require "tollgate.testing.jwks"
local cjson = require "cjson"

local CONFIG = [[
http: { hostname: 127.0.0.1, port: 0 }
tollgate: { accessLog: stdout, logLevel: info }
apiEndpoints:
  api: { paths: '/api/*' }
policies: [jwt, expression]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - jwt:
          - action:
              jwksUri: '${JWKS}'
              ${CA_LINE}
              jwksRefreshInterval: ${INTERVAL}
              jwksTimeout: ${TIMEOUT}
              checkCredentialExistence: false
      - expression:
          - action: { lua: "req:respond(200, 'user=' .. tostring(req.user.sub))" }
]]

describe("jwt policy with jwksUri (integration)", function()
  local keys, c

  setup(function()
    keys = jwt.keys()
    c = certs.generate()
  end)

  teardown(function()
    gateway.cleanup_all()
    jwks.stop_all()
    if c then c:cleanup() end
    jwt.cleanup()
  end)

  after_each(function()
    gateway.cleanup_all()
    jwks.stop_all()
  end)

  local function idp_start(list, opts)
    opts = opts or {}
    return jwks.start{ body = list and jwt.jwks(list), port = opts.port, status = opts.status,
                       tls = { cert = c.upstream.cert, key = c.upstream.key } }
  end

  -- A gateway whose jwt step uses url. opts.ca: the CA file to trust
  -- (default: the test CA; false: the system's), interval and timeout (ms).
  local function start(url, opts)
    opts = opts or {}
    local files, ca_line = {}, ""
    local ca = opts.ca == nil and c.ca.cert or opts.ca
    if ca then
      files["idp-ca.pem"] = assert(process.read_file(ca))
      ca_line = "jwksCaFile: idp-ca.pem"
    end
    return gateway.start{ config = CONFIG, files = files,
      vars = { JWKS = url, CA_LINE = ca_line, INTERVAL = opts.interval or 300000, TIMEOUT = opts.timeout or 3000 } }
  end

  local serial = 0
  -- A fresh token (never in the gateway's cache), signed by key with kid.
  local function token(key, alg, kid, sub)
    serial = serial + 1
    return jwt.sign({ sub = sub or "alice", jti = "j" .. serial, exp = os.time() + 600 }, key, alg,
                    { header = { kid = kid } })
  end

  local function get(g, tok)
    return assert(g:get("/api/orders", { Authorization = "Bearer " .. tok }))
  end

  -- The access-log line of the n-th request (decoded), waiting for it.
  local function access_log(g, n)
    local line
    process.wait_for(function()
      local i = 0
      for l in g:stdout():gmatch("[^\n]+") do
        i = i + 1
        if i == n then line = cjson.decode(l) end
      end
      return line
    end, 5, "access-log line " .. n)
    return line
  end

  local function count(text, plain)
    local n, pos = 0, 1
    while true do
      local s, e = text:find(plain, pos, true)
      if not s then return n end
      n, pos = n + 1, e + 1
    end
  end

  it("picks RS256 and ES256 keys by kid from the fetched set; the first requests wait for the fetch", function()
    local idp = idp_start{ jwt.jwk(keys.rsa, { kid = "rsa-1" }), jwt.jwk(keys.ec256, { kid = "ec-1", alg = "ES256" }),
                           jwt.jwk(keys.rsa2, { kid = "rsa-2", use = "sig" }) }
    -- the fetch takes 1 s: a request sent meanwhile waits for it (jwksTimeout 3 s)
    idp:set_delay(1)
    local g = start(idp:url())
    local res = get(g, token(keys.rsa, "RS256", "rsa-1"))
    assert.equal(200, res.status, g:logs())
    assert.equal("user=alice", res.body)
    assert.truthy(access_log(g, 1).total_ms > 200, "the first request did not wait for the fetch")
    g:wait_log("key set loaded: 3 keys %(rsa%-1, ec%-1, rsa%-2%)")
    idp:set_delay(nil)

    res = get(g, token(keys.ec256, "ES256", "ec-1", "bob"))
    assert.equal(200, res.status)
    assert.equal("user=bob", res.body)
    res = get(g, token(keys.rsa2, "RS512", "rsa-2", "carol"))
    assert.equal(200, res.status)
    assert.equal("user=carol", res.body)

    -- the kid names the key: a token signed by another is refused
    res = get(g, token(keys.rsa2, "RS256", "rsa-1"))
    assert.equal(401, res.status)
    assert.equal('Bearer error="invalid_token"', res.headers["www-authenticate"])
    assert.equal("jwt: bad signature", access_log(g, 4).error)
    -- one fetch: no kid was unknown
    assert.equal(1, idp:fetches())
  end)

  it("rotation: a token with a newly published kid is accepted after one more fetch", function()
    local idp = idp_start{ jwt.jwk(keys.rsa, { kid = "2024" }) }
    local g = start(idp:url())
    assert.equal(200, get(g, token(keys.rsa, "RS256", "2024")).status)
    assert.equal(1, idp:fetches())

    idp:set(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "2024" }), jwt.jwk(keys.ec384, { kid = "2025" }) })
    local res = get(g, token(keys.ec384, "ES384", "2025", "dave"))
    assert.equal(200, res.status, g:logs())
    assert.equal("user=dave", res.body)
    assert.equal(2, idp:fetches())
    g:wait_log("key set changed: 2 keys %(2024, 2025%); verified%-token cache cleared")
    -- the old key still works, without another fetch
    assert.equal(200, get(g, token(keys.rsa, "RS256", "2024")).status)
    assert.equal(2, idp:fetches())
  end)

  it("unknown kids make one fetch per 10 s at most, however many come", function()
    local idp = idp_start{ jwt.jwk(keys.rsa, { kid = "k1" }) }
    local g = start(idp:url())
    assert.equal(200, get(g, token(keys.rsa, "RS256", "k1")).status)
    assert.equal(1, idp:fetches())
    for i = 1, 15 do
      local res = get(g, token(keys.rsa, "RS256", "junk-" .. i))
      assert.equal(401, res.status)
    end
    -- each request above had its answer, so any fetch it caused is counted
    assert.equal(2, idp:fetches())
    assert.equal("jwt: no key for this token", access_log(g, 16).error)
    -- and the set is still used
    assert.equal(200, get(g, token(keys.rsa, "RS256", "k1")).status)
  end)

  it("refreshes periodically: a change is picked up, a removed key's tokens are refused, the cache too", function()
    local idp = idp_start{ jwt.jwk(keys.rsa, { kid = "old" }), jwt.jwk(keys.rsa2, { kid = "new" }) }
    local g = start(idp:url(), { interval = 300 })
    local cached = token(keys.rsa, "RS256", "old")
    assert.equal(200, get(g, cached).status)
    assert.equal(200, get(g, cached).status) -- now from the verified-token cache
    idp:wait_fetches(3, 5)                   -- refreshes, every 0.3 s

    -- the provider drops "old"; a refresh picks that up and clears the cache
    idp:set(jwt.jwks{ jwt.jwk(keys.rsa2, { kid = "new" }) })
    g:wait_log("key set changed: 1 key %(new%); verified%-token cache cleared")
    local res = get(g, cached)
    assert.equal(401, res.status)
    assert.equal(200, get(g, token(keys.rsa2, "RS256", "new")).status)
    local line = access_log(g, 3)
    assert.equal(401, line.status)
    assert.equal("jwt: no key for this token", line.error)
  end)

  it("the provider down after the first fetch: tokens are still verified with the last good set", function()
    local idp = idp_start{ jwt.jwk(keys.ec256, { kid = "e" }) }
    local port = idp.port
    local g = start(idp:url(), { interval = 300 })
    assert.equal(200, get(g, token(keys.ec256, "ES256", "e")).status)

    idp:stop()
    g:wait_log("%[warn%].*JWKS .*: fetch failed: upstream refused the connection; keeping the last good key set %(fetched %d+ s ago%)")
    for _ = 1, 3 do
      assert.equal(200, get(g, token(keys.ec256, "ES256", "e")).status)
    end
    -- a forged token is still refused
    assert.equal(401, get(g, jwt.bad_signature(token(keys.ec256, "ES256", "e"))).status)

    -- back, with a 500 first: that is a failure too
    idp = idp_start({ jwt.jwk(keys.ec256, { kid = "e" }) }, { port = port, status = 500 })
    g:wait_log("fetch failed: HTTP status 500; keeping the last good key set")
    idp:set_status(nil)
    g:wait_log("%[info%].*fetched again after a failure; the key set is unchanged")
    assert.equal(200, get(g, token(keys.ec256, "ES256", "e")).status)
  end)

  it("the provider down from the start: 503 (not 401) and the log says why; keys once it is up", function()
    local port = process.free_port()
    local url = "https://127.0.0.1:" .. port .. "/jwks.json"
    local g = start(url, { interval = 300 })
    local res = get(g, token(keys.rsa, "RS256", "r"))
    assert.equal(503, res.status)
    assert.equal("Service Unavailable", res.body)
    assert.is_nil(res.headers["www-authenticate"])
    local line = access_log(g, 1)
    assert.equal(503, line.status)
    assert.equal("jwt: no key set from " .. url .. ": fetch failed: upstream refused the connection", line.error)
    g:wait_log("%[error%].*JWKS " .. url:gsub("%p", "%%%0") ..
               ": fetch failed: upstream refused the connection; no key set yet")
    -- a request without a token is still 401
    assert.equal(401, assert(g:get("/api/orders")).status)

    local idp = idp_start({ jwt.jwk(keys.rsa, { kid = "r" }) }, { port = port })
    g:wait_log("key set loaded: 1 key %(r%)")
    assert.equal(200, get(g, token(keys.rsa, "RS256", "r")).status)
    assert.truthy(idp:fetches() >= 1)
  end)

  it("a provider slower than jwksTimeout: the fetch times out, the waiting request gets 503 in time", function()
    local idp = idp_start{ jwt.jwk(keys.rsa, { kid = "r" }) }
    idp:set_delay(3)
    local g = start(idp:url(), { timeout = 500 })
    local t0 = process.now()
    local res = get(g, token(keys.rsa, "RS256", "r"))
    local elapsed = process.now() - t0
    assert.equal(503, res.status)
    assert.truthy(elapsed < 2, "waited " .. elapsed .. " s")
    assert.matches("^jwt: no key set from .*: fetch failed: ", access_log(g, 1).error)
    g:wait_log("%[error%].*JWKS .*: fetch failed: [^;]+; no key set yet")
  end)

  it("an identity provider whose certificate is not trusted: the fetch fails with the TLS reason", function()
    local idp = idp_start{ jwt.jwk(keys.rsa, { kid = "r" }) }
    local g = start(idp:url(), { ca = c.rogue_ca.cert })
    local res = get(g, token(keys.rsa, "RS256", "r"))
    assert.equal(503, res.status)
    local msg = g:wait_log("%[error%].*(JWKS .*: fetch failed: TLS: certificate verification failed: [^;]+); no key set yet")
    assert.matches("unable to get local issuer certificate", msg)
    assert.matches("fetch failed: TLS: certificate verification failed", access_log(g, 1).error)
    -- the TLS handshake failed: the server never saw the request
    assert.equal(0, idp:fetches())
  end)

  it("a reload fetches the set again for the new configuration, and serves with it", function()
    local idp = idp_start{ jwt.jwk(keys.rsa, { kid = "r" }) }
    local g = start(idp:url())
    assert.equal(200, get(g, token(keys.rsa, "RS256", "r")).status)
    assert.equal(1, idp:fetches())
    idp:set(jwt.jwks{ jwt.jwk(keys.rsa2, { kid = "r2" }) })
    assert(g:signal("HUP"))
    g:wait_log("configuration reloaded %(generation 2%)")
    idp:wait_fetches(2)
    g:wait_log("key set loaded: 1 key %(r2%)")
    assert.equal(200, get(g, token(keys.rsa2, "RS256", "r2")).status)
    assert.equal(2, idp:fetches())
  end)

  it("http:// on 127.0.0.1 works, with a warning at load", function()
    local idp = jwks.start{ body = jwt.jwks{ jwt.jwk("shared-secret", { kid = "h" }) } }
    local g = start(idp:url(), { ca = false })
    assert.equal(200, get(g, token("shared-secret", "HS256", "h")).status)
    g:wait_log("%[warn%].*jwksUri http://127%.0%.0%.1:%d+/jwks%.json is plain http")
    assert.equal(1, count(g:stderr(), "is plain http"))
  end)
end)
