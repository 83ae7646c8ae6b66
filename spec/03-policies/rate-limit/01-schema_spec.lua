-- luacheck: max line length 140
-- rate-limit: the options, as the schema and the constructor take them
-- (Express Gateway's names and defaults; rateLimitBy templates compiled at
-- load, JavaScript that cannot be evaluated refused with a message).

local testing = require "tollgate.testing"

local function contains(needle, haystack)
  assert.is_string(haystack)
  assert(haystack:find(needle, 1, true), ("expected %q in %q"):format(needle, haystack))
end

local function schema_error(action)
  local conf, err = testing.validate("rate-limit", action)
  assert.is_nil(conf, "expected the schema to refuse the action")
  return err
end

local function load_error(action)
  local ok, err = pcall(testing.policy, "rate-limit", action)
  assert.is_false(ok, "expected the policy to be refused")
  return tostring(err)
end

local function loads(action)
  local ok, p = pcall(testing.policy, "rate-limit", action)
  assert(ok, p)
  return p
end

describe("rate-limit schema", function()
  it("defaults are Express Gateway's: max 5, windowMs 60000, 429, its message, headers on", function()
    local conf = assert(testing.validate("rate-limit", {}))
    assert.equal(5, conf.max)
    assert.equal(60000, conf.windowMs)
    assert.equal(429, conf.statusCode)
    assert.equal("Too many requests, please try again later.", conf.message)
    assert.is_true(conf.headers)
    assert.equal("fixed", conf.algorithm)
    assert.is_nil(conf.rateLimitBy)
    -- no delaying unless asked for (Express Gateway delays by default)
    assert.is_nil(conf.delayAfter)
    assert.is_nil(conf.delayMs)
  end)

  it("accepts good values", function()
    loads{ max = 0 }
    loads{ max = 100, windowMs = 1000, statusCode = 503, message = "slow down", headers = false }
    loads{ algorithm = "sliding" }
    loads{ delayAfter = 1, delayMs = 1000 }
    loads{ delayAfter = 0, delayMs = 0 }
  end)

  describe("refuses bad values", function()
    it("max: negative, fractional, not a number", function()
      contains("action.max", schema_error{ max = -1 })
      contains("action.max", schema_error{ max = 1.5 })
      contains("action.max", schema_error{ max = "ten" })
    end)

    it("windowMs: zero, negative, not a number", function()
      contains("action.windowMs", schema_error{ windowMs = 0 })
      contains("action.windowMs", schema_error{ windowMs = -1000 })
      contains("action.windowMs", schema_error{ windowMs = "1m" })
    end)

    it("statusCode outside 400..599", function()
      contains("action.statusCode", schema_error{ statusCode = 200 })
      contains("action.statusCode", schema_error{ statusCode = 399 })
      contains("action.statusCode", schema_error{ statusCode = 600 })
      contains("action.statusCode", schema_error{ statusCode = 429.5 })
    end)

    it("headers not a boolean, an unknown algorithm, an unknown option", function()
      contains("action.headers", schema_error{ headers = "yes" })
      contains("action.algorithm", schema_error{ algorithm = "leaky-bucket" })
      contains("action.maxRequests: unknown option", schema_error{ maxRequests = 10 })
    end)

    it("delayAfter / delayMs: negative, or one without the other", function()
      contains("action.delayAfter", schema_error{ delayAfter = -1, delayMs = 10 })
      contains("action.delayMs", schema_error{ delayAfter = 1, delayMs = -10 })
      contains("delayAfter and delayMs go together", load_error{ delayAfter = 1 })
      contains("delayAfter and delayMs go together", load_error{ delayMs = 100 })
    end)
  end)

  describe("rateLimitBy", function()
    local accepted = {
      "${req.ip}",
      "${req.headers['x-api-key']}",
      '${req.headers["x-api-key"]}',
      "${req.headers.host}",
      "${req.user.sub}",
      "${req.user.id}",
      "${req.query.key}",
      "${req.hostname}",
      "${req.method}:${req.path}",
      "user-${req.user.sub}",
      "${req.headers['x-api-key'] || req.ip}",
      "${egContext.requestID}",
      "${egContext.consumer.id}",
      "static-key",
    }
    for _, t in ipairs(accepted) do
      it("accepts the template " .. t, function()
        assert.truthy(testing.validate("rate-limit", { rateLimitBy = t }))
        loads{ rateLimitBy = t }
      end)
    end

    it("accepts Lua: { lua: <expression> } and { lua: <chunk with return> }", function()
      loads{ rateLimitBy = { lua = "req:header('x-api-key') or req.ip" } }
      loads{ rateLimitBy = { lua = "local k = req:header('x-api-key'); return k and k:lower() or req.ip" } }
    end)

    local refused = {
      "${req.headers['x-api-key'].toLowerCase()}",
      "${req.ip + ':' + req.method}",
      "${Date.now()}",
      "${process.env.SECRET}",
      "${req.foo}",
      "${req.headers}",
      "${require('fs')}",
      "${req.user.sub ? 'u' : 'anon'}",
    }
    for _, t in ipairs(refused) do
      it("refuses JavaScript it cannot evaluate: " .. t, function()
        local err = load_error{ rateLimitBy = t }
        contains("rateLimitBy: cannot evaluate", err)
        contains("{ lua:", err) -- what to write instead
      end)
    end

    it("refuses an unterminated template", function()
      contains("rateLimitBy: unterminated ${", load_error{ rateLimitBy = "${req.ip" })
    end)

    it("refuses Lua that does not compile, and other objects", function()
      contains("rateLimitBy: lua:", load_error{ rateLimitBy = { lua = "req:header(" } })
      contains("rateLimitBy:", load_error{ rateLimitBy = { js = "req.ip" } })
      contains("rateLimitBy:", load_error{ rateLimitBy = { lua = "req.ip", extra = 1 } })
    end)

    it("is refused in a gateway config naming the file, line and step", function()
      local ok, err = pcall(testing.gateway, [[
http: { port: 0 }
apiEndpoints:
  api: { paths: '/*' }
policies: [rate-limit]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - rate-limit:
          - action:
              rateLimitBy: "${req.headers['x-api-key'].trim()}"
]])
      assert.is_false(ok)
      contains("gateway.config.yml:10: pipelines.p.policies[1].rate-limit[1].action: rateLimitBy: " ..
        "cannot evaluate ${req.headers['x-api-key'].trim()}", err)
    end)
  end)
end)
