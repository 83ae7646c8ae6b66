-- luacheck: std +busted
-- luacheck: max line length 140
-- tollgate.conditions: Express Gateway's predefined conditions
-- (lib/conditions/predefined.js), compiled once into functions of the request.

require "spec.support.unit"
local conditions = require "tollgate.conditions"

-- A request as conditions see it: url (path and query), method,
-- header(name), user, tls_client_verified.
local function req(t)
  local headers = {}
  for k, v in pairs(t.headers or {}) do headers[k:lower()] = v end
  return {
    url = t.url or "/",
    method = t.method or "GET",
    user = t.user,
    tls_client_verified = t.tls,
    header = function(_, name) return headers[name:lower()] end,
  }
end

local function host(h) return { headers = { Host = h } } end

-- { case, condition config, request fields, expected }
local CASES = {
  { "always", { name = "always" }, {}, true },
  { "never", { name = "never" }, {}, false },

  { "pathExact: equal", { name = "pathExact", path = "/a" }, { url = "/a" }, true },
  { "pathExact: the query is part of the url", { name = "pathExact", path = "/a" }, { url = "/a?x=1" }, false },
  { "pathExact: with the query", { name = "pathExact", path = "/a?x=1" }, { url = "/a?x=1" }, true },
  { "pathExact: trailing slash differs", { name = "pathExact", path = "/a" }, { url = "/a/" }, false },
  { "pathExact: case-sensitive", { name = "pathExact", path = "/a" }, { url = "/A" }, false },

  { "pathMatch: search", { name = "pathMatch", pattern = "^/api/v[0-9]+" }, { url = "/api/v2/x" }, true },
  { "pathMatch: unanchored", { name = "pathMatch", pattern = "/b" }, { url = "/a/b/c" }, true },
  { "pathMatch: case-sensitive", { name = "pathMatch", pattern = "^/api" }, { url = "/API/x" }, false },
  { "pathMatch: sees the query", { name = "pathMatch", pattern = "x=1$" }, { url = "/a?x=1" }, true },
  { "pathMatch: no match", { name = "pathMatch", pattern = "^/b" }, { url = "/a/b" }, false },
  { "pathMatch: JS syntax (\\d, alternation)", { name = "pathMatch", pattern = "^/(cats|dogs)/\\d+$" },
    { url = "/dogs/12" }, true },

  { "method: string", { name = "method", methods = "GET" }, { method = "GET" }, true },
  { "method: string, other method", { name = "method", methods = "GET" }, { method = "POST" }, false },
  { "method: list", { name = "method", methods = { "GET", "POST" } }, { method = "POST" }, true },
  { "method: list, other method", { name = "method", methods = { "GET", "POST" } }, { method = "PUT" }, false },
  { "method: exact case", { name = "method", methods = "get" }, { method = "GET" }, false },
  { "method: HEAD is not GET", { name = "method", methods = "GET" }, { method = "HEAD" }, false },

  { "hostMatch: exact", { name = "hostMatch", pattern = "example.com" }, host("example.com"), true },
  { "hostMatch: * spans labels (minimatch)", { name = "hostMatch", pattern = "*.example.com" },
    host("a.b.example.com"), true },
  { "hostMatch: * one label", { name = "hostMatch", pattern = "*.example.com" }, host("a.example.com"), true },
  { "hostMatch: the port is part of the Host", { name = "hostMatch", pattern = "*.example.com" },
    host("a.example.com:8080"), false },
  { "hostMatch: pattern with the port", { name = "hostMatch", pattern = "*.example.com:8080" },
    host("a.example.com:8080"), true },
  { "hostMatch: case-sensitive", { name = "hostMatch", pattern = "example.com" }, host("EXAMPLE.com"), false },
  { "hostMatch: dots are literal", { name = "hostMatch", pattern = "example.com" }, host("exampleXcom"), false },
  { "hostMatch: ? is one character", { name = "hostMatch", pattern = "h?.com" }, host("h1.com"), true },
  { "hostMatch: ? is exactly one", { name = "hostMatch", pattern = "h?.com" }, host("h12.com"), false },
  { "hostMatch: class", { name = "hostMatch", pattern = "[ab].com" }, host("b.com"), true },
  { "hostMatch: negated class", { name = "hostMatch", pattern = "[!ab].com" }, host("b.com"), false },
  { "hostMatch: - and + literal", { name = "hostMatch", pattern = "my-host+1.com" }, host("my-host+1.com"), true },
  { "hostMatch: braces expand (minimatch)", { name = "hostMatch", pattern = "{api,www}.example.com" },
    host("www.example.com"), true },
  { "hostMatch: no Host header", { name = "hostMatch", pattern = "*" }, {}, false },

  { "authenticated: with a user", { name = "authenticated" }, { user = { id = "u1" } }, true },
  { "authenticated: anonymous", { name = "authenticated" }, {}, false },
  { "anonymous: anonymous", { name = "anonymous" }, {}, true },
  { "anonymous: with a user", { name = "anonymous" }, { user = { id = "u1" } }, false },
  { "tlsClientAuthenticated: verified", { name = "tlsClientAuthenticated" }, { tls = true }, true },
  { "tlsClientAuthenticated: plain HTTP", { name = "tlsClientAuthenticated" }, {}, false },

  { "allOf: all hold", { name = "allOf", conditions = { { name = "always" }, { name = "method", methods = "GET" } } },
    {}, true },
  { "allOf: one fails", { name = "allOf", conditions = { { name = "always" }, { name = "never" } } }, {}, false },
  { "allOf: empty list holds", { name = "allOf", conditions = {} }, {}, true },
  { "oneOf: any one holds", { name = "oneOf", conditions = { { name = "never" }, { name = "always" } } }, {}, true },
  { "oneOf: two hold is still true (any, not exactly one)",
    { name = "oneOf", conditions = { { name = "always" }, { name = "always" } } }, {}, true },
  { "oneOf: none", { name = "oneOf", conditions = { { name = "never" }, { name = "never" } } }, {}, false },
  { "oneOf: empty list fails", { name = "oneOf", conditions = {} }, {}, false },
  { "not: never", { name = "not", condition = { name = "never" } }, {}, true },
  { "not: always", { name = "not", condition = { name = "always" } }, {}, false },
  { "not not", { name = "not", condition = { name = "not", condition = { name = "always" } } }, {}, true },
}

-- allOf(method GET, oneOf(pathExact /a, pathMatch ^/b), not(hostMatch *.evil.com))
local NESTED = {
  name = "allOf",
  conditions = {
    { name = "method", methods = { "GET", "HEAD" } },
    { name = "oneOf", conditions = {
      { name = "pathExact", path = "/a" },
      { name = "pathMatch", pattern = "^/b" },
    } },
    { name = "not", condition = { name = "hostMatch", pattern = "*.evil.com" } },
  },
}

-- { case, request fields, expected }
local NESTED_CASES = {
  { "GET /a from a good host", { method = "GET", url = "/a", headers = { host = "ok.com" } }, true },
  { "HEAD /b/x from a good host", { method = "HEAD", url = "/b/x", headers = { host = "ok.com" } }, true },
  { "POST /a", { method = "POST", url = "/a", headers = { host = "ok.com" } }, false },
  { "GET /c", { method = "GET", url = "/c", headers = { host = "ok.com" } }, false },
  { "GET /a from an evil host", { method = "GET", url = "/a", headers = { host = "x.evil.com" } }, false },
  { "GET /a without Host", { method = "GET", url = "/a" }, true },
}

describe("conditions", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local fn, err = conditions.compile(c[2], "cond")
      assert.is_nil(err)
      assert.is_function(fn)
      assert.equal(c[4], fn(req(c[3])))
    end)
  end

  describe("nested allOf/oneOf/not", function()
    local fn
    setup(function()
      fn = assert(conditions.compile(NESTED, "cond"))
    end)
    for _, c in ipairs(NESTED_CASES) do
      it(c[1], function()
        assert.equal(c[3], fn(req(c[2])))
      end)
    end
  end)

  it("compiles once: the request is read at call time", function()
    local fn = assert(conditions.compile({ name = "pathExact", path = "/a" }))
    local r = req { url = "/a" }
    assert.is_true(fn(r))
    r.url = "/b" -- e.g. stripPath or a rewrite changed req.url
    assert.is_false(fn(r))
  end)

  it("a Lua function is a condition (Lua configs)", function()
    local f = function(r) return r.method == "PUT" end
    assert.equal(f, conditions.compile(f))
  end)

  it("register adds a condition", function()
    conditions.register("unitHeader", {
      schema = { properties = { header = { type = "string", required = true } } },
      build = function(cfg) return function(r) return r:header(cfg.header) ~= nil end end,
    })
    local fn = assert(conditions.compile { name = "unitHeader", header = "X-A" })
    assert.is_true(fn(req { headers = { ["x-a"] = "1" } }))
    assert.is_false(fn(req {}))
  end)
end)

-- { case, condition config, path, expected message start (plain), at key }
local ERRORS = {
  { "pathMatch without pattern", { name = "pathMatch" }, "p.condition",
    "p.condition.pattern: is required", "pattern" },
  { "pathExact without path", { name = "pathExact" }, "p.condition",
    "p.condition.path: is required", "path" },
  { "hostMatch without pattern", { name = "hostMatch" }, "c", "c.pattern: is required", "pattern" },
  { "method without methods", { name = "method" }, "c", "c.methods: is required", "methods" },
  { "method with a number", { name = "method", methods = { "GET", {} } }, "c",
    "c.methods[2]: expected string", nil },
  { "allOf without conditions", { name = "allOf" }, "c", "c.conditions: is required", "conditions" },
  { "not without condition", { name = "not" }, "c", "c.condition: is required", "condition" },
  { "unknown condition name", { name = "pathmatch", pattern = "x" }, "p.condition",
    'p.condition.name: unknown condition "pathmatch" (known: ', "name" },
  { "no name", { pattern = "x" }, "c", "c: a condition needs a name (one of ", nil },
  { "not a table", "always", "c", "c: a condition needs a name", nil },
  { "invalid regex", { name = "pathMatch", pattern = "(" }, "c",
    "c.pattern: invalid regular expression", nil },
  { "nested: unknown name inside allOf",
    { name = "allOf", conditions = { { name = "always" }, { name = "bogus" } } }, "c",
    'c.conditions[2].name: unknown condition "bogus"', "name" },
  { "nested: missing pattern inside oneOf inside not",
    { name = "not", condition = { name = "oneOf", conditions = { { name = "pathMatch" } } } }, "c",
    "c.condition.conditions[1].pattern: is required", "pattern" },
  { "nested: a list where a condition goes",
    { name = "not", condition = { { name = "always" } } }, "c", "c.condition: expected object", nil },
}

describe("condition errors", function()
  for _, c in ipairs(ERRORS) do
    it(c[1], function()
      local fn, err, at = conditions.compile(c[2], c[3])
      assert.is_nil(fn)
      assert.is_string(err)
      assert.equal(c[4], err:sub(1, #c[4]), err)
      if c[5] then
        assert.is_table(at)
        assert.equal(c[5], at[2])
      end
    end)
  end

  it("the unknown-name message lists the known conditions", function()
    local _, err = conditions.compile({ name = "nope" }, "c")
    for _, n in ipairs { "allOf", "always", "anonymous", "authenticated", "hostMatch", "method",
      "never", "not", "oneOf", "pathExact", "pathMatch", "tlsClientAuthenticated" } do
      assert.matches(n, err, 1, true)
    end
  end)

  it("the error location is the config table (for the line number)", function()
    local inner = { name = "pathMatch" }
    local _, _, at = conditions.compile({ name = "allOf", conditions = { inner } }, "c")
    assert.equal(inner, at[1])
    local bad = { name = "bogus" }
    _, _, at = conditions.compile(bad, "c")
    assert.equal(bad, at[1])
  end)
end)
