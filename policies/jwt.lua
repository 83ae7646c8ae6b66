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

local ffi = require "ffi"
local cjson = require "cjson.safe"
local core = require "tollgate.core"

local C = core.C
local ffi_string = ffi.string
local sub, lower, match = string.sub, string.lower, string.match
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local ALG_BITS = {
    HS256 = 1, HS384 = 2, HS512 = 4, RS256 = 8, RS384 = 16, RS512 = 32,
    ES256 = 64, ES384 = 128, ES512 = 256,
}
local REASON_OK = 0

local UNAUTHORIZED_HEADERS_BAD = {
    ["Content-Type"] = "text/plain; charset=utf-8",
    ["WWW-Authenticate"] = 'Bearer error="invalid_token"',
}
local UNAUTHORIZED_HEADERS_NONE = {
    ["Content-Type"] = "text/plain; charset=utf-8",
    ["WWW-Authenticate"] = "Bearer",
}

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

local function new(conf, env)
    if conf.checkCredentialExistence then
        return nil, "checkCredentialExistence: true checks the token's subject against a " ..
            "consumer store, which tollgate does not have yet; set checkCredentialExistence: false"
    end
    if conf.jwksUri then
        return nil, "jwksUri: key sets fetched over HTTPS are not supported yet; " ..
            "use secretOrPublicKey or secretOrPublicKeyFile"
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

    if core.has_c then
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
    return self
end

local function extract(self, req)
    local ex = self.extractor
    if ex == "authBearer" then
        local h = req:header("authorization")
        if not h then return nil end
        local scheme, token = match(h, "^%s*(%S+)%s+(%S+)%s*$")
        if scheme and lower(scheme) == "bearer" then return token end
        return nil
    elseif ex == "header" then
        return req:header(self.field)
    elseif ex == "authScheme" then
        local h = req:header("authorization")
        if not h then return nil end
        local scheme, token = match(h, "^%s*(%S+)%s+(%S+)%s*$")
        if scheme and lower(scheme) == lower(self.field) then return token end
        return nil
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
    local reason = C.tg_jwt_verify(self.keys, 1, token, #token, self.opts, now, res)
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
            jwksUri = { type = "string", description = "not supported yet" },
        },
        check = function(conf)
            local n = (conf.secretOrPublicKey and 1 or 0) + (conf.secretOrPublicKeyFile and 1 or 0)
            if n ~= 1 then
                return nil, "give exactly one of secretOrPublicKey and secretOrPublicKeyFile"
            end
            return true
        end,
    },
    new = new,
    access = access,
}
