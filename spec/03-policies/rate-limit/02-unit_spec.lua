-- luacheck: max line length 140
-- rate-limit: the policy on requests, with no server (tollgate.testing):
-- the real shared-dictionary counters, the test clock (which also moves the
-- dictionary's expiry, and which the policy's sleep moves).

local testing = require "tollgate.testing"
local jwt = require "spec.support.jwt"
local cjson = require "cjson"

local floor, ceil = math.floor, math.ceil

local DEFAULT_MESSAGE = "Too many requests, please try again later."

-- Every instance gets its own id (its counters), as every step of a
-- config does, unless the test gives one.
local seq = 0
local function limiter(action, id)
  seq = seq + 1
  return testing.policy("rate-limit", action, { id = id or ("unit-" .. seq) })
end

-- Runs n requests; returns the statuses and the last result.
local function hit(p, n, req)
  local statuses, res = {}, nil
  for i = 1, n do
    res = p:run(req or { path = "/" })
    statuses[i] = res.status
  end
  return statuses, res
end

local function count_ok(statuses)
  local n = 0
  for _, s in ipairs(statuses) do if s == 200 then n = n + 1 end end
  return n
end

-- Moves the clock to the start of the next window of w seconds (sliding
-- windows are aligned on the clock), plus `offset`.
local function to_window_start(w, offset)
  local t = (floor(testing.clock.now() / w) + 1) * w
  testing.clock.set(t + (offset or 0))
  return t
end

describe("rate-limit policy (unit)", function()
  describe("counting", function()
    it("lets max requests through and refuses the next with 429", function()
      local p = limiter{ max = 3 }
      for i = 1, 3 do
        local res = p:run{ path = "/" }
        assert.equal(200, res.status, "request " .. i)
        assert.is_true(res.continued)
        assert.is_nil(res.req.error)
      end
      local res = p:run{ path = "/" }
      assert.equal(429, res.status)
      assert.is_false(res.continued)
      assert.is_nil(res.upstream)
      assert.equal("rate limit exceeded", res.req.error)
      assert.same({ 429, 429 }, (hit(p, 2)))
    end)

    it("the defaults: 5 per minute", function()
      local statuses = hit(limiter{}, 7)
      assert.same({ 200, 200, 200, 200, 200, 429, 429 }, statuses)
    end)

    it("max 0 disables the limit", function()
      local p = limiter{ max = 0, windowMs = 1000 }
      local statuses = hit(p, 200)
      assert.equal(200, count_ok(statuses))
    end)

    it("statusCode and message are used", function()
      local p = limiter{ max = 1, statusCode = 503, message = "Slow down, please." }
      p:run{}
      local res = p:run{}
      assert.equal(503, res.status)
      assert.equal("Slow down, please.", res.body)
      res = p:run{ headers = { Accept = "application/json" } }
      assert.same({ message = "Slow down, please." }, cjson.decode(res.body))
    end)
  end)

  describe("headers", function()
    it("X-RateLimit-Limit, -Remaining, -Reset on every response, also the 429", function()
      local p = limiter{ max = 3, windowMs = 60000 }
      local start = testing.clock.now()
      local resets = {}
      for i, want in ipairs{ 2, 1, 0, 0, 0 } do
        local res = p:run{}
        assert.equal("3", res.headers["x-ratelimit-limit"], "request " .. i)
        assert.equal(tostring(want), res.headers["x-ratelimit-remaining"], "request " .. i)
        local reset = tonumber(res.headers["x-ratelimit-reset"])
        assert.is_number(reset)
        -- Unix seconds when the window ends: a minute after the first request
        assert(reset >= floor(start + 59) and reset <= ceil(start + 60) + 1,
          "reset " .. tostring(reset) .. " for a window starting at " .. start)
        resets[i] = reset
      end
      for i = 2, #resets do assert.equal(resets[1], resets[i]) end
    end)

    it("Retry-After only on the refusal: the seconds until the window ends", function()
      local p = limiter{ max = 1, windowMs = 60000 }
      local res = p:run{}
      assert.is_nil(res.headers["retry-after"])
      testing.clock.advance(20)
      res = p:run{}
      assert.equal(429, res.status)
      local ra = tonumber(res.headers["retry-after"])
      assert(ra and ra >= 39 and ra <= 41, "Retry-After " .. tostring(res.headers["retry-after"]))
    end)

    it("waiting Retry-After seconds is enough (fixed window)", function()
      local p = limiter{ max = 2, windowMs = 10000 }
      hit(p, 2)
      testing.clock.advance(3.3)
      local res = p:run{}
      assert.equal(429, res.status)
      testing.clock.advance(tonumber(res.headers["retry-after"]))
      assert.equal(200, p:run{}.status)
    end)

    it("headers: false sends none of them", function()
      local p = limiter{ max = 1, headers = false }
      local res = p:run{}
      assert.is_nil(res.headers["x-ratelimit-limit"])
      assert.is_nil(res.headers["x-ratelimit-remaining"])
      assert.is_nil(res.headers["x-ratelimit-reset"])
      res = p:run{}
      assert.equal(429, res.status)
      assert.is_nil(res.headers["x-ratelimit-limit"])
    end)

    it("keeps the upstream's own headers and status", function()
      local p = limiter{ max = 5 }
      local res = p:run({ path = "/" }, { upstream = { status = 201, headers = { ["X-Up"] = "yes" }, body = "made" } })
      assert.equal(201, res.status)
      assert.equal("yes", res.headers["x-up"])
      assert.equal("made", res.body)
      assert.equal("4", res.headers["x-ratelimit-remaining"])
    end)
  end)

  describe("the refusal's body follows Accept (never 406)", function()
    local JSON, PLAIN = "json", "plain"
    local cases = {
      { nil, PLAIN },
      { "*/*", PLAIN },
      { "application/json", JSON },
      { "application/json, text/html", JSON },
      { "text/html, application/json", PLAIN },
      { "text/html;q=0.5, application/json", JSON },
      { "application/json;q=0.5, text/plain", PLAIN },
      { "application/json;q=0.9, text/html;q=0.8", JSON },
      { "text/html;q=0.9, application/json;q=0.8", PLAIN },
      { "application/*;q=0.9, text/*;q=0.8", JSON },
      { "application/problem+json", JSON },
      { "application/json, */*;q=0.1", JSON },
      { "*/*;q=0.8, application/json;q=0.5", PLAIN },
      { "application/json;q=0", PLAIN },
      { "text/html;q=0, application/json;q=0", PLAIN },
      { "image/png", PLAIN },
      { "text/plain", PLAIN },
      { "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", PLAIN },
    }
    for _, c in ipairs(cases) do
      local accept, want = c[1], c[2]
      it(("Accept: %s -> %s"):format(tostring(accept), want), function()
        local p = limiter{ max = 1 }
        p:run{}
        local res = p:run{ headers = { Accept = accept } }
        assert.equal(429, res.status)
        assert.truthy(res.headers["retry-after"])
        if want == JSON then
          assert.equal("application/json; charset=utf-8", res.headers["content-type"])
          assert.same({ message = DEFAULT_MESSAGE }, cjson.decode(res.body))
        else
          assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
          assert.equal(DEFAULT_MESSAGE, res.body)
        end
        assert.equal(#res.body, tonumber(res.headers["content-length"]))
      end)
    end
  end)

  describe("buckets", function()
    it("default key: the client address", function()
      local p = limiter{ max = 2 }
      assert.same({ 200, 200, 429 }, (hit(p, 3, { client = "10.0.0.1" })))
      assert.same({ 200, 200, 429 }, (hit(p, 3, { client = "10.0.0.2" })))
      assert.equal(429, p:run{ client = "10.0.0.1" }.status)
    end)

    it("rateLimitBy a header: one bucket per value", function()
      local p = limiter{ max = 2, rateLimitBy = "${req.headers['x-api-key']}" }
      local function as(key) return { headers = { ["X-Api-Key"] = key } } end
      assert.same({ 200, 200, 429 }, (hit(p, 3, as("alpha"))))
      assert.same({ 200, 200, 429 }, (hit(p, 3, as("beta"))))
      -- the same client address does not matter
      assert.equal(200, p:run{ client = "10.9.9.9", headers = { ["X-Api-Key"] = "gamma" } }.status)
    end)

    it("rateLimitBy: requests without the value share one bucket (the key 'undefined', as in EG)", function()
      local p = limiter{ max = 2, rateLimitBy = "${req.headers['x-api-key']}" }
      assert.same({ 200, 200, 429 }, {
        p:run{ client = "10.0.0.1" }.status, p:run{ client = "10.0.0.2" }.status,
        p:run{ client = "10.0.0.3" }.status })
      assert.equal(200, p:run{ headers = { ["X-Api-Key"] = "undefined-but-not-really" } }.status)
    end)

    it("rateLimitBy a template mixing text and values", function()
      local p = limiter{ max = 1, rateLimitBy = "${req.method}:${req.headers['x-tenant']}" }
      assert.equal(200, p:run{ method = "GET", headers = { ["X-Tenant"] = "a" } }.status)
      assert.equal(200, p:run{ method = "POST", headers = { ["X-Tenant"] = "a" } }.status)
      assert.equal(200, p:run{ method = "GET", headers = { ["X-Tenant"] = "b" } }.status)
      assert.equal(429, p:run{ method = "GET", headers = { ["X-Tenant"] = "a" } }.status)
    end)

    it("rateLimitBy Lua", function()
      local p = limiter{ max = 1, rateLimitBy = { lua = "(req:header('x-key') or req.ip):lower()" } }
      assert.equal(200, p:run{ headers = { ["X-Key"] = "ABC" } }.status)
      assert.equal(429, p:run{ headers = { ["X-Key"] = "abc" } }.status)
      assert.equal(200, p:run{ client = "10.1.1.1" }.status)
      assert.equal(429, p:run{ client = "10.1.1.1" }.status)
    end)

    it("rateLimitBy Lua that raises: the key 'undefined' (EG logs and goes on)", function()
      local p = limiter{ max = 1, rateLimitBy = { lua = "error('boom')" } }
      assert.equal(200, p:run{}.status)
      assert.equal(429, p:run{ client = "10.2.2.2" }.status)
    end)

    it("rateLimitBy ${req.user.sub} after jwt: one bucket per user", function()
      local gw = testing.gateway([[
http: { port: 0 }
apiEndpoints:
  api: { paths: '/*' }
policies: [jwt, rate-limit, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - jwt:
          - action: { secretOrPublicKey: s3cret, checkCredentialExistence: false }
      - rate-limit:
          - action: { max: 2, rateLimitBy: "${req.user.sub}" }
      - terminate:
          - action: { statusCode: 200, message: ok }
]])
      local function as(sub)
        return { path = "/x", headers = { Authorization = "Bearer " .. jwt.sign({ sub = sub }, "s3cret", "HS256") } }
      end
      local statuses = {}
      for _, sub in ipairs{ "alice", "alice", "alice", "bob", "bob", "bob" } do
        statuses[#statuses + 1] = gw:request(as(sub)).status
      end
      assert.same({ 200, 200, 429, 200, 200, 429 }, statuses)
      jwt.cleanup()
    end)

    it("two policy instances never share a bucket", function()
      local a = limiter({ max = 2 }, "pipelines.a.policies[1].rate-limit[1]")
      local b = limiter({ max = 2 }, "pipelines.b.policies[1].rate-limit[1]")
      assert.same({ 200, 200, 429 }, (hit(a, 3)))
      assert.same({ 200, 200, 429 }, (hit(b, 3)))
    end)

    it("the same step (same id, e.g. after a reload) keeps its counters", function()
      local id = "pipelines.keep.policies[1].rate-limit[1]"
      assert.same({ 200, 200 }, (hit(limiter({ max = 2 }, id), 2)))
      assert.equal(429, limiter({ max = 2 }, id):run{}.status)
    end)

    it("two pipelines of one gateway with the same options count apart", function()
      local gw = testing.gateway([[
http: { port: 0 }
apiEndpoints:
  a: { paths: '/a' }
  b: { paths: '/b' }
policies: [rate-limit, terminate]
pipelines:
  pa:
    apiEndpoints: [a]
    policies:
      - rate-limit: [ { action: { max: 1 } } ]
      - terminate: [ { action: { statusCode: 200, message: a } } ]
  pb:
    apiEndpoints: [b]
    policies:
      - rate-limit: [ { action: { max: 1 } } ]
      - terminate: [ { action: { statusCode: 200, message: b } } ]
]])
      assert.equal(200, gw:request{ path = "/a" }.status)
      assert.equal(200, gw:request{ path = "/b" }.status)
      assert.equal(429, gw:request{ path = "/a" }.status)
      assert.equal(429, gw:request{ path = "/b" }.status)
    end)
  end)

  describe("windows", function()
    it("a new window starts when the old one ends", function()
      local p = limiter{ max = 2, windowMs = 1000 }
      assert.same({ 200, 200, 429 }, (hit(p, 3)))
      testing.clock.advance(1.01)
      local res = p:run{}
      assert.equal(200, res.status)
      assert.equal("1", res.headers["x-ratelimit-remaining"])
      assert.same({ 200, 429 }, (hit(p, 2)))
    end)

    it("the fixed window starts at a key's first request (as EG's Redis store)", function()
      local p = limiter{ max = 2, windowMs = 1000 }
      p:run{}
      testing.clock.advance(0.6)
      assert.same({ 200, 429 }, (hit(p, 2)))
      testing.clock.advance(0.3) -- 0.9 s after the first request: same window
      assert.equal(429, p:run{}.status)
      testing.clock.advance(0.11) -- 1.01 s: a new one
      assert.equal(200, p:run{}.status)
    end)

    it("each key's window is its own", function()
      local p = limiter{ max = 1, windowMs = 1000 }
      p:run{ client = "10.3.0.1" }
      testing.clock.advance(0.5)
      p:run{ client = "10.3.0.2" }
      testing.clock.advance(0.51)
      assert.equal(200, p:run{ client = "10.3.0.1" }.status)
      assert.equal(429, p:run{ client = "10.3.0.2" }.status)
    end)
  end)

  describe("sliding algorithm", function()
    -- One request at a window's start, 9 just before its end, then 10
    -- just after: in 0.1 s the fixed window lets 19 through, the sliding
    -- one counts the previous window's 10 (weighted 0.95) and lets none.
    local function edge_burst(algorithm)
      local p = limiter{ max = 10, windowMs = 1000, algorithm = algorithm }
      local t = to_window_start(1)
      assert.equal(200, p:run{}.status)
      testing.clock.set(t + 0.95)
      local before = count_ok((hit(p, 9)))
      testing.clock.set(t + 1.05)
      local after = count_ok((hit(p, 10)))
      return before + after, before
    end

    it("limits an edge burst that a fixed window lets through twice", function()
      local fixed, fixed_before = edge_burst("fixed")
      local sliding, sliding_before = edge_burst("sliding")
      assert.equal(9, fixed_before)
      assert.equal(9, sliding_before)
      assert.equal(19, fixed)
      assert(sliding <= 10, "sliding let " .. sliding .. " through in 0.1 s (max 10 per second)")
    end)

    it("lets the previous window's share fade: half way through, half of it counts", function()
      local p = limiter{ max = 10, windowMs = 1000, algorithm = "sliding" }
      local t = to_window_start(1)
      assert.equal(10, count_ok((hit(p, 10))))
      testing.clock.set(t + 1.5) -- previous 10 weighted 0.5: 5 left
      assert.equal(5, count_ok((hit(p, 8))))
      testing.clock.set(t + 3.0) -- two windows later: nothing left of them
      assert.equal(10, count_ok((hit(p, 12))))
    end)

    it("a steady rate under the limit is never refused", function()
      local p = limiter{ max = 10, windowMs = 1000, algorithm = "sliding" }
      to_window_start(1, 0.05)
      local statuses = {}
      for i = 1, 50 do -- 8 per second for 6.25 s
        statuses[i] = p:run{}.status
        testing.clock.advance(0.125)
      end
      assert.equal(50, count_ok(statuses))
    end)

    it("headers: Remaining from the weighted count, Reset at the window's end", function()
      local p = limiter{ max = 10, windowMs = 1000, algorithm = "sliding" }
      local t = to_window_start(1)
      hit(p, 8)
      testing.clock.set(t + 1.25) -- 8 * 0.75 = 6, plus this one: 7
      local res = p:run{}
      assert.equal("3", res.headers["x-ratelimit-remaining"])
      assert.equal(tostring(t + 2), res.headers["x-ratelimit-reset"])
    end)

    it("waiting Retry-After seconds is enough", function()
      -- windows of 10 s; 11 requests in the last second of one: the 11th is
      -- refused, told to retry in 1 s, when the next window starts
      local p = limiter{ max = 10, windowMs = 10000, algorithm = "sliding" }
      local t = to_window_start(10)
      testing.clock.set(t + 9)
      local statuses, res = hit(p, 11)
      assert.equal(10, count_ok(statuses))
      assert.equal(429, res.status)
      local ra = tonumber(res.headers["retry-after"])
      testing.clock.advance(ra)
      local again = p:run{}
      assert.equal(200, again.status, ("told to retry after %ss, refused again then (Retry-After %s)")
        :format(ra, tostring(again.headers["retry-after"])))
    end)
  end)

  describe("delayAfter / delayMs", function()
    it("delays each request over delayAfter by (n - delayAfter) * delayMs, then refuses over max", function()
      local p = limiter{ max = 5, windowMs = 600000, delayAfter = 2, delayMs = 500 }
      local waited = {}
      for i = 1, 6 do
        local t0 = testing.clock.now()
        local res = p:run{}
        waited[i] = testing.clock.now() - t0
        assert.equal(i <= 5 and 200 or 429, res.status, "request " .. i)
      end
      assert.same({ 0, 0, 0.5, 1.0, 1.5, 0 }, waited)
    end)

    it("Express Gateway's defaults (delayAfter 1, delayMs 1000) when asked for", function()
      local p = limiter{ max = 5, windowMs = 600000, delayAfter = 1, delayMs = 1000 }
      local t0 = testing.clock.now()
      hit(p, 3)
      assert.equal(3, testing.clock.now() - t0) -- 0 + 1 + 2
    end)

    it("nothing is delayed without delayAfter", function()
      local p = limiter{ max = 5 }
      local t0 = testing.clock.now()
      hit(p, 7)
      assert.equal(t0, testing.clock.now())
    end)
  end)
end)
