-- Token minting for the jwt policy specs: keys and certificates made at
-- test time with the openssl CLI, tokens signed HS/RS/ES 256/384/512, and
-- the bad tokens an attacker or a broken client sends.
--
--   local jwt = require "tollgate.testing.jwt"
--   local keys = jwt.keys()          -- made once per module instance (spec file)
--   -- keys.rsa, keys.rsa2 (another RSA key), keys.ec256, keys.ec384, keys.ec521:
--   --   .private (path), .public (path), .public_pem, .private_pem,
--   --   .cert (path, self-signed), .cert_pem, .pkcs1_pem (RSA only: BEGIN RSA PUBLIC KEY)
--   local tok = jwt.sign({ sub = "alice", exp = now + 60 }, keys.rsa, "RS256")
--   local tok = jwt.sign({ sub = "alice" }, "secret", "HS256")    -- a string: an HMAC secret
--   jwt.sign(claims, key, alg, { header = { kid = "k1" } })       -- extra header fields
--   jwt.sign(claims, key, "ES256", { der = true })                -- ES as DER, not JOSE r||s
--
--   -- bad tokens
--   jwt.none(claims)                    -- alg "none", empty signature
--   jwt.none(claims, "sig")             -- alg "none", a signature part anyway
--   jwt.tamper(token)                   -- the payload changed, signature kept
--   jwt.bad_signature(token)            -- a signature byte flipped
--   jwt.hs_with_pem(claims, keys.rsa)   -- HS256 using the RSA public key PEM as the secret
--   jwt.raw(header_json, payload_json, signature_bytes)   -- anything, verbatim
--
--   -- JSON Web Keys (RFC 7517) of the same keys, for key sets (jwksUri)
--   jwt.jwk(keys.rsa, { kid = "k1" })   -- { kty = "RSA", n, e, kid = "k1" }
--   jwt.jwk(keys.ec256, { kid = "e1", alg = "ES256", use = "sig" })  -- { kty = "EC", crv, x, y, ... }
--   jwt.jwk("secret", { kid = "h1" })  -- { kty = "oct", k, kid = "h1" }
--   jwt.jwks{ jwk1, jwk2 }             -- '{"keys":[...]}' (JSON text)
--
--   jwt.b64url(s), jwt.b64url_decode(s), jwt.decode(token) -> header, payload
--   jwt.cleanup()                       -- remove the key directory (teardown)
--
-- Time claims are the caller's: pass exp/nbf computed from the clock the
-- code under test uses (testing.clock.now() in unit specs, os.time() in
-- integration specs).

local cjson = require "cjson"
local process = require "tollgate.testing.process"

local assert, error, type, pairs, tostring = assert, error, type, pairs, tostring
local byte, char, sub, rep, format = string.byte, string.char, string.sub, string.rep,
    string.format
local concat = table.concat
local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift

local quote = process.quote

local _M = {}

-- ---- base64url ------------------------------------------------------------------------------

local ALPHA = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local DEC = {}
for i = 1, 64 do DEC[byte(ALPHA, i)] = i - 1 end

function _M.b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = bor(lshift(a, 16), lshift(b or 0, 8), c or 0)
    local chunk = {
      sub(ALPHA, rshift(n, 18) + 1, rshift(n, 18) + 1),
      sub(ALPHA, band(rshift(n, 12), 63) + 1, band(rshift(n, 12), 63) + 1),
    }
    if b then chunk[3] = sub(ALPHA, band(rshift(n, 6), 63) + 1, band(rshift(n, 6), 63) + 1) end
    if c then chunk[4] = sub(ALPHA, band(n, 63) + 1, band(n, 63) + 1) end
    out[#out + 1] = concat(chunk)
  end
  return concat(out)
end

function _M.b64url_decode(s)
  s = s:gsub("=+$", "")
  local out, acc, bits = {}, 0, 0
  for i = 1, #s do
    local v = DEC[byte(s, i)]
    if not v then return nil, "bad base64url character at " .. i end
    acc = bor(lshift(band(acc, 0xffff), 6), v)
    bits = bits + 6
    if bits >= 8 then
      bits = bits - 8
      out[#out + 1] = char(band(rshift(acc, bits), 255))
    end
  end
  return concat(out)
end

-- header, payload (tables) of a token, without verifying anything.
function _M.decode(token)
  local h, p = token:match("^([^.]*)%.([^.]*)%.")
  return cjson.decode(_M.b64url_decode(h)), cjson.decode(_M.b64url_decode(p))
end

-- ---- openssl --------------------------------------------------------------------------------

local keydir

local function run(cmd)
  local errfile = keydir .. "/stderr"
  local ok = os.execute(cmd .. " 2>" .. quote(errfile))
  if ok ~= true and ok ~= 0 then
    error("openssl failed: " .. cmd .. "\n" .. tostring(process.read_file(errfile)), 3)
  end
end

local function read(path)
  return assert(process.read_file(path))
end

local function tmpfile(name, data)
  local path = keydir .. "/" .. name
  assert(process.write_file(path, data))
  return path
end

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

local function ensure_dir()
  if not keydir then keydir = process.tmpdir("tollgate-jwt") end
  return keydir
end

-- Generates one key pair (and a self-signed certificate) with the CLI.
-- kind: "rsa" (bits: 2048 default) or an EC curve name ("P-256", ...).
function _M.make_key(name, kind, bits)
  ensure_dir()
  local k = { name = name }
  k.private = keydir .. "/" .. name .. ".key"
  k.public = keydir .. "/" .. name .. ".pub"
  k.cert = keydir .. "/" .. name .. ".crt"
  if kind == "rsa" then
    run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:" .. (bits or 2048) ..
      " -out " .. quote(k.private))
    k.pkcs1 = keydir .. "/" .. name .. ".pkcs1.pub"
    run("openssl rsa -in " .. quote(k.private) .. " -RSAPublicKey_out -out " .. quote(k.pkcs1))
    k.pkcs1_pem = read(k.pkcs1)
    k.family = "RS"
  else
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:" .. kind ..
      " -pkeyopt ec_param_enc:named_curve -out " .. quote(k.private))
    k.family = "ES"
    k.curve = kind
    k.ec_bytes = ({ ["P-256"] = 32, ["P-384"] = 48, ["P-521"] = 66 })[kind]
  end
  run("openssl pkey -in " .. quote(k.private) .. " -pubout -out " .. quote(k.public))
  run("openssl req -new -x509 -key " .. quote(k.private) .. " -subj /CN=" .. name ..
    " -days 2 -out " .. quote(k.cert))
  k.private_pem = read(k.private)
  k.public_pem = read(k.public)
  k.cert_pem = read(k.cert)
  return k
end

local keys
-- All the keys the specs use, made on first call (about a second).
function _M.keys()
  if keys then return keys end
  keys = {
    rsa = _M.make_key("rsa", "rsa", 2048),
    rsa2 = _M.make_key("rsa2", "rsa", 2048),
    ec256 = _M.make_key("ec256", "P-256"),
    ec384 = _M.make_key("ec384", "P-384"),
    ec521 = _M.make_key("ec521", "P-521"),
  }
  keys.dir = keydir
  return keys
end

function _M.cleanup()
  if keydir then process.rm_rf(keydir) end
  keydir, keys = nil, nil
end

-- ---- JSON Web Keys ----------------------------------------------------------------------------

-- DER TLV at pos: tag, value start, value length, next position.
local function der_tlv(der, pos)
  local tag = byte(der, pos)
  local l = byte(der, pos + 1)
  pos = pos + 2
  if l >= 0x80 then
    local nb = l - 0x80
    l = 0
    for _ = 1, nb do
      l = l * 256 + byte(der, pos)
      pos = pos + 1
    end
  end
  return tag, pos, l, pos + l
end

-- The public numbers of a key table, as base64url JWK members (cached).
local function public_members(key)
  if key.jwk_members then return key.jwk_members end
  ensure_dir()
  local out = keydir .. "/" .. key.name .. ".der"
  local m
  if key.family == "RS" then
    -- PKCS#1 RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }
    run("openssl rsa -pubin -in " .. quote(key.public) .. " -RSAPublicKey_out -outform DER -out " ..
      quote(out))
    local der = read(out)
    local tag, p = der_tlv(der, 1)
    assert(tag == 0x30, "DER: not a SEQUENCE")
    local t1, n0, nl, nxt = der_tlv(der, p)
    local t2, e0, el = der_tlv(der, nxt)
    assert(t1 == 0x02 and t2 == 0x02, "DER: not two INTEGERs")
    local n = sub(der, n0, n0 + nl - 1):gsub("^%z+", "")
    local e = sub(der, e0, e0 + el - 1):gsub("^%z+", "")
    m = { kty = "RSA", n = _M.b64url(n), e = _M.b64url(e) }
  else
    -- SubjectPublicKeyInfo: the key is the last 1 + 2n bytes, 04 || x || y
    run("openssl pkey -pubin -in " .. quote(key.public) .. " -outform DER -out " .. quote(out))
    local der = read(out)
    local n = key.ec_bytes
    local point = sub(der, -(1 + 2 * n))
    assert(byte(point, 1) == 4, "EC public key not uncompressed")
    m = { kty = "EC", crv = key.curve, x = _M.b64url(sub(point, 2, 1 + n)),
          y = _M.b64url(sub(point, 2 + n)) }
  end
  os.remove(out)
  key.jwk_members = m
  return m
end

-- A JWK of key (a key table: its public half; a string: an oct secret),
-- with opts' members added (kid, alg, use, or anything else; false drops one).
function _M.jwk(key, opts)
  local j = {}
  if type(key) == "string" then
    j.kty, j.k = "oct", _M.b64url(key)
  else
    for k, v in pairs(public_members(key)) do j[k] = v end
  end
  for k, v in pairs(opts or {}) do
    if v == false then j[k] = nil else j[k] = v end
  end
  return j
end

-- A JWK Set's JSON text from a list of JWKs.
function _M.jwks(list)
  local keys_ = {}
  for i, j in pairs(list or {}) do keys_[i] = j end
  if #keys_ == 0 then return '{"keys":[]}' end
  return cjson.encode({ keys = keys_ })
end

-- ---- signing --------------------------------------------------------------------------------

local DIGEST = { ["256"] = "sha256", ["384"] = "sha384", ["512"] = "sha512" }

-- DER ECDSA-Sig-Value (SEQUENCE { INTEGER r, INTEGER s }) to JOSE r || s.
local function der_to_jose(der, n)
  local pos = 1
  local function len()
    local l = byte(der, pos)
    pos = pos + 1
    if l < 0x80 then return l end
    local nb, v = l - 0x80, 0
    for _ = 1, nb do
      v = v * 256 + byte(der, pos)
      pos = pos + 1
    end
    return v
  end
  assert(byte(der, pos) == 0x30, "DER: not a SEQUENCE")
  pos = pos + 1
  len()
  local function int()
    assert(byte(der, pos) == 0x02, "DER: not an INTEGER")
    pos = pos + 1
    local l = len()
    local v = sub(der, pos, pos + l - 1)
    pos = pos + l
    v = v:gsub("^%z+", "")
    assert(#v <= n, "DER: integer too long")
    return rep("\0", n - #v) .. v
  end
  local r = int()
  local s = int()
  return r .. s
end
_M.der_to_jose = der_to_jose

local seq = 0
-- The raw signature of `input` with key (a key table, or a string secret).
function _M.signature(input, key, alg)
  ensure_dir()
  local family, size = alg:match("^(%u%u)(%d%d%d)$")
  local md = assert(DIGEST[size], "unknown algorithm " .. tostring(alg))
  seq = seq + 1
  local inp = tmpfile("input" .. seq, input)
  local out = keydir .. "/sig" .. seq
  if family == "HS" then
    local secret = type(key) == "table" and key.public_pem or key
    run("openssl dgst -" .. md .. " -mac HMAC -macopt hexkey:" .. hex(secret) ..
      " -binary -out " .. quote(out) .. " " .. quote(inp))
  else
    assert(type(key) == "table", alg .. " needs a key table")
    run("openssl dgst -" .. md .. " -sign " .. quote(key.private) .. " -binary -out " ..
      quote(out) .. " " .. quote(inp))
  end
  local sig = read(out)
  os.remove(inp)
  os.remove(out)
  return sig, family
end

-- Encodes a table as compact JSON (cjson; "/" comes out as "\/", which
-- is valid JSON and exercises the verifier's unescaping).
local function json(v)
  if type(v) == "string" then return v end
  return cjson.encode(v)
end

-- A token. claims: a table (or JSON text); key: a key table or an HMAC
-- secret; opts.header: extra header fields (or JSON text replacing the
-- header); opts.der: ES signature left in DER form.
function _M.sign(claims, key, alg, opts)
  opts = opts or {}
  local header
  if type(opts.header) == "string" then
    header = opts.header
  else
    local h = { alg = alg, typ = "JWT" }
    for k, v in pairs(opts.header or {}) do h[k] = v end
    header = json(h)
  end
  local input = _M.b64url(header) .. "." .. _M.b64url(json(claims))
  local sig, family = _M.signature(input, key, alg)
  if family == "ES" and not opts.der then
    sig = der_to_jose(sig, key.ec_bytes)
  end
  return input .. "." .. _M.b64url(sig)
end

-- header and payload JSON text (or tables), and the raw signature bytes.
function _M.raw(header, payload, sig)
  return _M.b64url(json(header)) .. "." .. _M.b64url(json(payload)) .. "." ..
    _M.b64url(sig or "")
end

-- alg "none": no signature (or `sig` when given).
function _M.none(claims, sig)
  return _M.raw({ alg = "none", typ = "JWT" }, claims, sig)
end

-- The payload replaced by `claims` (default: sub changed to "mallory"),
-- the original header and signature kept.
function _M.tamper(token, claims)
  local h, p, s = token:match("^([^.]*)%.([^.]*)%.(.*)$")
  if not claims then
    claims = cjson.decode(_M.b64url_decode(p))
    claims.sub = "mallory"
  end
  return h .. "." .. _M.b64url(json(claims)) .. "." .. s
end

-- The same token with the signature's first byte flipped.
function _M.bad_signature(token)
  local hp, s = token:match("^(.*)%.(.*)$")
  local sig = _M.b64url_decode(s)
  sig = char(band(byte(sig, 1) + 1, 255)) .. sub(sig, 2)
  return hp .. "." .. _M.b64url(sig)
end

-- The classic key-confusion attack: HS256 (or alg) with the public key's
-- PEM text (key.public_pem, or a string) as the HMAC secret.
function _M.hs_with_pem(claims, key, alg)
  local pem = type(key) == "table" and key.public_pem or key
  return _M.sign(claims, pem, alg or "HS256")
end

return _M
