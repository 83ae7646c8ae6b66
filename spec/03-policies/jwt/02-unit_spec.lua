-- luacheck: max line length 140
-- jwt: the policy on requests, with no server (tollgate.testing): the real
-- C verification, tokens minted by spec.support.jwt, the test clock.

local testing = require "tollgate.testing"
local jwt = require "spec.support.jwt"
local cjson = require "cjson"

local floor = math.floor

local function now() return floor(testing.clock.now()) end

-- A policy instance; checkCredentialExistence: false unless given.
local function policy(action, opts)
  if action.checkCredentialExistence == nil then action.checkCredentialExistence = false end
  return testing.policy("jwt", action, opts)
end

local function bearer(p, token, extra)
  local headers = { Authorization = "Bearer " .. token }
  for k, v in pairs(extra or {}) do headers[k] = v end
  return p:run{ path = "/orders", headers = headers }
end

-- The request got through with these claims, and eg-consumer-id upstream.
local function assert_accepted(res, consumer)
  assert.equal(200, res.status, res.req.error)
  assert.is_true(res.continued)
  assert.is_table(res.req.user)
  assert.is_nil(res.req.error)
  if consumer ~= nil then
    assert.equal(consumer, res.upstream.headers["eg-consumer-id"])
  end
end

-- Refused with 401 for `reason` (the access log's "error": "jwt: <reason>").
local function assert_refused(res, reason, no_token)
  assert.equal(401, res.status)
  assert.is_false(res.continued)
  assert.is_nil(res.upstream)
  assert.is_nil(res.req.user)
  assert.equal("Unauthorized", res.body)
  assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
  if no_token then
    assert.equal("Bearer", res.headers["www-authenticate"])
  else
    assert.equal('Bearer error="invalid_token"', res.headers["www-authenticate"])
  end
  if reason then assert.equal("jwt: " .. reason, res.req.error) end
end

describe("jwt policy (unit)", function()
  local keys

  setup(function() keys = jwt.keys() end)
  teardown(function() jwt.cleanup() end)

  describe("accepts valid tokens", function()
    local cases = {
      { "HS256", function() return "s3cret" end, function() return "s3cret" end },
      { "HS384", function() return "s3cret" end, function() return "s3cret" end },
      { "HS512", function() return "s3cret" end, function() return "s3cret" end },
      { "RS256", function() return keys.rsa.public_pem end, function() return keys.rsa end },
      { "RS384", function() return keys.rsa.public_pem end, function() return keys.rsa end },
      { "RS512", function() return keys.rsa.public_pem end, function() return keys.rsa end },
      { "ES256", function() return keys.ec256.public_pem end, function() return keys.ec256 end },
      { "ES384", function() return keys.ec384.public_pem end, function() return keys.ec384 end },
      { "ES512", function() return keys.ec521.public_pem end, function() return keys.ec521 end },
    }
    for _, c in ipairs(cases) do
      local alg, material, signer = c[1], c[2], c[3]
      it(alg .. ": req.user holds the claims, eg-consumer-id (sub) goes upstream", function()
        local p = policy{ secretOrPublicKey = material() }
        local claims = { sub = "alice", exp = now() + 60, scope = "orders:read",
                         roles = { "barista", "admin" }, profile = { name = "Alice" } }
        local res = bearer(p, jwt.sign(claims, signer(), alg))
        assert_accepted(res, "alice")
        local u = res.req.user
        assert.equal("alice", u.sub)
        assert.equal(claims.exp, u.exp)
        assert.equal("orders:read", u.scope)
        assert.same({ "barista", "admin" }, u.roles)
        assert.equal("Alice", u.profile.name)
      end)
    end

    it("whatever the header's typ says (JOSE, at+jwt as RFC 9068 access tokens, none)", function()
      -- typ is for the application (RFC 7519 5.1); jsonwebtoken (EG) ignores it
      local p = policy{ secretOrPublicKey = keys.rsa.public_pem }
      for _, typ in ipairs{ "JOSE", "at+jwt", "JWT", "jwt" } do
        local res = bearer(p, jwt.sign({ sub = "a" }, keys.rsa, "RS256", { header = { typ = typ } }))
        assert.equal(200, res.status, "typ " .. typ .. ": " .. tostring(res.req.error))
      end
      local res = bearer(p, jwt.sign({ sub = "a" }, keys.rsa, "RS256", { header = '{"alg":"RS256"}' }))
      assert.equal(200, res.status, "no typ: " .. tostring(res.req.error))
    end)

    it("with a certificate as the key (RSA and EC)", function()
      assert_accepted(bearer(policy{ secretOrPublicKey = keys.rsa.cert_pem },
        jwt.sign({ sub = "a" }, keys.rsa, "RS256")), "a")
      assert_accepted(bearer(policy{ secretOrPublicKey = keys.ec384.cert_pem },
        jwt.sign({ sub = "a" }, keys.ec384, "ES384")), "a")
    end)

    it("with the key from secretOrPublicKeyFile (relative to the config directory)", function()
      local p = policy({ secretOrPublicKeyFile = "ec521.pub" }, { dir = keys.dir })
      assert_accepted(bearer(p, jwt.sign({ sub = "a" }, keys.ec521, "ES512")), "a")
    end)

    it("eg-consumer-id: claim id when present, else sub; numbers as text", function()
      local p = policy{ secretOrPublicKey = "s" }
      assert_accepted(bearer(p, jwt.sign({ id = "c-42", sub = "alice" }, "s", "HS256")), "c-42")
      assert_accepted(bearer(p, jwt.sign({ sub = "bob" }, "s", "HS256")), "bob")
      assert_accepted(bearer(p, jwt.sign({ id = 42 }, "s", "HS256")), "42")
    end)

    it("eg-consumer-id: a null id counts as absent (sub is used), never the text of a null", function()
      local p = policy{ secretOrPublicKey = "s" }
      local res = bearer(p, jwt.sign({ id = cjson.null, sub = "alice" }, "s", "HS256"))
      assert.equal(200, res.status)
      local sent = res.upstream.headers["eg-consumer-id"]
      assert.is_nil(tostring(sent):find("userdata", 1, true), "eg-consumer-id: " .. tostring(sent))
      assert.equal("alice", sent)
    end)

    it("eg-consumer-id: a client's own header never reaches upstream as the consumer", function()
      -- a verified token without id or sub: the header the client sent must not pass for one
      local p = policy{ secretOrPublicKey = "s" }
      local res = bearer(p, jwt.sign({ scope = "x" }, "s", "HS256"), { ["eg-consumer-id"] = "admin" })
      assert.equal(200, res.status)
      assert.is_nil(res.upstream.headers["eg-consumer-id"])
      -- a token with sub: the token's wins
      res = bearer(p, jwt.sign({ sub = "bob" }, "s", "HS256"), { ["eg-consumer-id"] = "admin" })
      assert.equal("bob", res.upstream.headers["eg-consumer-id"])
    end)

    it("the claims may use escaped slashes (issuer https:\\/\\/...)", function()
      local p = policy{ secretOrPublicKey = "s", issuer = "https://issuer.example/realm" }
      -- cjson writes "/" as "\/"
      local tok = jwt.sign({ iss = "https://issuer.example/realm", sub = "a" }, "s", "HS256")
      assert.truthy(select(2, jwt.decode(tok)) and tok)
      assert_accepted(bearer(p, tok), "a")
    end)
  end)

  describe("refuses", function()
    it("alg none, with or without a signature part, whatever the key", function()
      for _, material in ipairs{ "s", keys.rsa.public_pem, keys.ec256.public_pem } do
        local p = policy{ secretOrPublicKey = material }
        assert_refused(bearer(p, jwt.none({ sub = "admin" })), "algorithm not allowed")
        assert_refused(bearer(p, jwt.none({ sub = "admin" }, "sig")), "algorithm not allowed")
        assert_refused(bearer(p, jwt.raw({ alg = "NONE" }, { sub = "admin" }, "")),
          "algorithm not allowed")
      end
    end)

    it("HS256 signed with the RSA public key (PEM or certificate) as the secret", function()
      local p = policy{ secretOrPublicKey = keys.rsa.public_pem }
      assert_refused(bearer(p, jwt.hs_with_pem({ sub = "admin" }, keys.rsa)), "algorithm not allowed")
      assert_refused(bearer(p, jwt.hs_with_pem({ sub = "admin" }, keys.rsa, "HS512")),
        "algorithm not allowed")
      p = policy{ secretOrPublicKey = keys.rsa.cert_pem }
      assert_refused(bearer(p, jwt.hs_with_pem({ sub = "admin" }, keys.rsa.cert_pem)),
        "algorithm not allowed")
    end)

    it("HS256 signed with the EC public key as the secret", function()
      local p = policy{ secretOrPublicKey = keys.ec256.public_pem }
      assert_refused(bearer(p, jwt.hs_with_pem({ sub = "admin" }, keys.ec256)), "algorithm not allowed")
    end)

    it("... even when algorithms lists HS256 next to RS256", function()
      local p = policy{ secretOrPublicKey = keys.rsa.public_pem, algorithms = { "RS256", "HS256" } }
      assert_refused(bearer(p, jwt.hs_with_pem({ sub = "admin" }, keys.rsa)), "algorithm not allowed")
      assert_accepted(bearer(p, jwt.sign({ sub = "a" }, keys.rsa, "RS256")), "a")
    end)

    it("a bad signature: a changed byte, a changed payload, another key, DER ECDSA", function()
      local p = policy{ secretOrPublicKey = keys.rsa.public_pem }
      local good = jwt.sign({ sub = "alice" }, keys.rsa, "RS256")
      assert_refused(bearer(p, jwt.bad_signature(good)), "bad signature")
      assert_refused(bearer(p, jwt.tamper(good)), "bad signature")
      assert_refused(bearer(p, jwt.sign({ sub = "alice" }, keys.rsa2, "RS256")), "bad signature")
      local hs = policy{ secretOrPublicKey = "right" }
      assert_refused(bearer(hs, jwt.sign({ sub = "a" }, "wrong", "HS256")), "bad signature")
      local ec = policy{ secretOrPublicKey = keys.ec256.public_pem }
      assert_refused(bearer(ec, jwt.sign({ sub = "a" }, keys.ec256, "ES256", { der = true })),
        "bad signature")
    end)

    it("a token of the wrong family or curve for the key", function()
      assert_refused(bearer(policy{ secretOrPublicKey = "s" }, jwt.sign({}, keys.rsa, "RS256")),
        "algorithm not allowed")
      assert_refused(bearer(policy{ secretOrPublicKey = keys.ec256.public_pem },
        jwt.sign({}, keys.ec384, "ES384")), "algorithm not allowed")
      assert_refused(bearer(policy{ secretOrPublicKey = keys.ec256.public_pem },
        jwt.sign({}, keys.rsa, "RS256")), "algorithm not allowed")
    end)

    it("malformed tokens", function()
      local p = policy{ secretOrPublicKey = "s" }
      for _, t in ipairs{ "abc", "a.b", "a.b.c.d", "!!!.???.###", jwt.b64url("{}") .. ".." } do
        local res = bearer(p, t)
        assert.equal(401, res.status, t)
        assert.equal('Bearer error="invalid_token"', res.headers["www-authenticate"])
        assert.matches("^jwt: ", res.req.error)
      end
      assert_refused(bearer(p, "abc"), "malformed token")
      assert_refused(bearer(p, jwt.sign("not json", "s", "HS256")), "malformed token")
    end)

    it("claims that are not a JSON object", function()
      local p = policy{ secretOrPublicKey = "s" }
      -- refused in C (jwt.c): the payload must be a JSON object
      assert_refused(bearer(p, jwt.sign("[1,2,3]", "s", "HS256")), "malformed token")
      assert_refused(bearer(p, jwt.sign('"alice"', "s", "HS256")))
    end)
  end)

  describe("401 answers", function()
    it("no token: 401 Unauthorized, text/plain, WWW-Authenticate: Bearer, error 'jwt: no token'", function()
      local p = policy{ secretOrPublicKey = "s" }
      local res = p:run{ path = "/orders" }
      assert_refused(res, "no token", true)
    end)

    it("a bad token: WWW-Authenticate: Bearer error=\"invalid_token\", the reason in req.error", function()
      local p = policy{ secretOrPublicKey = "s" }
      local res = bearer(p, jwt.bad_signature(jwt.sign({ sub = "a" }, "s", "HS256")))
      assert_refused(res, "bad signature")
      assert.equal(#"Unauthorized", tonumber(res.headers["content-length"]))
    end)
  end)

  describe("time", function()
    it("expired: refused; with enough leeway: accepted", function()
      local tok = jwt.sign({ sub = "a", exp = now() - 10 }, "s", "HS256")
      assert_refused(bearer(policy{ secretOrPublicKey = "s" }, tok), "token expired")
      assert_refused(bearer(policy{ secretOrPublicKey = "s", leeway = 5 }, tok), "token expired")
      assert_accepted(bearer(policy{ secretOrPublicKey = "s", leeway = 30 }, tok), "a")
    end)

    it("expires as the clock moves past exp (cache off)", function()
      local p = policy{ secretOrPublicKey = "s", cacheSize = 0 }
      local tok = jwt.sign({ sub = "a", exp = now() + 5 }, "s", "HS256")
      assert_accepted(bearer(p, tok), "a")
      testing.clock.advance(4)
      assert_accepted(bearer(p, tok), "a")
      testing.clock.advance(2)
      assert_refused(bearer(p, tok), "token expired")
    end)

    it("not yet valid (nbf): refused, with leeway accepted, later accepted", function()
      local tok = jwt.sign({ sub = "a", nbf = now() + 30 }, "s", "HS256")
      local p = policy{ secretOrPublicKey = "s" }
      assert_refused(bearer(p, tok), "token not yet valid")
      assert_refused(bearer(policy{ secretOrPublicKey = "s", leeway = 10 }, tok), "token not yet valid")
      assert_accepted(bearer(policy{ secretOrPublicKey = "s", leeway = 60 }, tok), "a")
      testing.clock.advance(31)
      assert_accepted(bearer(p, tok), "a")
    end)
  end)

  describe("audience and issuer", function()
    it("audience: a string claim, or an array claim with a listed value", function()
      local p = policy{ secretOrPublicKey = "s", audience = "orders-api" }
      assert_accepted(bearer(p, jwt.sign({ sub = "a", aud = "orders-api" }, "s", "HS256")), "a")
      assert_accepted(bearer(p, jwt.sign({ sub = "a", aud = { "web", "orders-api" } }, "s", "HS256")), "a")
      assert_refused(bearer(p, jwt.sign({ sub = "a", aud = "web" }, "s", "HS256")), "wrong audience")
      assert_refused(bearer(p, jwt.sign({ sub = "a", aud = { "web", "mobile" } }, "s", "HS256")),
        "wrong audience")
      assert_refused(bearer(p, jwt.sign({ sub = "a" }, "s", "HS256")), "wrong audience")
    end)

    it("audience: a list in the config, any one of them", function()
      local p = policy{ secretOrPublicKey = "s", audience = { "a1", "a2" } }
      assert_accepted(bearer(p, jwt.sign({ sub = "x", aud = "a2" }, "s", "HS256")), "x")
      assert_accepted(bearer(p, jwt.sign({ sub = "x", aud = { "zz", "a1" } }, "s", "HS256")), "x")
      assert_refused(bearer(p, jwt.sign({ sub = "x", aud = "a3" }, "s", "HS256")), "wrong audience")
    end)

    it("issuer: a string or one of a list; wrong or missing refused", function()
      local p = policy{ secretOrPublicKey = keys.ec256.public_pem, issuer = "https://issuer.example" }
      assert_accepted(bearer(p, jwt.sign({ sub = "a", iss = "https://issuer.example" }, keys.ec256, "ES256")), "a")
      assert_refused(bearer(p, jwt.sign({ sub = "a", iss = "https://evil.example" }, keys.ec256, "ES256")),
        "wrong issuer")
      assert_refused(bearer(p, jwt.sign({ sub = "a" }, keys.ec256, "ES256")), "wrong issuer")
      local l = policy{ secretOrPublicKey = "s", issuer = { "i1", "i2" } }
      assert_accepted(bearer(l, jwt.sign({ sub = "a", iss = "i2" }, "s", "HS256")), "a")
    end)
  end)

  describe("algorithms", function()
    it("restricts what the key would verify", function()
      local p = policy{ secretOrPublicKey = "s", algorithms = { "HS512" } }
      assert_refused(bearer(p, jwt.sign({ sub = "a" }, "s", "HS256")), "algorithm not allowed")
      assert_refused(bearer(p, jwt.sign({ sub = "a" }, "s", "HS384")), "algorithm not allowed")
      assert_accepted(bearer(p, jwt.sign({ sub = "a" }, "s", "HS512")), "a")
      local r = policy{ secretOrPublicKey = keys.rsa.public_pem, algorithms = { "RS384" } }
      assert_refused(bearer(r, jwt.sign({ sub = "a" }, keys.rsa, "RS256")), "algorithm not allowed")
      assert_accepted(bearer(r, jwt.sign({ sub = "a" }, keys.rsa, "RS384")), "a")
    end)

    it("unset: all the key verifies", function()
      local p = policy{ secretOrPublicKey = keys.rsa.public_pem }
      for _, alg in ipairs{ "RS256", "RS384", "RS512" } do
        assert_accepted(bearer(p, jwt.sign({ sub = alg }, keys.rsa, alg)), alg)
      end
    end)
  end)

  describe("extractors", function()
    local tok
    before_each(function() tok = jwt.sign({ sub = "alice" }, "s", "HS256") end)

    it("authBearer (default): Authorization: Bearer <token>, scheme in any case", function()
      local p = policy{ secretOrPublicKey = "s" }
      assert_accepted(p:run{ headers = { Authorization = "Bearer " .. tok } }, "alice")
      assert_accepted(p:run{ headers = { Authorization = "bearer " .. tok } }, "alice")
      assert_accepted(p:run{ headers = { Authorization = "BEARER   " .. tok .. "  " } }, "alice")
      assert_refused(p:run{ headers = { Authorization = "Basic dXNlcjpwYXNz" } }, "no token", true)
      assert_refused(p:run{ headers = { Authorization = "Bearer" } }, "no token", true)
      assert_refused(p:run{ headers = { Authorization = tok } }, "no token", true)
      assert_refused(p:run{ path = "/?access_token=" .. tok }, "no token", true)
      assert_refused(p:run{ headers = { ["X-Token"] = tok } }, "no token", true)
    end)

    -- "Bearer <token>" is taken apart without a pattern; anything else
    -- falls back to the pattern, with the same answers
    it("authBearer: a tab, a second word, an empty token", function()
      local p = policy{ secretOrPublicKey = "s" }
      assert_accepted(p:run{ headers = { Authorization = "Bearer\t" .. tok } }, "alice")
      assert_refused(p:run{ headers = { Authorization = "Bearer " .. tok .. " x" } }, "no token", true)
      assert_refused(p:run{ headers = { Authorization = "Bearer " .. tok .. "\tx" } }, "no token", true)
      assert_refused(p:run{ headers = { Authorization = "Bearer  " } }, "no token", true)
      assert_refused(p:run{ headers = { Authorization = "Bearerx " .. tok } }, "no token", true)
      assert_refused(p:run{ headers = { Authorization = "Beare " .. tok } }, "no token", true)
    end)

    it("header: the named header (any case), nothing else", function()
      local p = policy{ secretOrPublicKey = "s", jwtExtractor = "header", jwtExtractorField = "X-Api-Token" }
      assert_accepted(p:run{ headers = { ["x-api-token"] = tok } }, "alice")
      assert_accepted(p:run{ headers = { ["X-API-TOKEN"] = tok } }, "alice")
      assert_refused(p:run{ headers = { Authorization = "Bearer " .. tok } }, "no token", true)
      assert_refused(p:run{ headers = { ["x-api-token"] = tok .. "x" } }, nil)
    end)

    it("query: the named parameter among others", function()
      local p = policy{ secretOrPublicKey = "s", jwtExtractor = "query", jwtExtractorField = "access_token" }
      assert_accepted(p:run{ path = "/orders?access_token=" .. tok }, "alice")
      assert_accepted(p:run{ path = "/orders?a=1&access_token=" .. tok .. "&b=2" }, "alice")
      assert_refused(p:run{ path = "/orders?access_token=" }, "no token", true)
      assert_refused(p:run{ path = "/orders?token=" .. tok }, "no token", true)
      assert_refused(p:run{ path = "/orders", headers = { Authorization = "Bearer " .. tok } }, "no token", true)
    end)

    it("authScheme: Authorization: <scheme> <token>, scheme in any case", function()
      local p = policy{ secretOrPublicKey = "s", jwtExtractor = "authScheme", jwtExtractorField = "JWT" }
      assert_accepted(p:run{ headers = { Authorization = "JWT " .. tok } }, "alice")
      assert_accepted(p:run{ headers = { Authorization = "jwt " .. tok } }, "alice")
      assert_refused(p:run{ headers = { Authorization = "Bearer " .. tok } }, "no token", true)
    end)
  end)

  describe("passThrough", function()
    it("lets a request without a token continue; req.user stays nil", function()
      local p = policy{ secretOrPublicKey = "s", passThrough = true }
      local res = p:run{ path = "/menu" }
      assert.equal(200, res.status)
      assert.is_true(res.continued)
      assert.is_nil(res.req.user)
      assert.is_nil(res.upstream.headers["eg-consumer-id"])
    end)

    it("lets a request with an invalid token continue; req.user stays nil", function()
      local p = policy{ secretOrPublicKey = "s", passThrough = true }
      for _, t in ipairs{ jwt.sign({ sub = "a" }, "wrong", "HS256"), jwt.none({ sub = "admin" }),
                          jwt.sign({ sub = "a", exp = now() - 60 }, "s", "HS256"), "garbage" } do
        local res = bearer(p, t)
        assert.equal(200, res.status)
        assert.is_true(res.continued)
        assert.is_nil(res.req.user)
        assert.is_nil(res.upstream.headers["eg-consumer-id"])
      end
    end)

    it("still sets req.user for a valid token", function()
      local p = policy{ secretOrPublicKey = "s", passThrough = true }
      assert_accepted(bearer(p, jwt.sign({ sub = "alice" }, "s", "HS256")), "alice")
    end)

    it("never forwards a client's own eg-consumer-id for an anonymous request", function()
      local p = policy{ secretOrPublicKey = "s", passThrough = true }
      local res = p:run{ path = "/menu", headers = { ["eg-consumer-id"] = "admin" } }
      assert.equal(200, res.status)
      assert.is_nil(res.upstream.headers["eg-consumer-id"])
    end)

    it("authenticated / anonymous conditions follow req.user", function()
      local gw = testing.gateway([[
http: { port: 0 }
apiEndpoints:
  api: { paths: '/*' }
policies: [jwt, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - jwt:
          - action: { secretOrPublicKey: s3cret, checkCredentialExistence: false, passThrough: true }
      - terminate:
          - condition: { name: authenticated }
            action: { statusCode: 200, message: member }
          - condition: { name: anonymous }
            action: { statusCode: 203, message: guest }
]])
      local res = gw:request{ path = "/x", headers = { Authorization = "Bearer " ..
        jwt.sign({ sub = "a" }, "s3cret", "HS256") } }
      assert.equal(200, res.status)
      assert.equal("member", res.body)
      res = gw:request{ path = "/x" }
      assert.equal(203, res.status)
      assert.equal("guest", res.body)
      res = gw:request{ path = "/x", headers = { Authorization = "Bearer " .. jwt.none({ sub = "a" }) } }
      assert.equal(203, res.status)
    end)
  end)

  describe("verified-token cache", function()
    -- The cache is proven by changing the instance's verification options
    -- behind its back: a cached token is still accepted (no verification
    -- ran), a token not in the cache meets the new options.
    local function forbid_all_but_es512(p)
      p.instance.opts.algorithms = 256 -- ES512 only: HS256 now fails verification
    end

    it("accepts a cached token without verifying it again", function()
      local p = policy{ secretOrPublicKey = "s" }
      local tok = jwt.sign({ sub = "alice", exp = now() + 600 }, "s", "HS256")
      assert_accepted(bearer(p, tok), "alice")
      forbid_all_but_es512(p)
      assert_accepted(bearer(p, tok), "alice")
      assert_refused(bearer(p, jwt.sign({ sub = "bob", exp = now() + 600 }, "s", "HS256")),
        "algorithm not allowed")
    end)

    it("cacheSize 0 disables it: every request verifies", function()
      local p = policy{ secretOrPublicKey = "s", cacheSize = 0 }
      local tok = jwt.sign({ sub = "alice", exp = now() + 600 }, "s", "HS256")
      assert_accepted(bearer(p, tok), "alice")
      forbid_all_but_es512(p)
      assert_refused(bearer(p, tok), "algorithm not allowed")
      assert.equal(0, p.instance.cached)
    end)

    it("keeps a token until its exp, not after: refused once the clock passes exp", function()
      local p = policy{ secretOrPublicKey = "s" }
      local tok = jwt.sign({ sub = "alice", exp = now() + 100 }, "s", "HS256")
      assert_accepted(bearer(p, tok), "alice")
      testing.clock.advance(50)
      assert_accepted(bearer(p, tok), "alice")
      testing.clock.advance(51)
      assert_refused(bearer(p, tok), "token expired")
      assert.equal(0, p.instance.cached)
    end)

    it("a cached token expires at exp exactly, as a verified one does (RFC 7519 4.1.4)", function()
      local p = policy{ secretOrPublicKey = "s" }
      local exp = now() + 100
      local tok = jwt.sign({ sub = "alice", exp = exp }, "s", "HS256")
      assert_accepted(bearer(p, tok), "alice")
      testing.clock.set(exp)
      assert_refused(bearer(p, tok), "token expired")
    end)

    it("honours leeway for cached tokens as verification does", function()
      local p = policy{ secretOrPublicKey = "s", leeway = 30 }
      local tok = jwt.sign({ sub = "alice", exp = now() + 10 }, "s", "HS256")
      assert_accepted(bearer(p, tok), "alice")
      testing.clock.advance(25) -- past exp, within leeway
      assert_accepted(bearer(p, tok), "alice")
      testing.clock.advance(20) -- past exp + leeway
      assert_refused(bearer(p, tok), "token expired")
    end)

    it("a token without exp stays cached", function()
      local p = policy{ secretOrPublicKey = "s" }
      local tok = jwt.sign({ sub = "alice" }, "s", "HS256")
      assert_accepted(bearer(p, tok), "alice")
      forbid_all_but_es512(p)
      testing.clock.advance(86400 * 365)
      assert_accepted(bearer(p, tok), "alice")
    end)

    it("never caches a refused token (nbf in the future is accepted later)", function()
      local p = policy{ secretOrPublicKey = "s" }
      local tok = jwt.sign({ sub = "alice", nbf = now() + 10 }, "s", "HS256")
      assert_refused(bearer(p, tok), "token not yet valid")
      assert.equal(0, p.instance.cached)
      testing.clock.advance(11)
      assert_accepted(bearer(p, tok), "alice")
      assert.equal(1, p.instance.cached)
      local bad = jwt.bad_signature(tok)
      assert_refused(bearer(p, bad), "bad signature")
      assert_refused(bearer(p, bad), "bad signature")
      assert.equal(1, p.instance.cached)
    end)

    it("is bounded by cacheSize", function()
      local p = policy{ secretOrPublicKey = "s", cacheSize = 3 }
      for i = 1, 10 do
        assert_accepted(bearer(p, jwt.sign({ sub = "u" .. i }, "s", "HS256")), "u" .. i)
        assert(p.instance.cached <= 3, "cached " .. p.instance.cached)
      end
    end)

    it("gives each request the claims of its own token", function()
      local p = policy{ secretOrPublicKey = "s" }
      local ta = jwt.sign({ sub = "alice" }, "s", "HS256")
      local tb = jwt.sign({ sub = "bob" }, "s", "HS256")
      for _ = 1, 3 do
        assert.equal("alice", bearer(p, ta).req.user.sub)
        assert.equal("bob", bearer(p, tb).req.user.sub)
      end
    end)
  end)
end)
