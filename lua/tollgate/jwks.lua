-- tollgate.jwks: JSON Web Key Sets (RFC 7517) fetched over HTTPS, for the
-- jwt policy's jwksUri.
--
--   local jwks = require "tollgate.jwks"
--   local set, err, skipped = jwks.parse(json_text)
--   -- set.keys (tg_jwt_key_t *[n]), set.n, set.kids, set.fingerprint; or nil, err.
--   -- skipped: a message for each JWK that was left out.
--
--   local src = jwks.new{ url = "https://idp/jwks.json", timeout = 5, interval = 300,
--                         ca_file = nil, name = "jwt ...", on_change = function(set) end }
--   src:start()                      -- in a policy constructor: first fetch, refreshes
--   local set, err = src:ensure(req) -- the current set; before the first one, waits
--   if src:refresh_unknown(req) then -- a token's kid is not in the set: refetch
--       ...                          -- (true when the set changed)
--   end
--
-- Keys are made in C (tg_jwt_key_from_jwk, runtime/jwk.c) from the JWK
-- members cjson decoded. A JWK whose "use" is not "sig", whose key_ops
-- leave out "verify", or that C refuses (bad base64url, a point off its
-- curve, an RSA modulus under 2048 bits, an unknown kty/crv/alg...) is
-- skipped, as are keys beyond the first MAX_KEYS (64) usable ones; a set
-- with no usable key is a failed fetch.
--
-- Fetching never blocks the worker: tollgate.http in a timer run. The
-- first fetch starts when the configuration loads, then one every
-- `interval` seconds; a token with an unknown kid (or a request while there
-- is no set yet) asks for one more, at most once per UNKNOWN_KID_INTERVAL
-- seconds per worker, so junk kids cannot make the gateway hammer the
-- identity provider. One fetch at a time (requests that need its result
-- wait for it, up to `timeout`). A failed fetch keeps the last good set.
-- Each worker fetches its own copy (with -w 4, four fetches a period).
-- Outside the gateway (tollgate.testing) there are no timers: a request
-- that needs a fetch makes it itself, answered by the test's upstream.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local core = require "tollgate.core"
local http = require "tollgate.http"
local timer = require "tollgate.timer"

local C = core.C
local ffi_string = ffi.string
local type, ipairs, tostring, pcall, concat, sort =
    type, ipairs, tostring, pcall, table.concat, table.sort
local gsub = string.gsub

local _M = {
    MAX_KEYS = 64,              -- usable keys kept from one set
    UNKNOWN_KID_INTERVAL = 10,  -- seconds between fetches requests ask for
    POLL = 0.005,               -- seconds between looks at a fetch in flight
}

local errbuf = ffi.new("char[256]")

local function str(v)
    if type(v) == "string" then return v end
    return nil
end

-- One line of text for the log (JSON strings may hold anything).
local function clean(s)
    return (gsub(tostring(s), "%c", "?"))
end

local function describe(i, jwk)
    local kid = type(jwk) == "table" and str(jwk.kid)
    return "keys[" .. i .. "]" .. (kid and (" (kid " .. clean(kid) .. ")") or "")
end

-- JWK text -> a key set. Returns set, nil, skipped; or nil, err, skipped.
function _M.parse(text)
    local doc = cjson.decode(text)
    if type(doc) ~= "table" or type(doc.keys) ~= "table" then
        return nil, "not a JWK set (a JSON object with a \"keys\" array)", {}
    end
    local refs, kids, prints, skipped = {}, {}, {}, {}
    for i, jwk in ipairs(doc.keys) do
        local why
        if type(jwk) ~= "table" then
            why = "not an object"
        elseif jwk.use ~= nil and jwk.use ~= "sig" then
            why = "use is " .. clean(cjson.encode(jwk.use)) .. ", not \"sig\""
        elseif jwk.kid ~= nil and type(jwk.kid) ~= "string" then
            why = "kid is not a string"
        elseif jwk.key_ops ~= nil then
            why = "key_ops does not include \"verify\""
            if type(jwk.key_ops) == "table" then
                for _, op in ipairs(jwk.key_ops) do
                    if op == "verify" then why = nil end
                end
            end
        end
        if not why and #refs >= _M.MAX_KEYS then
            why = "more than " .. _M.MAX_KEYS .. " usable keys"
        end
        if not why then
            local kty, crv, alg = str(jwk.kty), str(jwk.crv), str(jwk.alg)
            if jwk.alg ~= nil and not alg then alg = "(not a string)" end
            local key = C.tg_jwt_key_from_jwk(kty, crv, str(jwk.n), str(jwk.e), str(jwk.x),
                str(jwk.y), str(jwk.k), str(jwk.kid), alg, errbuf, 256)
            if key == nil then
                why = clean(ffi_string(errbuf))
            else
                refs[#refs + 1] = ffi.gc(key, C.tg_jwt_key_free)
                kids[#kids + 1] = str(jwk.kid) or "(no kid)"
                prints[#prints + 1] = concat({ str(jwk.kid) or "", kty or "", crv or "",
                    alg or "", str(jwk.n) or "", str(jwk.e) or "", str(jwk.x) or "",
                    str(jwk.y) or "", str(jwk.k) or "" }, "\0")
            end
        end
        if why then skipped[#skipped + 1] = describe(i, jwk) .. ": " .. why end
    end
    if #refs == 0 then
        local err = "no usable keys"
        if #skipped > 0 then err = err .. " (" .. concat(skipped, "; ") .. ")" end
        return nil, err, skipped
    end
    local arr = ffi.new("tg_jwt_key_t *[?]", #refs)
    for i, k in ipairs(refs) do arr[i - 1] = k end
    -- the same keys in another order are the same set
    sort(prints)
    return { keys = arr, n = #refs, refs = refs, kids = kids,
             fingerprint = concat(prints, "\1") }, nil, skipped
end

-- ---- a source: one jwksUri, fetched by this worker ----------------------------------------

local Source = {}
Source.__index = Source

-- opts: url, timeout and interval (seconds), ca_file, name (for the log),
-- on_change(set) (the set is another one: clear what was verified with the old).
function _M.new(opts)
    return setmetatable({
        url = opts.url, timeout = opts.timeout, interval = opts.interval,
        ca_file = opts.ca_file, name = opts.name or "jwt", on_change = opts.on_change,
        set = nil,              -- the last good set
        fetched_at = nil,       -- when it was fetched
        version = 0,            -- bumped when the set changes
        flight = nil,           -- { deadline }: a fetch in progress
        last_error = nil,       -- why the last fetch failed (nil: it did not)
        last_demand = nil,      -- when a request last asked for a fetch
        fetches = 0,            -- fetches made (for specs)
        -- timers run the fetches inside the gateway; elsewhere the request does
        spawns = core.in_gateway,
    }, Source)
end

local function say(level, src, msg)
    core[level](src.name .. ": JWKS " .. src.url .. ": " .. clean(msg))
end

function Source:install(set, skipped)
    local old = self.set
    local now = core.now()
    self.fetched_at = now
    if old and old.fingerprint == set.fingerprint then
        if self.last_error then
            say("log_info", self, "fetched again after a failure; the key set is unchanged")
        end
        self.last_error = nil
        return
    end
    self.set = set
    self.version = self.version + 1
    local what = #set.kids .. " key" .. (#set.kids == 1 and "" or "s") .. " (" ..
        concat(set.kids, ", ") .. ")"
    if #skipped > 0 then what = what .. "; skipped " .. concat(skipped, "; ") end
    if not old then
        say("log_info", self, "key set loaded: " .. what)
    else
        say("log_info", self, (self.last_error and "fetched again after a failure; " or "") ..
            "key set changed: " .. what .. "; verified-token cache cleared")
    end
    self.last_error = nil
    if old and self.on_change then self.on_change(set) end
end

function Source:fail(err)
    self.last_error = err
    if self.set then
        say("log_warn", self, err .. "; keeping the last good key set (fetched " ..
            tostring(math.floor(core.now() - self.fetched_at)) .. " s ago)")
    else
        say("log_error", self, err .. "; no key set yet: tokens cannot be verified (503)")
    end
end

-- One fetch, in the calling coroutine (a timer run, or a request outside
-- the gateway). Never raises.
function Source:fetch()
    local flight = self.flight
    if not flight then
        flight = { deadline = core.now() + self.timeout + 60 }
        self.flight = flight
    end
    self.fetches = self.fetches + 1
    local ok, perr = pcall(function()
        local res, err = http.request{ url = self.url, timeout = self.timeout,
            ca_file = self.ca_file,
            headers = { Accept = "application/jwk-set+json, application/json" } }
        if not res then
            return self:fail("fetch failed: " .. tostring(err))
        end
        if res.status ~= 200 then
            return self:fail("fetch failed: HTTP status " .. tostring(res.status))
        end
        local set, perr2, skipped = _M.parse(res.body)
        if not set then return self:fail("bad key set: " .. perr2) end
        self:install(set, skipped)
    end)
    if not ok then self:fail("fetch failed: " .. tostring(perr)) end
    if self.flight == flight then self.flight = nil end
end

function Source:in_flight()
    local f = self.flight
    if f and core.now() >= f.deadline then
        -- a fetch that never finished (its timer stopped by a reload)
        self.flight = nil
        f = nil
    end
    return f ~= nil
end

-- Starts a fetch: in a timer run (never tied to a client that may go away),
-- or here and now outside the gateway.
function Source:spawn()
    if self:in_flight() then return end
    if not self.spawns then return self:fetch() end
    self.flight = { deadline = core.now() + self.timeout + 60 }
    timer.after(0, function() self:fetch() end)
end

-- In a policy constructor: the first fetch now, then every interval.
function Source:start()
    if not self.spawns then return end -- outside the gateway: on the first request
    self:spawn()
    timer.every(self.interval, function()
        if not self:in_flight() then self:fetch() end
    end)
end

-- Waits (waiter:sleep) until the fetch in flight ends, at most timeout.
function Source:wait(waiter)
    local f = self.flight
    local deadline = core.now() + self.timeout
    while f and self.flight == f and core.now() < deadline and core.now() < f.deadline do
        waiter:sleep(_M.POLL)
    end
end

-- A fetch a request asks for: one per UNKNOWN_KID_INTERVAL at most.
function Source:demand()
    local now = core.now()
    if self.last_demand and now - self.last_demand < _M.UNKNOWN_KID_INTERVAL then
        return false
    end
    self.last_demand = now
    self:spawn()
    return true
end

-- The current set; without one, waits for the fetch in flight (or asks
-- for one). Returns the set, or nil and why there is none.
function Source:ensure(waiter)
    if self.set then return self.set end
    if self:in_flight() then
        self:wait(waiter)
    elseif self.fetches == 0 then
        -- the first fetch (outside the gateway, where start() made none)
        self:spawn()
        self:wait(waiter)
    elseif self:demand() then
        self:wait(waiter)
    end
    if self.set then return self.set end
    if self:in_flight() then
        return nil, "the key set is still being fetched (more than " .. self.timeout .. " s)"
    end
    return nil, self.last_error or "no key set fetched yet"
end

-- A token named a kid the set does not have: fetch again (or wait for the
-- fetch in flight) unless one was asked for less than UNKNOWN_KID_INTERVAL
-- ago. Returns true when the set changed meanwhile.
function Source:refresh_unknown(waiter)
    local version = self.version
    if self:in_flight() or self:demand() then
        self:wait(waiter)
    end
    return self.version ~= version
end

return _M
