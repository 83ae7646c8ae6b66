-- jwt: verifies a JSON Web Token. Express Gateway's options, same names:
--
--   - jwt:
--       - action:
--           secretOrPublicKeyFile: keys/demo.pub     # or secretOrPublicKey: <PEM or secret>
--           checkCredentialExistence: false
--           audience: [api]                        # optional
--           issuer: https://issuer.example         # optional
--           algorithms: [RS256]                    # optional: default, what the key verifies
--           jwtExtractor: authBearer               # header, query, authScheme
--           jwtExtractorField: ...                 # the header, query parameter or scheme
--           passThrough: false                     # let invalid/missing tokens through
--           leeway: 0                              # seconds of clock skew for exp/nbf
--           cacheSize: 10000                       # verified tokens kept per worker (0: off)
--
-- Verification runs in C (runtime/jwt.c) against a key parsed once at
-- load. On success req.user holds the claims (read-only: shared by cached
-- hits), `authenticated` holds, and the consumer id (claim `id`, else
-- `sub`) goes upstream as eg-consumer-id. On failure: 401 Unauthorized,
-- WWW-Authenticate: Bearer error="invalid_token", and the reason in the
-- access log's "error".
--
-- Or the keys of an identity provider, as a JSON Web Key Set:
--
--   - jwt:
--       - action:
--           jwksUri: https://idp.example/.well-known/jwks.json
--           jwksRefreshInterval: 300000            # ms between refreshes (default 5 min)
--           jwksTimeout: 5000                      # ms: the fetch, and how long requests wait for it
--           jwksCaFile: certs/idp-ca.pem           # optional: a private CA (relative to the config)
--           checkCredentialExistence: false
--
-- The set is fetched over HTTPS without blocking the worker (tollgate.jwks:
-- a timer runs tollgate.http), when the config loads and then every
-- jwksRefreshInterval; each worker fetches its own copy. RSA (n, e), EC
-- (P-256/384/521: x, y) and oct (k: an HMAC secret) keys are used; a key's
-- "alg" restricts it to that algorithm, and keys whose "use" is not "sig"
-- are skipped. The token's kid picks the key; a token without a kid is
-- checked against every key of its algorithm's type. A kid the set does
-- not have makes the worker fetch the set again (at most once per 10 s,
-- one fetch at a time: the requests that need it wait, up to jwksTimeout),
-- then the token is checked again; still unknown, 401. A fetch that fails
-- (connection, TLS, status, bad JSON, no usable key) is logged and the
-- last good set is kept; when the set changes, the verified-token cache is
-- cleared, so a token whose key was removed is refused from then on.
-- Until a first set is fetched, requests wait for the fetch in flight (up
-- to jwksTimeout), then get 503 Service Unavailable (with passThrough:
-- continue anonymously), and the access log says why. jwksUri must be
-- https://; http:// is accepted for 127.0.0.1 and localhost only, with a
-- warning.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local core = require "tollgate.core"
local config = require "tollgate.config"
local jwks = require "tollgate.jwks"

local C = core.C
local ffi_string = ffi.string
local sub, lower, match, find = string.sub, string.lower, string.match, string.find
local bor = require("bit").bor
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local ALG_BITS = {
    HS256 = 1, HS384 = 2, HS512 = 4, RS256 = 8, RS384 = 16, RS512 = 32,
    ES256 = 64, ES384 = 128, ES512 = 256,
}
local REASON_OK = 0
local REASON_NO_KEY = 3

local UNAUTHORIZED_HEADERS_BAD = {
    ["Content-Type"] = "text/plain; charset=utf-8",
    ["WWW-Authenticate"] = 'Bearer error="invalid_token"',
}
local UNAUTHORIZED_HEADERS_NONE = {
    ["Content-Type"] = "text/plain; charset=utf-8",
    ["WWW-Authenticate"] = "Bearer",
}
local UNAVAILABLE_HEADERS = {
    ["Content-Type"] = "text/plain; charset=utf-8",
}

-- http:// is for a key set served on this machine (tests, a sidecar)
local LOCAL_HOSTS = { ["127.0.0.1"] = true, ["localhost"] = true, ["[::1]"] = true }

local function list(v)
    if v == nil then return nil end
    if type(v) == "table" then return v end
    return { v }
end

-- NUL-separated list ending with an empty string, for tg_jwt_opts_t.
local function nul_list(v)
    local l = list(v)
    if not l or #l == 0 then return nil end
    local parts = {}
    for i, s in ipairs(l) do parts[i] = tostring(s) end
    return table.concat(parts, "\0") .. "\0\0"
end

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s, rerr = f:read("*a")
    f:close()
    if not s then return nil, path .. ": " .. tostring(rerr or "cannot be read") end
    return s
end

-- jwksUri and friends: the key set's source, or nil, err.
local function jwks_source(conf, env, self)
    local u, uerr = config.parse_url(conf.jwksUri)
    if not u then return nil, "jwksUri: " .. uerr end
    if u.scheme ~= "https" then
        if not LOCAL_HOSTS[u.host] then
            return nil, "jwksUri: the key set must come over https:// (http:// is accepted " ..
                "for 127.0.0.1 and localhost only)"
        end
        if env.warn then
            env.warn((env.id or "jwt") .. ": jwksUri " .. conf.jwksUri .. " is plain http: " ..
                "fine on this machine, never across a network")
        end
    end
    local ca
    if conf.jwksCaFile then
        if u.scheme ~= "https" then
            return nil, "jwksCaFile: only used with an https:// jwksUri"
        end
        ca = conf.jwksCaFile
        if sub(ca, 1, 1) ~= "/" then ca = env.dir .. "/" .. ca end
        if env.watch then env.watch(ca) end -- a renewed CA reloads the config
        local f, ferr = io.open(ca, "rb")
        if not f then return nil, "jwksCaFile: " .. tostring(ferr) end
        f:close()
        local errbuf = ffi.new("char[256]")
        if C.tg_tls_client_get(1, ca, nil, nil, errbuf, 256) == nil then
            return nil, "jwksCaFile: " .. ca .. ": " .. ffi_string(errbuf)
        end
    end
    return jwks.new{
        url = conf.jwksUri,
        timeout = conf.jwksTimeout / 1000,
        interval = conf.jwksRefreshInterval / 1000,
        ca_file = ca,
        name = "jwt " .. tostring(env.id or ""),
        on_change = function()
            -- tokens verified with the old set must be checked again
            self.cache = {}
            self.cached = 0
        end,
    }
end

local function new(conf, env)
    if conf.checkCredentialExistence then
        return nil, "checkCredentialExistence: true checks the token's subject against a " ..
            "consumer store, which tollgate does not have yet; set checkCredentialExistence: false"
    end
    local material = conf.secretOrPublicKey
    if conf.secretOrPublicKeyFile then
        local path = conf.secretOrPublicKeyFile
        if sub(path, 1, 1) ~= "/" then path = env.dir .. "/" .. path end
        if env.watch then env.watch(path) end -- a new key file reloads the config
        local err
        material, err = read_file(path)
        if not material then return nil, "secretOrPublicKeyFile: " .. tostring(err) end
    end

    local self = {
        extractor = conf.jwtExtractor,
        field = conf.jwtExtractorField,
        pass = conf.passThrough,
        leeway = conf.leeway,
        cache_max = conf.cacheSize,
        cache = {},
        cached = 0,
    }
    if self.extractor ~= "authBearer" and not self.field then
        return nil, "jwtExtractorField: required with jwtExtractor " .. self.extractor
    end
    if self.extractor == "header" then self.field = lower(self.field) end

    local algs = 0
    for _, a in ipairs(conf.algorithms or {}) do algs = algs + ALG_BITS[a] end

    if conf.jwksUri then
        local src, err = jwks_source(conf, env, self)
        if not src then return nil, err end
        self.jwks = src
    end

    if core.has_c then
        if not self.jwks then
            local errbuf = ffi.new("char[256]")
            local key = C.tg_jwt_key_new(material, #material, nil, errbuf, 256)
            if key == nil then
                return nil, "secretOrPublicKey" .. (conf.secretOrPublicKeyFile and "File" or "") ..
                    ": " .. ffi_string(errbuf)
            end
            ffi.gc(key, C.tg_jwt_key_free)
            local supported = C.tg_jwt_key_algs(key)
            if algs ~= 0 and bit.band(algs, supported) == 0 then
                return nil, "algorithms: none of them can be verified with this key (" ..
                    (bit.band(supported, 7) ~= 0 and "a secret verifies HS256/384/512" or
                     bit.band(supported, 56) ~= 0 and "an RSA key verifies RS256/384/512" or
                     "this EC key verifies one ES algorithm") .. ")"
            end
            self.key = key
            self.keys = ffi.new("tg_jwt_key_t *[1]", key)
        end
        self.opts = ffi.new("tg_jwt_opts_t")
        self.opts.algorithms = algs
        self.opts.leeway = conf.leeway
        -- keep the option strings alive as long as the instance
        self.aud = nul_list(conf.audience)
        self.iss = nul_list(conf.issuer)
        self.opts.audience = self.aud
        self.opts.issuer = self.iss
        self.result = ffi.new("tg_jwt_result_t")
    end
    -- the first fetch now, then every jwksRefreshInterval (timers: nothing
    -- runs while the config is only being checked)
    if self.jwks then self.jwks:start() end
    return self
end

-- "<scheme> <token>" from an Authorization value: the token when the scheme
-- is `scheme` (lower case), else nil. The usual form (one space, nothing
-- else) is taken apart with plain searches: a Lua pattern over a header of a
-- kilobyte costs more than the rest of the policy with a cached token. A
-- value holds no CR, LF or other control character but tab (the head checks),
-- and has no whitespace at either end.
local function auth_token(h, scheme)
    local n = #scheme
    local token = sub(h, n + 2)
    if sub(h, n + 1, n + 1) == " " and token ~= "" and lower(sub(h, 1, n)) == scheme and
            not find(token, " ", 1, true) and not find(token, "\t", 1, true) then
        return token
    end
    local s, t = match(h, "^%s*(%S+)%s+(%S+)%s*$")
    if s and lower(s) == scheme then return t end
    return nil
end

local lenp = ffi.new("size_t[1]")
local REQUEST = core.REQUEST

-- authBearer's usual case read from the header's bytes in place: "Bearer "
-- (any case), then a token with no space or tab. One Lua string is made,
-- the token's, rather than the header's and then the token's (each the
-- size of the token, on every request). nil: not that form (or no header).
local function bearer_in_place(r)
    local p = C.tg_hdr_get(r, REQUEST, "authorization", 13, lenp)
    if p == nil then return nil end
    local n = tonumber(lenp[0])
    if n < 8 or p[6] ~= 32 or bor(p[0], 32) ~= 98 or bor(p[1], 32) ~= 101 or
            bor(p[2], 32) ~= 97 or bor(p[3], 32) ~= 114 or bor(p[4], 32) ~= 101 or
            bor(p[5], 32) ~= 114 then
        return nil
    end
    local token = ffi_string(p + 7, n - 7)
    if find(token, " ", 1, true) or find(token, "\t", 1, true) then return nil end
    return token
end

local function extract(self, req)
    local ex = self.extractor
    if ex == "authBearer" then
        local token = bearer_in_place(req._r)
        if token then return token end
        local h = req:header("authorization")
        if not h then return nil end
        return auth_token(h, "bearer")
    elseif ex == "header" then
        return req:header(self.field)
    elseif ex == "authScheme" then
        local h = req:header("authorization")
        if not h then return nil end
        return auth_token(h, lower(self.field))
    else -- query
        local q = req.query
        if not q then return nil end
        for pair in q:gmatch("[^&]+") do
            local k, v = match(pair, "^([^=]*)=?(.*)$")
            if k == self.field then return v end
        end
        return nil
    end
end

local function accept(req, claims)
    req.user = claims
    local id = claims.id
    if type(id) ~= "string" and type(id) ~= "number" then id = claims.sub end
    if type(id) == "string" or type(id) == "number" then
        req:set_header("eg-consumer-id", tostring(id))
    else
        req:remove_header("eg-consumer-id") -- never the client's own
    end
end

local function refuse(self, req, why, had_token)
    req:log_error("jwt: " .. why)
    -- a client must not name its own consumer: whatever it sent is dropped
    req:remove_header("eg-consumer-id")
    if self.pass then return nil end
    return 401, "Unauthorized", had_token and UNAUTHORIZED_HEADERS_BAD or UNAUTHORIZED_HEADERS_NONE
end

-- No key set to check the token with (jwksUri, before a first good fetch):
-- the token is not known to be bad, the gateway cannot tell.
local function unavailable(self, req, why)
    req:log_error("jwt: no key set from " .. self.jwks.url .. ": " .. tostring(why))
    req:remove_header("eg-consumer-id")
    if self.pass then return nil end
    return 503, "Service Unavailable", UNAVAILABLE_HEADERS
end

local function access(self, req)
    local token = extract(self, req)
    if not token or token == "" then
        return refuse(self, req, "no token", false)
    end
    local now = core.now()
    local hit = self.cache[token]
    if hit then
        if hit.exp == 0 or now < hit.exp + self.leeway then
            accept(req, hit.claims)
            return nil
        end
        self.cache[token] = nil
        self.cached = self.cached - 1
    end

    local res = self.result
    local reason
    local src = self.jwks
    if src then
        local set = src.set
        if not set then
            local why
            set, why = src:ensure(req) -- may wait for the fetch in flight
            if not set then return unavailable(self, req, why) end
        end
        reason = C.tg_jwt_verify(set.keys, set.n, token, #token, self.opts, core.now(), res)
        -- a kid the set does not have: the key set may have been rotated
        if reason == REASON_NO_KEY and src:refresh_unknown(req) then
            set = src.set
            reason = C.tg_jwt_verify(set.keys, set.n, token, #token, self.opts, core.now(), res)
        end
    else
        reason = C.tg_jwt_verify(self.keys, 1, token, #token, self.opts, now, res)
    end
    if reason ~= REASON_OK then
        return refuse(self, req, ffi_string(C.tg_jwt_reason_text(reason)), true)
    end
    local claims = cjson.decode(ffi_string(res.claims, res.claims_len))
    if type(claims) ~= "table" then
        return refuse(self, req, "claims are not a JSON object", true)
    end
    if self.cache_max > 0 then
        if self.cached >= self.cache_max then
            -- full: start over (cheap, and bounded; hot tokens come back at once)
            self.cache = {}
            self.cached = 0
        end
        self.cache[token] = { claims = claims, exp = res.exp }
        self.cached = self.cached + 1
    end
    accept(req, claims)
    return nil
end

local ALGORITHMS = {}
for name in pairs(ALG_BITS) do ALGORITHMS[#ALGORITHMS + 1] = name end
table.sort(ALGORITHMS)

return {
    name = "jwt",
    schema = {
        description = "Verifies a JSON Web Token and makes its claims the request's user.",
        properties = {
            secretOrPublicKey = { type = "string",
                description = "an HMAC secret, or a PEM public key or certificate" },
            secretOrPublicKeyFile = { type = "string",
                description = "a file with the secret or PEM (relative to the config)" },
            jwksUri = { type = "string",
                description = "an https:// URL serving the identity provider's JSON Web Key " ..
                    "Set; the token's kid picks the key (http:// for 127.0.0.1/localhost only)" },
            jwksRefreshInterval = { type = "integer", default = 300000, minimum = 100,
                description = "milliseconds between fetches of the key set (each worker " ..
                    "fetches its own)" },
            jwksTimeout = { type = "integer", default = 5000, minimum = 100,
                description = "milliseconds: the fetch's inactivity timeout, and how long a " ..
                    "request waits for a fetch in flight" },
            jwksCaFile = { type = "string",
                description = "CA certificates (PEM) to trust for jwksUri instead of the " ..
                    "system's (relative to the config)" },
            jwtExtractor = { type = "string", default = "authBearer",
                enum = { "authBearer", "header", "query", "authScheme" },
                description = "where the token is" },
            jwtExtractorField = { type = "string",
                description = "header name, query parameter or auth scheme for jwtExtractor" },
            audience = { type = { "string", "array" }, items = { type = "string" },
                description = "accepted aud values" },
            issuer = { type = { "string", "array" }, items = { type = "string" },
                description = "accepted iss values" },
            algorithms = { type = "array", items = { type = "string", enum = ALGORITHMS },
                description = "accepted algorithms (default: those the key verifies)" },
            passThrough = { type = "boolean", default = false,
                description = "let requests without a valid token continue (anonymous)" },
            checkCredentialExistence = { type = "boolean", default = true,
                description = "check the subject in a consumer store (not available yet)" },
            leeway = { type = "number", default = 0, minimum = 0,
                description = "seconds of clock skew tolerated for exp and nbf" },
            cacheSize = { type = "integer", default = 10000, minimum = 0,
                description = "verified tokens kept per worker; 0 disables the cache" },
        },
        check = function(conf)
            local n = (conf.secretOrPublicKey and 1 or 0) + (conf.secretOrPublicKeyFile and 1 or 0)
                + (conf.jwksUri and 1 or 0)
            if n ~= 1 then
                return nil, "give exactly one of secretOrPublicKey, secretOrPublicKeyFile " ..
                    "and jwksUri"
            end
            return true
        end,
    },
    new = new,
    access = access,
}
