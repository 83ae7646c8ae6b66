-- luacheck: max line length 140
-- jwt with jwksUri, with no server (tollgate.testing): the key set is
-- fetched by the request itself (there are no timers outside the gateway)
-- and answered by the test's upstream function (res.calls); the test clock
-- drives the once-per-10-s limit on fetches that requests ask for.

local testing = require "tollgate.testing"
local core = require "tollgate.core"
local jwks = require "tollgate.jwks"
local jwt = require "spec.support.jwt"
local cjson = require "cjson"

local JWKS_URI = "https://idp.test/.well-known/jwks.json"
local JWKS_PATH = "/.well-known/jwks.json"

describe("jwt policy with jwksUri (unit)", function()
  local keys
  local logs -- { level, message } the policy logged
  local saved = {}

  setup(function() keys = jwt.keys() end)
  teardown(function() jwt.cleanup() end)

  before_each(function()
    logs = {}
    for _, level in ipairs{ "log_error", "log_warn", "log_info" } do
      saved[level] = core[level]
      core[level] = function(msg) logs[#logs + 1] = { level, msg } end
    end
  end)
  after_each(function()
    for level, fn in pairs(saved) do core[level] = fn end
  end)

  local function logged(level, text)
    for _, l in ipairs(logs) do
      if l[1] == level and l[2]:find(text, 1, true) then return l[2] end
    end
    local all = {}
    for _, l in ipairs(logs) do all[#all + 1] = l[1] .. ": " .. l[2] end
    error(("no %s line with %q in:\n%s"):format(level, text, table.concat(all, "\n")), 2)
  end

  -- An identity provider: idp.body (a JWKS text) or idp.status answers
  -- JWKS_PATH; anything else is the upstream (200 "ok").
  local function idp_for(body)
    local idp = { body = body, status = 200 }
    idp.upstream = function(up)
      if up.path == JWKS_PATH then
        if idp.status ~= 200 then return { status = idp.status, body = "down" } end
        return { status = 200, headers = { ["Content-Type"] = "application/json" }, body = idp.body }
      end
      return { status = 200, body = "ok" }
    end
    return idp
  end

  local function policy(extra)
    local action = { jwksUri = JWKS_URI, checkCredentialExistence = false }
    for k, v in pairs(extra or {}) do action[k] = v end
    return testing.policy("jwt", action)
  end

  local function run(p, idp, token)
    return p:run({ path = "/orders", headers = { Authorization = "Bearer " .. token } },
      { upstream = idp.upstream })
  end

  local serial = 0
  -- A fresh token (never cached) signed by key, with a kid (false: none).
  local function token(key, alg, kid, claims)
    serial = serial + 1
    local c = { sub = "alice", jti = "t" .. serial, exp = math.floor(testing.clock.now()) + 3600 }
    for k, v in pairs(claims or {}) do c[k] = v end
    return jwt.sign(c, key, alg, { header = { kid = kid or nil } })
  end

  local function fetches(res)
    local n = 0
    for _, call in ipairs(res.calls) do
      if call.path == JWKS_PATH then n = n + 1 end
    end
    return n
  end

  it("fetches the set on the first request, then picks RS256 and ES256 keys by kid", function()
    local idp = idp_for(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }), jwt.jwk(keys.ec256, { kid = "e1" }),
                                  jwt.jwk(keys.rsa2, { kid = "r2", alg = "RS256", use = "sig" }) })
    local p = policy()
    local res = run(p, idp, token(keys.rsa, "RS256", "r1"))
    assert.equal(200, res.status, res.req.error)
    assert.equal(1, fetches(res))
    local call = res.calls[1]
    assert.equal("GET", call.method)
    assert.equal("idp.test", call.headers.host)
    assert.matches("application/jwk%-set%+json", call.headers.accept)
    assert.equal("alice", res.upstream.headers["eg-consumer-id"])
    logged("log_info", "key set loaded: 3 keys (r1, e1, r2)")

    res = run(p, idp, token(keys.ec256, "ES256", "e1", { sub = "bob" }))
    assert.equal(200, res.status, res.req.error)
    assert.equal("bob", res.upstream.headers["eg-consumer-id"])
    assert.equal(0, fetches(res))
    assert.equal(200, run(p, idp, token(keys.rsa2, "RS256", "r2")).status)

    -- the kid names the key: signed by another one, refused
    res = run(p, idp, token(keys.rsa2, "RS256", "r1"))
    assert.equal(401, res.status)
    assert.equal("jwt: bad signature", res.req.error)
    -- r2 is restricted to RS256 by its alg
    res = run(p, idp, token(keys.rsa2, "RS512", "r2"))
    assert.equal(401, res.status)
    assert.equal("jwt: algorithm not allowed", res.req.error)
    -- an HS256 token naming an RSA key (its PEM as the secret) is never checked as HMAC
    res = run(p, idp, jwt.sign({ sub = "x" }, keys.rsa.public_pem, "HS256", { header = { kid = "r1" } }))
    assert.equal(401, res.status)
    assert.equal("jwt: algorithm not allowed", res.req.error)
    assert.equal(0, fetches(res))
  end)

  it("a token without kid is checked against the keys of its algorithm's type", function()
    local idp = idp_for(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }), jwt.jwk(keys.rsa2, { kid = "r2" }),
                                  jwt.jwk(keys.ec256, { kid = "e1" }) })
    local p = policy()
    local res = run(p, idp, token(keys.rsa2, "RS256", false))
    assert.equal(200, res.status, res.req.error)
    res = run(p, idp, token(keys.ec256, "ES256", false))
    assert.equal(200, res.status, res.req.error)
    res = run(p, idp, token(keys.ec384, "ES384", false))
    assert.equal(401, res.status)
    assert.equal("jwt: algorithm not allowed", res.req.error)
    res = run(p, idp, jwt.bad_signature(token(keys.rsa, "RS256", false)))
    assert.equal(401, res.status)
    assert.equal("jwt: bad signature", res.req.error)
    -- none of these asked for a fetch: no kid was unknown
    assert.equal(0, fetches(res))
  end)

  it("oct keys verify HS tokens; keys for encryption and unusable keys are skipped, with a warning", function()
    local idp = idp_for(cjson.encode{ keys = {
      jwt.jwk("hmac-secret-1", { kid = "h1" }),
      jwt.jwk(keys.rsa2, { kid = "enc", use = "enc" }),
      { kty = "RSA", kid = "short", n = "AQAB", e = "AQAB" },
      { kty = "OKP", kid = "ed", crv = "Ed25519", x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
      jwt.jwk(keys.ec256, { kid = "ops", key_ops = { "encrypt" } }),
    } })
    local p = policy()
    local res = run(p, idp, token("hmac-secret-1", "HS256", "h1"))
    assert.equal(200, res.status, res.req.error)
    local line = logged("log_info", "key set loaded: 1 key (h1)")
    assert.matches("keys%[2%] %(kid enc%): use is \"enc\", not \"sig\"", line)
    assert.matches("keys%[3%] %(kid short%): RSA modulus too small", line)
    assert.matches("keys%[4%] %(kid ed%): unknown kty \"OKP\"", line)
    assert.matches("keys%[5%] %(kid ops%): key_ops does not include \"verify\"", line)
  end)

  it("a kid not in the set fetches it again (rotation), once per 10 s at most", function()
    local idp = idp_for(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }) })
    local p = policy()
    assert.equal(200, run(p, idp, token(keys.rsa, "RS256", "r1")).status)

    -- the provider publishes a new key; a token signed with it is accepted after one fetch
    idp.body = jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }), jwt.jwk(keys.ec384, { kid = "e2" }) }
    local res = run(p, idp, token(keys.ec384, "ES384", "e2"))
    assert.equal(200, res.status, res.req.error)
    assert.equal(1, fetches(res))
    logged("log_info", "key set changed: 2 keys (r1, e2)")

    -- the fetch for e2 was less than 10 s ago: an unknown kid now fetches nothing
    res = run(p, idp, token(keys.rsa, "RS256", "junk-1"))
    assert.equal(401, res.status)
    assert.equal("jwt: no key for this token", res.req.error)
    assert.equal(0, fetches(res))

    -- 10 s later, junk kids: one fetch, then none for 10 s, however many come
    testing.clock.advance(10)
    res = run(p, idp, token(keys.rsa, "RS256", "junk-2"))
    assert.equal(401, res.status)
    assert.equal("jwt: no key for this token", res.req.error)
    assert.equal(1, fetches(res))
    for i = 3, 20 do
      res = run(p, idp, token(keys.rsa, "RS256", "junk-" .. i))
      assert.equal(401, res.status)
      assert.equal(0, fetches(res), "junk-" .. i)
    end
    -- a real new key published meanwhile waits for the 10 s too
    idp.body = jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }), jwt.jwk(keys.rsa2, { kid = "r3" }) }
    res = run(p, idp, token(keys.rsa2, "RS256", "r3"))
    assert.equal(401, res.status)
    assert.equal(0, fetches(res))
    testing.clock.advance(10)
    res = run(p, idp, token(keys.rsa2, "RS256", "r3"))
    assert.equal(200, res.status, res.req.error)
    assert.equal(1, fetches(res))
  end)

  it("a failed fetch keeps the last good set and says why; the next success is logged", function()
    local good = jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }) }
    local idp = idp_for(good)
    local p = policy()
    assert.equal(200, run(p, idp, token(keys.rsa, "RS256", "r1")).status)
    local src = p.instance.jwks
    local set = src.set

    local failures = {
      { function() idp.status = 500 end, "fetch failed: HTTP status 500" },
      { function() idp.status, idp.body = 200, "<html>not json" end, "bad key set: not a JWK set" },
      { function() idp.body = '{"keys":[]}' end, "bad key set: no usable keys" },
      { function() idp.body = '{"keys":{}}' end, "bad key set: no usable keys" },
      { function() idp.body = cjson.encode{ keys = { { kty = "EC", crv = "P-256", kid = "bad", x = "AA", y = "AA" } } } end,
        "bad key set: no usable keys (keys[1] (kid bad): P-256 coordinates are 32 bytes" },
    }
    for i, f in ipairs(failures) do
      f[1]()
      logs = {}
      testing.clock.advance(10)
      local res = run(p, idp, token(keys.rsa, "RS256", "unknown-" .. i))
      assert.equal(1, fetches(res))
      assert.equal(401, res.status)
      local line = logged("log_warn", f[2])
      assert.matches("keeping the last good key set %(fetched %d+ s ago%)", line)
      assert.equal(set, src.set)
      -- tokens of the last good set still verify (fresh ones: not from the cache)
      res = run(p, idp, token(keys.rsa, "RS256", "r1"))
      assert.equal(200, res.status, res.req.error)
    end
    idp.body = good
    logs = {}
    testing.clock.advance(10)
    run(p, idp, token(keys.rsa, "RS256", "unknown-again"))
    logged("log_info", "fetched again after a failure; the key set is unchanged")
  end)

  it("no set yet: 503 saying why (not 401), a fetch once per 10 s, then keys when the provider is back", function()
    local idp = idp_for(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }) })
    idp.status = 503
    local p = policy()
    local res = run(p, idp, token(keys.rsa, "RS256", "r1"))
    assert.equal(503, res.status)
    assert.equal("Service Unavailable", res.body)
    assert.is_false(res.continued)
    assert.is_nil(res.headers["www-authenticate"])
    assert.equal("jwt: no key set from " .. JWKS_URI .. ": fetch failed: HTTP status 503", res.req.error)
    assert.equal(1, fetches(res))
    logged("log_error", "fetch failed: HTTP status 503; no key set yet")

    -- (that was the first fetch, which the gateway makes at load.) A request
    -- without a set asks for one more...
    res = run(p, idp, token(keys.rsa, "RS256", "r1"))
    assert.equal(503, res.status)
    assert.equal(1, fetches(res))
    -- ...and then none for 10 s: the same answer, even once the provider is back
    idp.status = 200
    res = run(p, idp, token(keys.rsa, "RS256", "r1"))
    assert.equal(503, res.status)
    assert.equal(0, fetches(res))
    -- a missing token is still 401
    assert.equal(401, p:run({ path = "/orders" }, { upstream = idp.upstream }).status)

    testing.clock.advance(10)
    res = run(p, idp, token(keys.rsa, "RS256", "r1"))
    assert.equal(200, res.status, res.req.error)
    assert.equal(1, fetches(res))
  end)

  it("no set yet with passThrough: the request goes on anonymously", function()
    local idp = idp_for("{}")
    local p = policy{ passThrough = true }
    local res = run(p, idp, token(keys.rsa, "RS256", "r1"))
    assert.equal(200, res.status)
    assert.is_true(res.continued)
    assert.is_nil(res.req.user)
    assert.matches("^jwt: no key set from .*not a JWK set", res.req.error)
  end)

  it("clears the verified-token cache when the set changes: a removed key's token is refused", function()
    local idp = idp_for(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }), jwt.jwk(keys.rsa2, { kid = "r2" }) })
    local p = policy()
    local kept = token(keys.rsa, "RS256", "r1")
    assert.equal(200, run(p, idp, kept).status)
    assert.is_table(p.instance.cache[kept])
    assert.equal(200, run(p, idp, kept).status) -- from the cache

    -- the same set again (another order): the cache stays
    idp.body = jwt.jwks{ jwt.jwk(keys.rsa2, { kid = "r2" }), jwt.jwk(keys.rsa, { kid = "r1" }) }
    local res = run(p, idp, token(keys.rsa, "RS256", "nope"))
    assert.equal(1, fetches(res))
    assert.is_table(p.instance.cache[kept])

    -- r1 is removed (rotated out); the next fetch changes the set
    idp.body = jwt.jwks{ jwt.jwk(keys.rsa2, { kid = "r2" }), jwt.jwk(keys.ec256, { kid = "e3" }) }
    testing.clock.advance(10)
    res = run(p, idp, token(keys.ec256, "ES256", "e3"))
    assert.equal(200, res.status, res.req.error)
    assert.equal(1, fetches(res))
    assert.is_nil(p.instance.cache[kept])
    res = run(p, idp, kept)
    assert.equal(401, res.status)
    assert.equal("jwt: no key for this token", res.req.error)
  end)

  it("audience, issuer, exp and algorithms apply as with a static key", function()
    local idp = idp_for(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }), jwt.jwk(keys.ec256, { kid = "e1" }) })
    local p = policy{ audience = "api", issuer = "https://idp.test/", algorithms = { "RS256" } }
    local ok = { aud = "api", iss = "https://idp.test/" }
    assert.equal(200, run(p, idp, token(keys.rsa, "RS256", "r1", ok)).status)
    local res = run(p, idp, token(keys.ec256, "ES256", "e1", ok))
    assert.equal("jwt: algorithm not allowed", res.req.error)
    res = run(p, idp, token(keys.rsa, "RS256", "r1", { aud = "other", iss = "https://idp.test/" }))
    assert.equal("jwt: wrong audience", res.req.error)
    res = run(p, idp, token(keys.rsa, "RS256", "r1", { aud = "api", iss = "https://idp.test/",
                                                      exp = math.floor(testing.clock.now()) - 10 }))
    assert.equal("jwt: token expired", res.req.error)
  end)
end)

describe("tollgate.jwks.parse", function()
  local keys
  setup(function() keys = jwt.keys() end)
  teardown(function() jwt.cleanup() end)

  it("keeps the keys in order with their kids; the fingerprint ignores the order", function()
    local a = assert(jwks.parse(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "a" }), jwt.jwk(keys.ec521, { kid = "b" }),
                                          jwt.jwk("s", {}) }))
    assert.equal(3, a.n)
    assert.same({ "a", "b", "(no kid)" }, a.kids)
    local b = assert(jwks.parse(jwt.jwks{ jwt.jwk("s", {}), jwt.jwk(keys.ec521, { kid = "b" }),
                                          jwt.jwk(keys.rsa, { kid = "a" }) }))
    assert.equal(a.fingerprint, b.fingerprint)
    local c = assert(jwks.parse(jwt.jwks{ jwt.jwk(keys.rsa, { kid = "a" }), jwt.jwk(keys.ec521, { kid = "c" }),
                                          jwt.jwk("s", {}) }))
    assert.not_equal(a.fingerprint, c.fingerprint)
  end)

  it("refuses what is not a key set, and a set without one usable key, saying why", function()
    for _, text in ipairs{ "", "null", "[]", '"keys"', '{"keys":"x"}', '{"Keys":[]}' } do
      local set, err = jwks.parse(text)
      assert.is_nil(set, text)
      assert.matches("not a JWK set", err)
    end
    local set, err = jwks.parse('{"keys":[1, {"kty":"RSA"}, {"kty":"oct","k":"c2VjcmV0","kid":7}]}')
    assert.is_nil(set)
    assert.equal('no usable keys (keys[1]: not an object; keys[2]: RSA key without "n"; keys[3]: kid is not a string)', err)
  end)

  it("keeps at most MAX_KEYS keys", function()
    local list = {}
    for i = 1, jwks.MAX_KEYS + 3 do list[i] = jwt.jwk("secret" .. i, { kid = "k" .. i }) end
    local set, _, skipped = jwks.parse(jwt.jwks(list))
    assert.equal(jwks.MAX_KEYS, set.n)
    assert.equal(3, #skipped)
    assert.matches("more than " .. jwks.MAX_KEYS .. " usable keys", skipped[1])
  end)
end)
