-- luacheck: max line length 140
-- rewrite and its conditions on requests parsed by the gateway's C: the URL
-- that goes upstream, redirects, path-to-regexp and String.replace details.

local testing = require "tollgate.testing"
local core = require "tollgate.core"

local mod = testing.policy("rewrite", { rewrite = "/" }).module -- registers the conditions
local conditions = require "tollgate.conditions"

local function cond(name, match)
  return assert(conditions.compile({ name = name, match = match }, "c"))
end

-- A gateway whose pipeline is this rewrite step, then a real proxy step, so
-- what reaches the upstream is what proxy sends.
local function gateway(condition, action)
  return testing.gateway{
    http = { port = 0 },
    apiEndpoints = { api = { paths = "*" } },
    serviceEndpoints = { up = { url = "http://upstream.test" } },
    policies = { "rewrite", "proxy" },
    pipelines = { p = { apiEndpoints = { "api" }, policies = {
      { rewrite = { { condition = condition, action = action } } },
      { proxy = { { action = { serviceEndpoint = "up" } } } },
    } } },
  }
end

-- { case, condition { name, match }, action, request, expected: upstream path, or status + headers + body }
local CASES = {
  -- pathmatch + rewrite
  { "a named value", { "pathmatch", "/tina/:code" }, { rewrite = "/status/:code" },
    { path = "/tina/42" }, { upstream = "/status/42" } },
  { "case-insensitive, trailing slash allowed", { "pathmatch", "/Tina/:code" }, { rewrite = "/s/:code" },
    { path = "/TINA/ab/" }, { upstream = "/s/ab" } },
  { "the query is inside a value that reaches the end (the plugin matches req.url)",
    { "pathmatch", "/t/:code" }, { rewrite = "/s/:code" }, { path = "/t/ab?x=1" }, { upstream = "/s/ab?x=1" } },
  { "several values, reordered", { "pathmatch", "/u/:user/p/:post" }, { rewrite = "/posts/:post/by/:user" },
    { path = "/u/ann/p/7" }, { upstream = "/posts/7/by/ann" } },
  { "an optional value, present", { "pathmatch", "/a/:x?" }, { rewrite = "/b/:x?" },
    { path = "/a/1" }, { upstream = "/b/1" } },
  { "an optional value, absent", { "pathmatch", "/a/:x?" }, { rewrite = "/b/:x?" },
    { path = "/a" }, { upstream = "/b" } },
  { "a repeated value", { "pathmatch", "/files/:rest*" }, { rewrite = "/static/:rest*" },
    { path = "/files/a/b/c.txt" }, { upstream = "/static/a/b/c.txt" } },
  { "a custom pattern, and an escaped ? (plain ? makes a value optional)", { "pathmatch", "/v:n(\\d+)/:r" },
    { rewrite = "/api/:r\\?version=:n" },
    { path = "/v2/users" }, { upstream = "/api/users?version=2" } },
  { "percent-escapes in a value are kept", { "pathmatch", "/q/:term" }, { rewrite = "/search/:term" },
    { path = "/q/a%20b%2Fc" }, { upstream = "/search/a%20b%2Fc" } },
  { "no match: the step is skipped", { "pathmatch", "/tina/:code" }, { rewrite = "/status/:code" },
    { path = "/other/1" }, { upstream = "/other/1" } },
  { "a value missing from the condition is a 500", { "pathmatch", "/a/:x" }, { rewrite = "/b/:y" },
    { path = "/a/1" }, { status = 500 } },
  { "a value the rewrite's pattern refuses is a 500", { "pathmatch", "/a/:x" }, { rewrite = "/b/:x(\\d+)" },
    { path = "/a/abc" }, { status = 500 } },

  -- regexpmatch + rewrite
  { "$1", { "regexpmatch", "^/js/(.*)$" }, { rewrite = "/src/js/$1" },
    { path = "/js/a/b.js" }, { upstream = "/src/js/a/b.js" } },
  { "only the first match is replaced, the rest kept", { "regexpmatch", "o" }, { rewrite = "0" },
    { path = "/foo/boo" }, { upstream = "/f0o/boo" } },
  { "$& $` $' $$", { "regexpmatch", "b+" }, { rewrite = "[$&|$`|$'|$$]" },
    { path = "/abbc" }, { upstream = "/a[bb|/a|c|$]c" } },
  { "a group that did not take part is empty", { "regexpmatch", "^/(x)?(y)" }, { rewrite = "/<$1>$2" },
    { path = "/yz" }, { upstream = "/<>yz" } },
  { "$ with a group number beyond the groups is literal", { "regexpmatch", "^/(a)" }, { rewrite = "/$2$1" },
    { path = "/a" }, { upstream = "/$2a" } },
  { "$12 with one group: $1 then 2", { "regexpmatch", "^/(a)" }, { rewrite = "/$12" },
    { path = "/a" }, { upstream = "/a2" } },
  { "regexpmatch is case-sensitive", { "regexpmatch", "^/JS/" }, { rewrite = "/x/" },
    { path = "/js/a" }, { upstream = "/js/a" } },
  { "the query can be rewritten", { "regexpmatch", "\\?lang=(\\w+)" }, { rewrite = "/$1" },
    { path = "/page?lang=fr" }, { upstream = "/page/fr" } },

  -- redirects
  { "redirect: 302 with Location and Express's text body", { "pathmatch", "/old/:id" },
    { rewrite = "/new/:id", redirect = 302 }, { path = "/old/9" },
    { status = 302, headers = { location = "/new/9", vary = "Accept", ["content-type"] = "text/plain; charset=utf-8" },
      body = "Found. Redirecting to /new/9" } },
  { "redirect: true is 302", { "regexpmatch", "^/a" }, { rewrite = "/b", redirect = true }, { path = "/a" },
    { status = 302, headers = { location = "/b" } } },
  { "redirect: 301, HTML when preferred", { "regexpmatch", "^/a" }, { rewrite = "/b?x=<1>", redirect = 301 },
    { path = "/a", headers = { Accept = "text/html,*/*;q=0.8" } },
    { status = 301, headers = { location = "/b?x=%3C1%3E", ["content-type"] = "text/html; charset=utf-8" },
      body = '<p>Moved Permanently. Redirecting to <a href="/b?x=%3C1%3E">/b?x=%3C1%3E</a></p>' } },
  { "redirect: neither text nor HTML acceptable, empty body", { "regexpmatch", "^/a" },
    { rewrite = "/b", redirect = 307 }, { path = "/a", headers = { Accept = "application/json" } },
    { status = 307, headers = { location = "/b", ["content-type"] = false }, body = "" } },
  { "redirect to another host", { "pathmatch", "/go/:site" },
    { rewrite = "https\\://:site.example/", redirect = 308 }, { path = "/go/docs" },
    { status = 308, headers = { location = "https://docs.example/" } } },
}

describe("rewrite", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local gw = gateway({ name = c[2][1], match = c[2][2] }, c[3])
      local log = stub(core, "log_error")
      local ok, res = pcall(gw.request, gw, c[4])
      log:revert()
      assert(ok, res)
      local want = c[5]
      if want.upstream then
        assert.equal(200, res.status)
        assert.equal(want.upstream, res.upstream.path)
      else
        assert.equal(want.status, res.status)
        assert.is_nil(res.upstream)
        if want.status == 500 then assert.stub(log).was_called(1) end
        if want.body then assert.equal(want.body, res.body) end
        for name, v in pairs(want.headers or {}) do
          if v == false then assert.is_nil(res.headers[name], name)
          else assert.equal(v, res.headers[name], name) end
        end
      end
    end)
  end

  it("without a pathmatch or regexpmatch condition: 500, logged", function()
    local log = stub(core, "log_error")
    finally(function() log:revert() end)
    local res = gateway(nil, { rewrite = "/x" }):request{ path = "/a" }
    assert.equal(500, res.status)
    assert.truthy(log.calls[1].vals[1]:find("no pathmatch or regexpmatch condition matched", 1, true))
  end)

  it("later steps see the new URL, path and query", function()
    local gw = testing.gateway([[
http:
  port: 0
apiEndpoints:
  api:
    paths: '*'
policies: [rewrite, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - rewrite:
          - condition: { name: regexpmatch, match: '^/v1/' }
            action: { rewrite: /v2/ }
      - terminate:
          - condition: { name: pathExact, path: '/v2/items?sort=asc' }
            action: { statusCode: 299, message: rewritten }
          - action: { statusCode: 404, message: not rewritten }
]])
    local res = gw:request{ path = "/v1/items?sort=asc" }
    assert.equal(299, res.status)
    assert.equal("rewritten", res.body)
  end)

  it("the request object's url, path and query follow the rewrite", function()
    local p = testing.policy("rewrite", { rewrite = "/b" }, { condition = cond("regexpmatch", "^/a\\?.*$") })
    local res = p:run({ path = "/a?x=1" }, { no_upstream = true })
    local req = res.req
    assert.equal("/b", req.url)
    assert.equal("/b", req.path)
    assert.is_falsy(req.query)
  end)

  -- { Express path, URL, expected values (nil: no match) }
  local PATHS = {
    { "/a/:b", "/a/x", { b = "x" } },
    { "/a/:b", "/a/x/", { b = "x" } },
    { "/a/:b", "/a/x/y", nil },
    { "/a/:b", "/a", nil },
    { "/a/:b?", "/a", {} },
    { "/a/:b+", "/a/x/y", { b = "x/y" } },
    { "/a/:b+", "/a", nil },
    { "/:a.:ext", "/file.txt", { a = "file", ext = "txt" } },
    { "/a/(\\d+)", "/a/12", { [0] = "12" } },
    { "/a/(\\d+)", "/a/x", nil },
    { "/a\\:b", "/a:b", {} },
    { "/a.b", "/aXb", nil },
  }
  for _, c in ipairs(PATHS) do
    it("pathmatch " .. c[1] .. " on " .. c[2], function()
      local fn = cond("pathmatch", c[1])
      local req = testing.request{ path = c[2] }
      assert.equal(c[3] ~= nil, fn(req))
      if c[3] then assert.same(c[3], req.ctx.matchedCondition) end
    end)
  end

  it("encodes what a Location cannot carry, keeps existing escapes", function()
    assert.equal("/a%20b/%C3%A9?q=%25x&r=%41", mod.encode_url("/a b/\195\169?q=%x&r=%41"))
  end)
end)
