-- tollgate.testing's unit mode (no server): a policy's HTTP calls answered
-- by the test (res.calls), the test clock driving TTLs and windows,
-- testing.validate, and a whole YAML gateway whose upstream request is
-- compared with what the real binary sends for the same request, so the
-- unit mode is shown to run the gateway's own code.

local H = require "spec.06-lua.helpers"
local testing = require "tollgate.testing"
local jwt = require "tollgate.testing.jwt"

local cjson = H.cjson
local process = H.process

-- A user policy (a module table) that asks another service about the
-- caller before letting the request through.
local ENRICH = {
  name = "enrich",
  schema = { properties = { url = { type = "string", required = true } } },
  new = function(conf) return { url = conf.url } end,
  access = function(self, req)
    local http = require "tollgate.http"
    local res, err = http.request{ url = self.url .. "?token=" .. (req:header("x-token") or ""),
      method = "POST", headers = { ["Content-Type"] = "application/json" },
      body = cjson.encode{ path = req.path } }
    if not res then return 503, "auth service: " .. tostring(err) end
    if res.status ~= 200 then return 401, "no" end
    local who = cjson.decode(res.body)
    req.user = who
    req:set_header("x-user", who.id)
    req:set_header("x-auth-server", res.headers["x-server"])
  end,
}

-- One upstream for both the proxied request and the policy's calls,
-- telling them apart by host.
local function upstream(up)
  if up.headers.host == "auth.internal" then
    if up.path:find("token=good", 1, true) then
      return { status = 200, headers = { ["X-Server"] = "auth-1" }, body = '{"id":"ada"}' }
    end
    if up.path:find("token=down", 1, true) then return { error = 502 } end
    return { status = 403, body = "bad token" }
  end
  return { status = 200, body = "upstream saw " .. up.path .. " as " .. tostring(up.headers["x-user"]) }
end

describe("unit mode: a policy's HTTP calls", function()
  local p = testing.policy(ENRICH, { url = "http://auth.internal/check" })

  -- token, then what the client and the call look like
  local CASES = {
    { token = "good", status = 200, body = "upstream saw /orders as ada", user = "ada" },
    { token = "bad", status = 401, body = "no" },
    { token = "down", status = 503, body_has = "auth service: " },
  }
  for _, c in ipairs(CASES) do
    it("are answered by the test's upstream (res.calls): token " .. c.token, function()
      local res = p:run({ path = "/orders", headers = { ["X-Token"] = c.token } }, { upstream = upstream })
      assert.equal(c.status, res.status, res.body)
      if c.body then assert.equal(c.body, res.body) end
      if c.body_has then H.contains(c.body_has, res.body) end
      assert.equal(1, #res.calls)
      local call = res.calls[1]
      assert.equal("POST", call.method)
      assert.equal("/check?token=" .. c.token, call.path)
      assert.equal("auth.internal", call.headers.host)
      assert.equal("application/json", call.headers["content-type"])
      assert.same({ path = "/orders" }, cjson.decode(call.body))
      assert.equal(tostring(#call.body), call.headers["content-length"])
      if c.user then
        assert.same({ id = "ada" }, res.req.user)
        assert.equal("auth-1", res.upstream.headers["x-auth-server"])
      else
        assert.is_nil(res.upstream, "refused requests go nowhere")
      end
    end)
  end
end)

describe("unit mode: HTTP calls and sleeps in the response and log phases", function()
  it("are answered and recorded in order, the log phase's effects visible after run", function()
    local p = testing.policy({ name = "phased",
      response = function(_, req)
        local r = assert(require("tollgate.http").request{ url = "http://svc.internal/resp" })
        req.response:set_header("x-r", r.status)
        req.response:set_body(assert(req.response:body()) .. "+")
      end,
      log = function(_, req)
        req:sleep(5)
        local r = assert(require("tollgate.http").request{ url = "http://svc.internal/log" })
        req.ctx.logged = r.status
      end })
    local t0 = testing.clock.now()
    local res = p:run({ path = "/a" }, { upstream = function(up)
      return { status = up.path == "/a" and 200 or 201, body = "b:" .. up.path }
    end })
    assert.equal(200, res.status)
    assert.equal("201", res.headers["x-r"])
    assert.equal("b:/a+", res.body)
    assert.equal("5", res.headers["content-length"])
    assert.equal(2, #res.calls)
    assert.equal("/resp", res.calls[1].path)
    assert.equal("/log", res.calls[2].path)
    assert.equal("svc.internal", res.calls[2].headers.host)
    assert.equal(201, res.req.ctx.logged)
    assert.equal(5, testing.clock.now() - t0)
  end)
end)

describe("unit mode: the test clock", function()
  -- Remembers a path for `ttl` seconds in the shared dictionary.
  local SEEN = {
    name = "seen",
    schema = { properties = { ttl = { type = "number", default = 60 } } },
    access = function(conf, req)
      local shdict = require "tollgate.shdict"
      local key = "06-unit:seen:" .. req.path
      local v, ttl = shdict.get(key)
      if v then return 200, "seen, " .. math.floor(ttl + 0.5) .. " s left" end
      shdict.set(key, "yes", conf.ttl)
      return 200, "new"
    end,
  }

  it("drives a shared-dictionary TTL", function()
    local p = testing.policy(SEEN, { ttl = 60 })
    local path = "/ttl-" .. tostring(testing.clock.now())
    local STEPS = {
      { advance = 0, body = "new" },
      { advance = 0, body = "seen, 60 s left" },
      { advance = 45, body = "seen, 15 s left" },
      { advance = 14, body = "seen, 1 s left" },
      { advance = 2, body = "new" },          -- expired: remembered again, for 60 s
      { advance = 59, body = "seen, 1 s left" },
    }
    for i, s in ipairs(STEPS) do
      testing.clock.advance(s.advance)
      assert.equal(s.body, p:run({ path = path }, { no_upstream = true }).body, "step " .. i)
    end
  end)

  it("drives a rate-limit window", function()
    local p = testing.policy("rate-limit", { max = 2, windowMs = 10000,
      rateLimitBy = "'06-unit-window-" .. tostring(testing.clock.now()) .. "'" })
    local STEPS = {
      { advance = 0, status = 200 }, { advance = 1, status = 200 }, { advance = 1, status = 429 },
      { advance = 8.5, status = 200 }, -- a new window
      { advance = 0, status = 200 }, { advance = 0, status = 429 },
    }
    for i, s in ipairs(STEPS) do
      testing.clock.advance(s.advance)
      assert.equal(s.status, p:run{ path = "/w" }.status, "step " .. i)
    end
  end)

  it("moves when a policy sleeps, without waiting", function()
    local p = testing.policy({ name = "napper", access = function(_, req)
      req:sleep(30)
      return 200, "woke"
    end })
    local t0, wall0 = testing.clock.now(), H.now()
    assert.equal("woke", p:run{ path = "/" }.body)
    assert.equal(30, testing.clock.now() - t0)
    assert.is_true(H.now() - wall0 < 1)
  end)
end)

describe("unit mode: testing.validate", function()
  local TYPED = {
    name = "typed",
    schema = { properties = {
      label = { type = "string", required = true, description = "what to call it" },
      count = { type = "integer", default = 3, minimum = 1 },
      mode = { type = "string", enum = { "fast", "slow" }, default = "fast" },
      nested = { type = "object", properties = { depth = { type = "integer" } } },
    } },
    access = function() end,
  }

  -- the action, then the error (nil: accepted, with `conf`)
  local CASES = {
    { what = "defaults applied", action = { label = "x" },
      conf = { label = "x", count = 3, mode = "fast" } },
    { what = "a numeric string coerced", action = { label = "x", count = "7" },
      conf = { label = "x", count = 7, mode = "fast" } },
    { what = "a wrong type", action = { label = "x", count = "many" },
      err = 'action.count: expected integer, got "many"' },
    { what = "below the minimum", action = { label = "x", count = 0 },
      err = "action.count: must be at least 1" },
    { what = "outside the enum", action = { label = "x", mode = "medium" },
      err = 'action.mode: must be one of fast, slow, got "medium"' },
    { what = "a missing required option", action = {},
      err = "action.label: is required (what to call it)" },
    { what = "an unknown key", action = { label = "x", colour = "red" },
      err = "action.colour: unknown option (known: count, label, mode, nested)" },
    { what = "an unknown nested key", action = { label = "x", nested = { deep = 1 } },
      err = "action.nested.deep: unknown option (known: depth)" },
    { what = "not a mapping", action = "label",
      err = 'action: expected a mapping of options, got "label"' },
  }
  for _, c in ipairs(CASES) do
    it(c.what, function()
      local conf, err = testing.validate(TYPED, c.action)
      if c.err then
        assert.is_nil(conf)
        assert.equal(c.err, err)
      else
        assert.is_nil(err)
        assert.same(c.conf, conf)
      end
    end)
  end

  it("finds policies by name: stock, beside a config (opts.dir), or not at all", function()
    assert.equal(5, assert(testing.validate("rate-limit", {})).max)
    local dir = process.tmpdir("tollgate-06-validate")
    finally(function() process.rm_rf(dir) end)
    assert(process.mkdir_p(dir .. "/policies"))
    assert(process.write_file(dir .. "/policies/mine.lua",
      "return { name = 'mine', schema = { properties = { n = { type = 'integer' } } },\n" ..
      "  access = function() end }"))
    assert.same({ n = 2 }, testing.validate("mine", { n = 2 }, { dir = dir }))
    local conf, err = testing.validate("mine", { m = 2 }, { dir = dir })
    assert.is_nil(conf)
    assert.equal("action.m: unknown option (known: n)", err)
    conf, err = testing.validate("no-such-policy", {})
    assert.is_nil(conf)
    H.contains("no-such-policy", err)
  end)
end)

-- The same gateway and the same request, through testing.gateway(text)
-- and through the real binary to a mock that echoes what it received.
describe("unit mode and the real binary send the same request upstream", function()
  local SECRET = "06-unit-secret"
  local CONFIG = [[
http: { hostname: 127.0.0.1, port: 0 }
tollgate: { accessLog: stdout }
apiEndpoints:
  api: { host: api.example.com, paths: '/v1/*' }
  open: { host: api.example.com, paths: '/open/*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${UP}/base' }
policies: [jwt, request-transformer, headers, tagger, proxy]
pipelines:
  secured:
    apiEndpoints: [api]
    policies:
      - jwt: { action: { secretOrPublicKey: ]] .. SECRET .. [[, checkCredentialExistence: false } }
      - request-transformer:
          - action: { headers: { add: { x-added: "'yes'" }, remove: [x-remove-me] } }
      - headers:
          action:
            headersPrefix: 'x-gw-'
            forwardHeaders: { ip: req.ip, path: req.url, sub: req.user.sub }
      - tagger: { action: { tag: secured } }
      - proxy: { action: { serviceEndpoint: backend, stripPath: true, xfwd: true } }
  open:
    apiEndpoints: [open]
    policies:
      - tagger: { action: { tag: open } }
      - proxy: { action: { serviceEndpoint: backend } }
]]
  local TAGGER = [[
return {
  name = "tagger",
  schema = { properties = { tag = { type = "string", required = true } } },
  access = function(conf, req)
    req:add_header("x-tag", conf.tag)
    req:add_header("x-tag", req.method)
    req:remove_header("x-secret")
    if req:header("x-rewrite") then req:set_header("x-rewrite", req:header("x-rewrite"):upper()) end
  end,
}
]]

  local up, g, gw, dir
  local token
  setup(function()
    up = H.mock.start{ name = "same" }
    local text = CONFIG:gsub("%${UP}", tostring(up.port))
    g = H.server.start{ config = text, files = { ["policies/tagger.lua"] = TAGGER } }
    dir = process.tmpdir("tollgate-06-same")
    assert(process.mkdir_p(dir .. "/policies"))
    assert(process.write_file(dir .. "/policies/tagger.lua", TAGGER))
    gw = testing.gateway(text, { dir = dir })
    token = jwt.sign({ sub = "ada", exp = os.time() + 3600 }, SECRET, "HS256")
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
    if dir then process.rm_rf(dir) end
  end)

  -- Headers are a list (order and repeats kept); the token placeholder is
  -- replaced by a valid JWT.
  local CASES = {
    { what = "a GET through jwt, transformers and a user policy",
      method = "GET", path = "/v1/items/7?x=1&y=%20z",
      headers = { { "Authorization", "Bearer TOKEN" }, { "X-Remove-Me", "1" }, { "X-Dup", "a" },
        { "X-Dup", "b" }, { "Accept", "*/*" }, { "User-Agent", "spec" }, { "X-Secret", "s" } } },
    { what = "a POST with a body and hop-by-hop headers",
      method = "POST", path = "/v1/orders", body = '{"n":1}',
      headers = { { "Authorization", "Bearer TOKEN" }, { "Content-Type", "application/json" },
        { "Connection", "keep-alive, x-hop" }, { "X-Hop", "dropped" }, { "TE", "trailers" },
        { "Keep-Alive", "timeout=5" }, { "X-Rewrite", "lower" } } },
    { what = "a PUT on another pipeline, without changeOrigin's xfwd",
      method = "PUT", path = "/open/a/b", body = "plain",
      headers = { { "Content-Type", "text/plain" }, { "X-Forwarded-For", "10.0.0.1" },
        { "Via", "1.1 someone" } } },
    { what = "a refused token never goes upstream",
      method = "GET", path = "/v1/items/1", refused = 401,
      headers = { { "Authorization", "Bearer not.a.token" } } },
  }

  local IGNORED = { ["eg-request-id"] = true } -- an id: different on every request

  for _, c in ipairs(CASES) do
    it(c.what, function()
      local headers = { { "Host", "api.example.com" } }
      for _, h in ipairs(c.headers) do
        headers[#headers + 1] = { h[1], (h[2]:gsub("TOKEN", token)) }
      end
      -- the real binary
      local before = assert(up:count()).requests
      local res = assert(g:request{ method = c.method, path = c.path, headers = headers, body = c.body })
      -- unit mode
      local u = gw:request{ method = c.method, path = c.path, headers = headers, body = c.body,
        client = "127.0.0.1", upstream = { status = 200, body = "unit" } }
      if c.refused then
        assert.equal(c.refused, res.status)
        assert.equal(c.refused, u.status)
        assert.equal(before + 1, assert(up:count()).requests)
        assert.is_nil(u.upstream)
        assert.equal(res.headers["www-authenticate"], u.headers["www-authenticate"])
        return
      end
      assert.equal(200, res.status, res.body)
      local echo = H.json(res)
      assert.equal(echo.method, u.upstream.method)
      assert.equal(echo.path, u.upstream.path)
      assert.equal(echo.body, u.upstream.body)
      local real, unit = {}, {}
      for k, v in pairs(echo.headers) do if not IGNORED[k] then real[k] = v end end
      for k, v in pairs(u.upstream.headers) do if not IGNORED[k] then unit[k] = v end end
      assert.same(real, unit)
      assert.is_string(echo.headers["eg-request-id"])
      assert.is_string(u.upstream.headers["eg-request-id"])
    end)
  end
end)

-- Integers go to C as numbers (tg_hdr_edit_int); everything else through
-- tostring. Either way a header says what tostring says.
describe("unit mode: numbers as header values", function()
  local VALUES = { 5, 0, -0.0, -7, 1.5, 1e13, 99999999999999, 1e14, 1e15, 2 ^ 53, 0 / 0, math.huge }

  it("are written as tostring writes them, request and response", function()
    local p = testing.policy({ name = "numbers", access = function(_, req)
      for i, v in ipairs(VALUES) do
        req:set_header("x-n" .. i, v)
        req.response:set_header("x-n" .. i, v)
      end
    end })
    local res = p:run{ path = "/" }
    for i, v in ipairs(VALUES) do
      assert.equal(tostring(v), res.upstream.headers["x-n" .. i], "request header for " .. tostring(v))
      assert.equal(tostring(v), res.headers["x-n" .. i], "response header for " .. tostring(v))
    end
  end)
end)
