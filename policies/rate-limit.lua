-- rate-limit: limits requests per key in a time window. Express Gateway's
-- options, same names and defaults:
--
--   - rate-limit:
--       - action:
--           max: 10                 # requests per window (0: no limit)
--           windowMs: 1000
--           rateLimitBy: "${req.ip}"   # or "${req.headers['x-api-key']}", "${req.user.sub}",
--                                      # or { lua: "req:header('x-key') or req.ip" }
--           statusCode: 429
--           message: Too many requests, please try again later.
--           headers: true           # X-RateLimit-Limit/-Remaining/-Reset on every response
--           algorithm: fixed        # or sliding (weighted previous window: fairer at edges)
--           delayAfter: 5           # optional: slow down instead of refusing at first
--           delayMs: 100            # ... by this much per request over delayAfter
--
-- Counters live in the shared dictionary: one limit holds across all
-- workers of a node, counters survive a config reload, and each policy step
-- has its own (keyed by its place in the config). The fixed window starts
-- at a key's first request, as Express Gateway's Redis store does. Unlike
-- Express Gateway, nothing is delayed unless delayAfter is set.
-- A refused request gets statusCode with Retry-After; the body is JSON
-- {"message": ...} when the client prefers JSON, the plain message otherwise.

local cjson = require "cjson.safe"
local core = require "tollgate.core"
local shdict = require "tollgate.shdict"
local template = require "tollgate.template"

local ceil, floor, max = math.ceil, math.floor, math.max
local tostring, tonumber = tostring, tonumber
local find, lower, match, gmatch = string.find, string.lower, string.match, string.gmatch

-- Accept negotiation between JSON and text, as Express's res.format picks
-- between json and html: the higher q wins; then the more specific range;
-- then the one listed first.
local function prefers_json(accept)
    if not accept then return false end
    local best = { json = { q = 0, spec = 0, idx = 99 }, text = { q = 0, spec = 0, idx = 99 } }
    local idx = 0
    for range in gmatch(accept, "[^,]+") do
        idx = idx + 1
        local mt = lower(match(range, "^%s*([^;%s]+)") or "")
        local q = tonumber(match(range, ";%s*q=([%d%.]+)")) or 1
        local function consider(kind, spec)
            local b = best[kind]
            if spec > b.spec or (spec == b.spec and idx < b.idx) then
                b.q, b.spec, b.idx = q, spec, idx
            end
        end
        if mt == "application/json" or find(mt, "%+json$") then consider("json", 3) end
        if mt == "text/html" or mt == "text/plain" then consider("text", 3) end
        if mt == "application/*" then consider("json", 2) end
        if mt == "text/*" then consider("text", 2) end
        if mt == "*/*" then consider("json", 1); consider("text", 1) end
    end
    local j, t = best.json, best.text
    if j.q <= 0 then return false end
    if j.q ~= t.q then return j.q > t.q end
    if j.spec ~= t.spec then return j.spec > t.spec end
    return j.idx < t.idx
end

local function new(conf, env)
    local key_fn
    if conf.rateLimitBy ~= nil then
        local err
        key_fn, err = template.compile_value(conf.rateLimitBy, "template", "rateLimitBy")
        if not key_fn then return nil, "rateLimitBy: " .. err end
    end
    if (conf.delayAfter == nil) ~= (conf.delayMs == nil) then
        return nil, "delayAfter and delayMs go together"
    end
    return {
        max = conf.max,
        window = conf.windowMs / 1000,
        key_fn = key_fn,
        prefix = "rl:" .. (env.id or "rate-limit") .. ":",
        status = conf.statusCode,
        message = conf.message,
        json_body = cjson.encode({ message = conf.message }),
        headers = conf.headers,
        sliding = conf.algorithm == "sliding",
        delay_after = conf.delayAfter,
        delay = conf.delayMs and conf.delayMs / 1000,
    }
end

-- Counts this request. Returns the count it is judged by, and the seconds
-- until a refused request would be let through (for Retry-After and
-- X-RateLimit-Reset).
local function count(self, key, now)
    local w = self.window
    if not self.sliding then
        local n, ttl = shdict.incr(self.prefix .. key, 1, w)
        if ttl < 0 then ttl = w end
        return n, ttl
    end
    -- sliding: windows aligned to the clock; the previous one counts in
    -- proportion to how much of it still overlaps the last `window` seconds
    local idx = floor(now / w)
    local elapsed = now - idx * w
    local ckey = self.prefix .. key .. ":" .. idx
    local cur = shdict.incr(ckey, 1, 2 * w)
    local prev = shdict.get(self.prefix .. key .. ":" .. (idx - 1)) or 0
    local n = prev * (1 - elapsed / w) + cur
    if n <= self.max then
        return n, w - elapsed
    end
    -- refused: it does not count, so a client that waits as told gets in
    cur = shdict.incr(ckey, -1, 2 * w)
    local room = self.max - 1 -- the next request itself counts 1
    local wait
    if prev > 0 and cur <= room then
        -- later in this window, once enough of the previous one slid out
        wait = w * (1 - (room - cur) / prev) - elapsed
    else
        -- in the next window, this one (then the previous) weighing less
        wait = (w - elapsed) + (cur > room and w * (1 - room / cur) or 0)
    end
    return n, max(wait, 0.001)
end

local function access(self, req)
    if self.max == 0 then return nil end
    local key
    if self.key_fn then
        local ok, v = pcall(self.key_fn, req)
        key = ok and v ~= nil and tostring(v) or "undefined"
    else
        key = req.ip
    end
    local now = core.now()
    local n, ttl = count(self, key, now)
    local remaining = max(self.max - floor(n), 0)
    local reset = ceil(now + ttl)
    if self.headers then
        -- response header edits made now apply to whatever answers: the
        -- upstream, a later policy, or the gateway's own 502/504. No
        -- response phase, so a pipeline of rate-limit, jwt and proxy
        -- finishes without resuming Lua after the proxy (Request:proxy).
        local res = req.response
        res:set_header("X-RateLimit-Limit", self.max)
        res:set_header("X-RateLimit-Remaining", remaining)
        res:set_header("X-RateLimit-Reset", reset)
    end
    if n > self.max then
        req:log_error("rate limit exceeded")
        local headers = { ["Retry-After"] = tostring(ceil(ttl)) }
        local body
        if prefers_json(req:header("accept")) then
            headers["Content-Type"] = "application/json; charset=utf-8"
            body = self.json_body
        else
            headers["Content-Type"] = "text/plain; charset=utf-8"
            body = self.message
        end
        return self.status, body, headers
    end
    if self.delay_after and n > self.delay_after then
        req:sleep((n - self.delay_after) * self.delay)
    end
    return nil
end

return {
    name = "rate-limit",
    schema = {
        description = "Limits requests per key in a time window, across all workers.",
        properties = {
            max = { type = "integer", default = 5, minimum = 0,
                description = "requests allowed per window per key (0: no limit)" },
            windowMs = { type = "number", default = 60000, minimum = 1,
                description = "window length in milliseconds" },
            rateLimitBy = { type = { "string", "object" }, additional = true,
                description = "the key: a template such as ${req.ip}, or { lua: ... }" },
            statusCode = { type = "integer", default = 429, minimum = 400, maximum = 599,
                description = "status of a refused request" },
            message = { type = "string", default = "Too many requests, please try again later.",
                description = "body of a refused request" },
            headers = { type = "boolean", default = true,
                description = "send X-RateLimit-Limit, -Remaining and -Reset" },
            algorithm = { type = "string", enum = { "fixed", "sliding" }, default = "fixed",
                description = "fixed window from the first request, or sliding" },
            delayAfter = { type = "integer", minimum = 0,
                description = "requests in a window before delaying starts" },
            delayMs = { type = "number", minimum = 0,
                description = "delay per request over delayAfter, in ms" },
        },
    },
    new = new,
    access = access,
    prefers_json = prefers_json,
}
