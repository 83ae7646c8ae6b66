-- luacheck: std +busted
-- luacheck: max line length 140
-- tollgate.router: apiEndpoints matching as Express Gateway 1.16 does it
-- (vhost 3 + Express 4 router, path-to-regexp 0.1.7); see eg-notes §2.

require "spec.support.unit"
local router = require "tollgate.router"

-- An endpoint: { name, host=, hostRegex=, paths=, pathRegex=, methods= }.
local function ep(name, t)
  t = t or {}
  t.name = name
  if type(t.paths) == "string" then t.paths = { t.paths } end
  return t
end

local function build(eps)
  local copy = {}
  for i, e in ipairs(eps) do
    local c = {}
    for k, v in pairs(e) do c[k] = v end
    copy[i] = c
  end
  return assert(router.new(copy))
end

local function match_name(rt, host, path, method, after)
  local route, params = rt:match(host, path, method or "GET", after)
  return route and route.endpoint.name or nil, params, route
end

-- { case, endpoints, request host, path, method, expected endpoint name (nil: none) }
local CASES = {
  -- host
  { "exact host", { ep("a", { host = "example.com" }) }, "example.com", "/x", "GET", "a" },
  { "exact host, other host", { ep("a", { host = "example.com" }) }, "other.com", "/x", "GET", nil },
  { "exact host, dots are literal", { ep("a", { host = "example.com" }) }, "exampleXcom", "/x", "GET", nil },
  { "exact host, a subdomain is another host", { ep("a", { host = "example.com" }) }, "www.example.com", "/x", "GET", nil },
  { "host * matches any host", { ep("a", { host = "*" }) }, "anything.test", "/x", "GET", "a" },
  { "no host matches any host", { ep("a") }, "anything.test", "/x", "GET", "a" },
  { "*.example.com: one label", { ep("a", { host = "*.example.com" }) }, "api.example.com", "/x", "GET", "a" },
  { "*.example.com: not two labels", { ep("a", { host = "*.example.com" }) }, "a.b.example.com", "/x", "GET", nil },
  { "*.example.com: not the bare domain", { ep("a", { host = "*.example.com" }) }, "example.com", "/x", "GET", nil },
  { "*.example.com: not another domain", { ep("a", { host = "*.example.com" }) }, "api.example.org", "/x", "GET", nil },
  { "*.*.example.com: two labels", { ep("a", { host = "*.*.example.com" }) }, "a.b.example.com", "/x", "GET", "a" },
  { "*.*.example.com: not one", { ep("a", { host = "*.*.example.com" }) }, "b.example.com", "/x", "GET", nil },
  { "api.*.com: * in the middle", { ep("a", { host = "api.*.com" }) }, "api.eu.com", "/x", "GET", "a" },
  { "port stripped, exact host", { ep("a", { host = "example.com" }) }, "example.com:8080", "/x", "GET", "a" },
  { "port stripped, wildcard host", { ep("a", { host = "*.example.com" }) }, "api.example.com:443", "/x", "GET", "a" },
  { "host case-insensitive (request)", { ep("a", { host = "example.com" }) }, "EXAMPLE.Com", "/x", "GET", "a" },
  { "host case-insensitive (config)", { ep("a", { host = "Example.COM" }) }, "example.com", "/x", "GET", "a" },
  { "wildcard case-insensitive", { ep("a", { host = "*.Example.com" }) }, "API.EXAMPLE.COM", "/x", "GET", "a" },
  { "IPv6 literal with port", { ep("a", { host = "[::1]" }) }, "[::1]:8080", "/x", "GET", "a" },
  { "no Host: exact host does not match", { ep("a", { host = "example.com" }) }, nil, "/x", "GET", nil },
  { "no Host: wildcard does not match", { ep("a", { host = "*.example.com" }) }, nil, "/x", "GET", nil },
  { "no Host: * matches", { ep("a", { host = "*" }) }, nil, "/x", "GET", "a" },
  { "no Host: no host field matches", { ep("a") }, nil, "/x", "GET", "a" },
  { "hostRegex, anchored", { ep("a", { hostRegex = "api[0-9]+\\.example\\.com" }) }, "api12.example.com", "/x", "GET", "a" },
  { "hostRegex is anchored", { ep("a", { hostRegex = "api[0-9]+\\.example\\.com" }) }, "xapi1.example.com.evil", "/x", "GET", nil },
  { "hostRegex is case-insensitive", { ep("a", { hostRegex = "^api\\.example\\.com$" }) }, "API.example.com", "/x", "GET", "a" },
  { "hostRegex, port stripped", { ep("a", { hostRegex = "^api\\.example\\.com$" }) }, "api.example.com:81", "/x", "GET", "a" },
  { "hostRegex, no Host", { ep("a", { hostRegex = ".*" }) }, nil, "/x", "GET", nil },

  -- paths
  { "/a matches /a", { ep("a", { paths = "/a" }) }, "h", "/a", "GET", "a" },
  { "/a matches /a/", { ep("a", { paths = "/a" }) }, "h", "/a/", "GET", "a" },
  { "/a does not match /a/b", { ep("a", { paths = "/a" }) }, "h", "/a/b", "GET", nil },
  { "/a does not match /ab", { ep("a", { paths = "/a" }) }, "h", "/ab", "GET", nil },
  { "/a does not match /a//", { ep("a", { paths = "/a" }) }, "h", "/a//", "GET", nil },
  { "/a is case-insensitive", { ep("a", { paths = "/a" }) }, "h", "/A", "GET", "a" },
  { "/Admin is case-insensitive", { ep("a", { paths = "/Admin" }) }, "h", "/aDMIN/", "GET", "a" },
  { "/a/ matches /a", { ep("a", { paths = "/a/" }) }, "h", "/a", "GET", "a" },
  { "/a.json: the dot is literal", { ep("a", { paths = "/a.json" }) }, "h", "/aXjson", "GET", nil },
  { "/a/* does not match /a", { ep("a", { paths = "/a/*" }) }, "h", "/a", "GET", nil },
  { "/a/* matches /a/", { ep("a", { paths = "/a/*" }) }, "h", "/a/", "GET", "a" },
  { "/a/* matches /a/b/c", { ep("a", { paths = "/a/*" }) }, "h", "/a/b/c", "GET", "a" },
  { "/a/* is case-insensitive", { ep("a", { paths = "/a/*" }) }, "h", "/A/b", "GET", "a" },
  { "/a/* does not match /ab/c", { ep("a", { paths = "/a/*" }) }, "h", "/ab/c", "GET", nil },
  { "/a/:id matches /a/42", { ep("a", { paths = "/a/:id" }) }, "h", "/a/42", "GET", "a" },
  { "/a/:id matches /a/42/", { ep("a", { paths = "/a/:id" }) }, "h", "/a/42/", "GET", "a" },
  { "/a/:id does not match /a", { ep("a", { paths = "/a/:id" }) }, "h", "/a", "GET", nil },
  { "/a/:id does not match /a/42/x", { ep("a", { paths = "/a/:id" }) }, "h", "/a/42/x", "GET", nil },
  { "/a/:id/b matches /A/42/B", { ep("a", { paths = "/a/:id/b" }) }, "h", "/A/42/B", "GET", "a" },
  { "/a/:id? matches /a", { ep("a", { paths = "/a/:id?" }) }, "h", "/a", "GET", "a" },
  { "/:x matches any one segment", { ep("a", { paths = "/:x" }) }, "h", "/anything", "GET", "a" },
  { "/* matches /", { ep("a", { paths = "/*" }) }, "h", "/", "GET", "a" },
  { "list: first path", { ep("a", { paths = { "/a", "/b/*" } }) }, "h", "/a", "GET", "a" },
  { "list: second path", { ep("a", { paths = { "/a", "/b/*" } }) }, "h", "/b/c", "GET", "a" },
  { "list: neither", { ep("a", { paths = { "/a", "/b/*" } }) }, "h", "/b", "GET", nil },
  { "no paths: everything", { ep("a") }, "h", "/any/thing", "GET", "a" },
  { "empty paths list: everything", { ep("a", { paths = {} }) }, "h", "/any/thing", "GET", "a" },
  { "paths *: everything", { ep("a", { paths = "*" }) }, "h", "/", "GET", "a" },
  { "pathRegex is unanchored", { ep("a", { pathRegex = "v[0-9]+/users" }) }, "h", "/api/v2/users/1", "GET", "a" },
  { "pathRegex is case-sensitive", { ep("a", { pathRegex = "^/api" }) }, "h", "/API/x", "GET", nil },
  { "pathRegex anchors are honoured", { ep("a", { pathRegex = "^/api$" }) }, "h", "/api/x", "GET", nil },
  { "pathRegex wins over paths", { ep("a", { pathRegex = "^/r", paths = "/p" }) }, "h", "/p", "GET", nil },
  { "pathRegex wins over paths (match)", { ep("a", { pathRegex = "^/r", paths = "/p" }) }, "h", "/r", "GET", "a" },

  -- methods
  { "methods: GET", { ep("a", { methods = { "GET" } }) }, "h", "/x", "GET", "a" },
  { "methods: POST is not GET", { ep("a", { methods = { "GET" } }) }, "h", "/x", "POST", nil },
  { "GET answers HEAD", { ep("a", { methods = { "GET" } }) }, "h", "/x", "HEAD", "a" },
  { "POST does not answer HEAD", { ep("a", { methods = { "POST" } }) }, "h", "/x", "HEAD", nil },
  { "HEAD does not answer GET", { ep("a", { methods = { "HEAD" } }) }, "h", "/x", "GET", nil },
  { "methods are case-insensitive in config", { ep("a", { methods = { "get", "Post" } }) }, "h", "/x", "POST", "a" },
  { "no methods: any method", { ep("a") }, "h", "/x", "PURGE", "a" },
  { "method mismatch falls to the next route", { ep("a", { methods = { "GET" } }), ep("b") }, "h", "/x", "DELETE", "b" },

  -- order
  { "first declared wins", { ep("a", { paths = "/x" }), ep("b", { paths = "/x" }) }, "h", "/x", "GET", "a" },
  { "a * endpoint declared before a specific host wins",
    { ep("any", { host = "*", paths = "/x" }), ep("foo", { host = "foo.com", paths = "/x" }) },
    "foo.com", "/x", "GET", "any" },
  { "a specific host declared before * wins",
    { ep("foo", { host = "foo.com", paths = "/x" }), ep("any", { host = "*", paths = "/x" }) },
    "foo.com", "/x", "GET", "foo" },
  -- Express Gateway would try host groups in order of first appearance ([a, c] then [b],
  -- giving c); tollgate keeps declaration order (README, "Coming from Express Gateway").
  { "declaration order across host groups (a documented difference from EG)",
    { ep("a", { host = "*", paths = "/p" }), ep("b", { host = "foo.com", paths = "/x" }),
      ep("c", { host = "*", paths = "/x" }) },
    "foo.com", "/x", "GET", "b" },
  { "wildcard host declared before an exact one wins",
    { ep("w", { host = "*.foo.com", paths = "/x" }), ep("e", { host = "api.foo.com", paths = "/x" }) },
    "api.foo.com", "/x", "GET", "w" },
  { "a /:x route before a literal one wins",
    { ep("param", { paths = "/:x" }), ep("lit", { paths = "/x" }) }, "h", "/x", "GET", "param" },
  { "a literal route before /:x wins",
    { ep("lit", { paths = "/x" }), ep("param", { paths = "/:x" }) }, "h", "/x", "GET", "lit" },
  { "a catch-all declared first wins", { ep("all"), ep("x", { paths = "/x" }) }, "h", "/x", "GET", "all" },
  { "a catch-all declared last gets the rest", { ep("x", { paths = "/x" }), ep("all") }, "h", "/y", "GET", "all" },
  { "pathRegex in declaration order",
    { ep("re", { pathRegex = "^/x" }), ep("lit", { paths = "/x" }) }, "h", "/x", "GET", "re" },
  { "other host's endpoint never matches",
    { ep("foo", { host = "foo.com" }), ep("bar", { host = "bar.com" }) }, "bar.com", "/x", "GET", "bar" },
}

describe("router.match", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local rt = build(c[2])
      local got = match_name(rt, c[3], c[4], c[5])
      assert.equal(c[6], got)
    end)
  end
end)

-- { case, endpoint, request path, expected params (as a table: [0], named, [1]...) }
local PARAMS = {
  { "* gives the whole decoded path as [0]", ep("a"), "/a/b%20c", { [0] = "/a/b c" } },
  { "/a/* gives the rest as [0]", ep("a", { paths = "/a/*" }), "/a/b/c", { [0] = "b/c" } },
  { "/a/* keeps a trailing slash in [0]", ep("a", { paths = "/a/*" }), "/a/b/", { [0] = "b/" } },
  { "/a/* on /a/ gives an empty [0]", ep("a", { paths = "/a/*" }), "/a/", { [0] = "" } },
  { "/a/* decodes [0]", ep("a", { paths = "/a/*" }), "/A/x%2Fy%20z", { [0] = "x/y z" } },
  { "/* gives the path without the slash", ep("a", { paths = "/*" }), "/x/y", { [0] = "x/y" } },
  { "pathRegex groups are [0], [1]", ep("a", { pathRegex = "^/v(\\d+)/(.*)$" }), "/v2/x/y",
    { [0] = "2", [1] = "x/y" } },
  { "exact path: no params", ep("a", { paths = "/a" }), "/a", {} },
}

describe("router params", function()
  for _, c in ipairs(PARAMS) do
    it(c[1], function()
      local rt = build { c[2] }
      local name, params = match_name(rt, "h", c[3], "GET")
      assert.equal("a", name)
      local got = {}
      for k, v in pairs(params) do
        if k ~= "raw0" then got[k] = v end
      end
      assert.same(c[4], got)
    end)
  end

  it("raw0 is [0] still percent-encoded (for stripPath)", function()
    local rt = build { ep("a", { paths = "/a/*" }) }
    local _, params = match_name(rt, "h", "/a/x%2Fy", "GET")
    assert.equal("x%2Fy", params.raw0)
    assert.equal("x/y", params[0])
  end)

  it("/a/:id captures the id, and [0] stays for an unnamed capture (Express)", function()
    -- Express: req.params = { id = "42" }; params[0] is undefined, so
    -- proxy's stripPath sends "" for /a/:id (eg-notes §5.4).
    local rt = build { ep("a", { paths = "/a/:id" }) }
    local name, params = match_name(rt, "h", "/a/42", "GET")
    assert.equal("a", name)
    assert.is_true(params.id == "42" or params[1] == "42", "the :id capture is kept")
    assert.is_nil(params[0])
    assert.is_nil(params.raw0)
  end)

  it("/a/:id/* puts the * capture in [0]", function()
    local rt = build { ep("a", { paths = "/a/:id/*" }) }
    local name, params = match_name(rt, "h", "/a/42/x/y", "GET")
    assert.equal("a", name)
    assert.equal("x/y", params[0])
    assert.equal("x/y", params.raw0)
  end)
end)

describe("router fall-through (after)", function()
  it("gives the next matching route after the given index, then nil", function()
    local rt = build {
      ep("a", { paths = "/x" }),
      ep("skip", { paths = "/y" }),
      ep("b", { pathRegex = "^/x" }),
      ep("other", { host = "other.com" }),
      ep("c"),
    }
    local seen = {}
    local route = rt:match("h", "/x", "GET")
    while route do
      seen[#seen + 1] = route.endpoint.name
      route = rt:match("h", "/x", "GET", route.index)
    end
    assert.same({ "a", "b", "c" }, seen)
  end)

  it("skips routes whose method does not match", function()
    local rt = build {
      ep("get", { paths = "/x", methods = { "GET" } }),
      ep("post", { paths = "/x", methods = { "POST" } }),
      ep("all", { paths = "/x" }),
    }
    local r1 = rt:match("h", "/x", "POST")
    assert.equal("post", r1.endpoint.name)
    local r2 = rt:match("h", "/x", "POST", r1.index)
    assert.equal("all", r2.endpoint.name)
    assert.is_nil((rt:match("h", "/x", "POST", r2.index)))
  end)

  it("each path of an endpoint is its own route, in list order", function()
    local rt = build { ep("a", { paths = { "/x", "/:p" } }), ep("b", { paths = "/x" }) }
    local r1 = rt:match("h", "/x", "GET")
    local r2 = rt:match("h", "/x", "GET", r1.index)
    local r3 = rt:match("h", "/x", "GET", r2.index)
    assert.same({ "a", "/x", "a", "/:p", "b" },
      { r1.endpoint.name, r1.path, r2.endpoint.name, r2.path, r3.endpoint.name })
  end)
end)

-- { case, endpoints, path, expected route name (nil), expected Allow (nil: none) }
local OPTIONS = {
  { "only other methods: Allow with HEAD after GET",
    { ep("g", { paths = "/x", methods = { "GET" } }), ep("p", { paths = "/x", methods = { "POST" } }) },
    "/x", nil, "GET,HEAD,POST" },
  { "methods in route order, as Express lists them",
    { ep("a", { paths = "/x", methods = { "POST", "GET" } }) }, "/x", nil, "POST,GET,HEAD" },
  { "HEAD listed once",
    { ep("a", { paths = "/x", methods = { "GET", "HEAD" } }) }, "/x", nil, "GET,HEAD" },
  { "only routes whose path matches count",
    { ep("a", { paths = "/x", methods = { "PUT" } }), ep("b", { paths = "/y", methods = { "DELETE" } }) },
    "/x", nil, "PUT" },
  { "a route that takes any method answers OPTIONS itself",
    { ep("g", { paths = "/x", methods = { "GET" } }), ep("all", { paths = "/x" }) }, "/x", "all", nil },
  { "a route that lists OPTIONS answers it",
    { ep("o", { paths = "/x", methods = { "GET", "OPTIONS" } }) }, "/x", "o", nil },
  { "no route for the path: no Allow",
    { ep("g", { paths = "/x", methods = { "GET" } }) }, "/nope", nil, nil },
}

describe("router OPTIONS", function()
  for _, c in ipairs(OPTIONS) do
    it(c[1], function()
      local rt = build(c[2])
      local route, allow = rt:match("h", c[3], "OPTIONS")
      assert.equal(c[4], route and route.endpoint.name or nil)
      if route then
        assert.is_table(allow)
      else
        assert.equal(c[5], allow)
      end
    end)
  end

  it("another method that does not match gets no Allow", function()
    local rt = build { ep("g", { paths = "/x", methods = { "GET" } }) }
    local route, allow = rt:match("h", "/x", "DELETE")
    assert.is_nil(route)
    assert.is_nil(allow)
  end)
end)

describe("router errors", function()
  it("an invalid pathRegex names the endpoint and key", function()
    local rt, err, bad, key = router.new { ep("a", { pathRegex = "(" }) }
    assert.is_nil(rt)
    assert.matches("invalid regular expression", err, 1, true)
    assert.equal("a", bad.name)
    assert.equal("pathRegex", key)
  end)

  it("an invalid hostRegex names the endpoint and key", function()
    local rt, err, bad, key = router.new { ep("ok"), ep("b", { hostRegex = "[a-" }) }
    assert.is_nil(rt)
    assert.is_string(err)
    assert.equal("b", bad.name)
    assert.equal("hostRegex", key)
  end)
end)

describe("router index", function()
  -- Counts the path tests match() makes: every test reads route.m.kind.
  local function count_tests(rt)
    local n = 0
    for _, r in ipairs(rt.routes) do
      local m = r.m
      r.m = setmetatable({}, { __index = function(_, k)
        if k == "kind" then n = n + 1 end
        return m[k]
      end })
    end
    return function() local v = n; n = 0; return v end
  end

  it("with 5,000 endpoints of distinct hosts, the last one costs a few tests", function()
    local eps = {}
    for i = 1, 5000 do
      eps[i] = ep("e" .. i, { host = "h" .. i .. ".example.com", paths = { "/x", "/y/*" } })
    end
    eps[#eps + 1] = ep("fallback", { host = "*", paths = "/z" })
    local rt = build(eps)
    assert.equal(10001, #rt.routes)
    local tests = count_tests(rt)

    assert.equal("e5000", (match_name(rt, "h5000.example.com", "/x", "GET")))
    assert.is_true(tests() <= 2)
    assert.equal("e4999", (match_name(rt, "H4999.example.com:8080", "/y/q", "GET")))
    assert.is_true(tests() <= 2)
    assert.is_nil((match_name(rt, "unknown.example.com", "/x", "GET")))
    assert.is_true(tests() <= 1)
    assert.equal("fallback", (match_name(rt, "h1.example.com", "/z", "GET")))
    assert.is_true(tests() <= 2)
  end)

  it("with 5,000 first path segments on one host, a match costs a few tests", function()
    local eps = {}
    for i = 1, 5000 do
      eps[i] = ep("s" .. i, { paths = { "/s" .. i, "/s" .. i .. "/*" } })
    end
    local rt = build(eps)
    local tests = count_tests(rt)
    assert.equal("s4321", (match_name(rt, "h", "/S4321/deep/path", "GET")))
    assert.is_true(tests() <= 2)
    assert.is_nil((match_name(rt, "h", "/nothing", "GET")))
    assert.is_true(tests() <= 1)
  end)

  it("the candidate lists of a host bucket are small", function()
    local eps = {}
    for i = 1, 5000 do
      eps[i] = ep("e" .. i, { host = "h" .. i .. ".example.com", paths = "/x" })
    end
    local rt = build(eps)
    local b = rt.exact["h5000.example.com"]
    assert.is_table(b)
    assert.equal(1, #b.segs.x)
    assert.equal(0, #b.wild)
    assert.equal(0, #rt.patterns)
    assert.equal(0, #rt.any.wild)
  end)
end)
