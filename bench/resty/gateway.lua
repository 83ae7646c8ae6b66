-- bench/resty/gateway.lua: the "OpenResty-style" gateway of bench/policies.sh.
--
-- nginx + lua-nginx-module doing what Tollgate's rate-limit -> jwt -> proxy
-- pipeline does, the way an OpenResty user would write it:
--
--   - rate limit: a fixed-window counter per client address in a
--     lua_shared_dict (incr with init 0 and the window as TTL, so the window
--     starts at the key's first request, as Tollgate's does), with the
--     X-RateLimit-Limit/-Remaining/-Reset headers Tollgate sends by default,
--     and 429 + Retry-After over the limit;
--   - JWT: RS256 only, against a public key parsed ONCE (init()) through
--     libcrypto via LuaJIT's FFI: per request, base64url-decode header,
--     signature and claims (ngx.base64), check the header's alg, verify with
--     EVP_DigestVerifyInit/EVP_DigestVerify (SHA-256), decode the claims with
--     cjson and check exp/nbf; the consumer id (claim id, else sub) goes
--     upstream as eg-consumer-id, as Tollgate sends it;
--   - failures: 401 "Unauthorized" (text/plain) with
--     WWW-Authenticate: Bearer error="invalid_token", like Tollgate;
--   - then nginx's own proxy_pass with a keepalive pool (nginx.conf).
--
-- nginx.conf:
--   lua_shared_dict ratelimit 1m;
--   init_by_lua_block { require("gateway").init{ key_file = "...", max = N, window = S } }
--   location / { access_by_lua_block { require("gateway").access() } proxy_pass ...; }

local ffi = require "ffi"
local cjson = require "cjson.safe"
local b64 = require "ngx.base64"

local ngx = ngx
local decode_base64url = b64.decode_base64url
local find, sub, lower, match = string.find, string.sub, string.lower, string.match
local type, tostring = type, tostring
local ceil = math.ceil

ffi.cdef [[
typedef struct bio_st BIO;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct engine_st ENGINE;

BIO *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(BIO *a);
EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);
int EVP_PKEY_get_base_id(const EVP_PKEY *pkey);
const EVP_MD *EVP_sha256(void);
EVP_MD_CTX *EVP_MD_CTX_new(void);
int EVP_MD_CTX_reset(EVP_MD_CTX *ctx);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                         ENGINE *e, EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const char *sig, size_t siglen,
                     const char *tbs, size_t tbslen);
unsigned long ERR_get_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
void ERR_clear_error(void);
]]

local EVP_PKEY_RSA = 6

local crypto do
    local ok
    ok, crypto = pcall(ffi.load, "libcrypto.so.3")
    if not ok then crypto = ffi.load("crypto") end
end

local _M = {}

-- set by init(), in the master; inherited by the worker
local pkey, sha256, mdctx
local max, window
local dict

local UNAUTHORIZED = "Unauthorized"
local BAD_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'
local TOO_MANY = "Too many requests, please try again later."

local function ssl_error()
    local buf = ffi.new("char[256]")
    crypto.ERR_error_string_n(crypto.ERR_get_error(), buf, 256)
    crypto.ERR_clear_error()
    return ffi.string(buf)
end

-- Called once, from init_by_lua_block: parses the PEM public key (the only
-- time it is parsed) and reads the limits.
--   opts.key_file  PEM public key (RSA)
--   opts.max       requests per window per client address
--   opts.window    window length in seconds
--   opts.dict      lua_shared_dict name (default "ratelimit")
function _M.init(opts)
    local f = assert(io.open(opts.key_file, "rb"))
    local pem = f:read("*a")
    f:close()
    local bio = crypto.BIO_new_mem_buf(pem, #pem)
    if bio == nil then error("BIO_new_mem_buf: " .. ssl_error()) end
    local k = crypto.PEM_read_bio_PUBKEY(bio, nil, nil, nil)
    crypto.BIO_free(bio)
    if k == nil then error(opts.key_file .. ": PEM_read_bio_PUBKEY: " .. ssl_error()) end
    if crypto.EVP_PKEY_get_base_id(k) ~= EVP_PKEY_RSA then
        error(opts.key_file .. ": not an RSA public key (RS256 needs one)")
    end
    pkey = k                            -- kept for the life of the process: never freed
    sha256 = crypto.EVP_sha256()
    mdctx = crypto.EVP_MD_CTX_new()     -- one per process, reset after each use
    max = assert(tonumber(opts.max), "init: max")
    window = assert(tonumber(opts.window), "init: window")
    dict = ngx.shared[opts.dict or "ratelimit"]
    if not dict then error("lua_shared_dict " .. (opts.dict or "ratelimit") .. " is not declared") end
end

-- RSA-SHA256 over `data` (the token up to the second dot) against the key.
local function rs256_ok(data, sig)
    local ok = crypto.EVP_DigestVerifyInit(mdctx, nil, sha256, nil, pkey) == 1
        and crypto.EVP_DigestVerify(mdctx, sig, #sig, data, #data) == 1
    crypto.EVP_MD_CTX_reset(mdctx)
    crypto.ERR_clear_error()            -- a failed verify leaves an error queued
    return ok
end

local function json_part(s)
    local raw = decode_base64url(s)
    if not raw then return nil end
    local v = cjson.decode(raw)
    if type(v) ~= "table" then return nil end
    return v
end

-- Returns the claims, or nil and why.
local function verify(token, now)
    local d1 = find(token, ".", 1, true)
    local d2 = d1 and find(token, ".", d1 + 1, true)
    if not d2 or d1 == 1 or d2 == d1 + 1 or find(token, ".", d2 + 1, true) then
        return nil, "malformed token"
    end
    if d2 == #token then return nil, "algorithm not allowed" end   -- alg none: no signature
    local header = json_part(sub(token, 1, d1 - 1))
    if not header then return nil, "malformed token" end
    if header.alg ~= "RS256" then return nil, "algorithm not allowed" end
    local sig = decode_base64url(sub(token, d2 + 1))
    if not sig or #sig == 0 then return nil, "malformed token" end
    if not rs256_ok(sub(token, 1, d2 - 1), sig) then return nil, "bad signature" end
    local claims = json_part(sub(token, d1 + 1, d2 - 1))
    if not claims then return nil, "malformed token" end
    local exp, nbf = claims.exp, claims.nbf
    if (exp ~= nil and type(exp) ~= "number") or (nbf ~= nil and type(nbf) ~= "number") then
        return nil, "malformed token"
    end
    if exp and now > exp then return nil, "token expired" end
    if nbf and now < nbf then return nil, "token not yet valid" end
    return claims
end

local function reject(status, body, extra_name, extra_value, why)
    ngx.log(ngx.INFO, why)              -- below error_log's level in the bench: not written
    ngx.status = status
    local h = ngx.header
    h["Content-Type"] = "text/plain; charset=utf-8"
    h["Content-Length"] = #body         -- as Tollgate sends it (else nginx would chunk it)
    h[extra_name] = extra_value
    ngx.print(body)
    return ngx.exit(ngx.HTTP_OK)        -- the response is sent: end the request here
end

-- access_by_lua_block: rate limit, then the token; returning lets proxy_pass run.
function _M.access()
    local now = ngx.now()

    -- rate limit (fixed window per client address, from its first request)
    local key = "rl:" .. ngx.var.remote_addr
    local n, err = dict:incr(key, 1, 0, window)
    if not n then
        ngx.log(ngx.ERR, "rate limit: ", err)
        return ngx.exit(ngx.HTTP_INTERNAL_SERVER_ERROR)
    end
    local ttl = dict:ttl(key)
    if not ttl or ttl < 0 then ttl = window end
    local h = ngx.header
    h["X-RateLimit-Limit"] = max
    h["X-RateLimit-Remaining"] = n < max and max - n or 0
    h["X-RateLimit-Reset"] = ceil(now + ttl)
    if n > max then
        return reject(429, TOO_MANY, "Retry-After", ceil(ttl), "rate limit exceeded")
    end

    -- JWT (Authorization: Bearer <token>)
    local auth = ngx.var.http_authorization
    local scheme, token
    if auth then scheme, token = match(auth, "^%s*(%S+)%s+(%S+)%s*$") end
    if not token or lower(scheme) ~= "bearer" then
        return reject(401, UNAUTHORIZED, "WWW-Authenticate", "Bearer", "jwt: no token")
    end
    local claims, why = verify(token, now)
    if not claims then
        return reject(401, UNAUTHORIZED, "WWW-Authenticate", BAD_TOKEN_CHALLENGE, "jwt: " .. why)
    end
    local id = claims.id
    if id == nil then id = claims.sub end
    if id ~= nil and type(id) ~= "table" then
        ngx.req.set_header("eg-consumer-id", tostring(id))
    end
end

return _M
