-- Custom policies used by name from a YAML gateway, on the real binary:
-- where they are found, their schema, the constructor, the phases, the
-- request API (ctx, user, short-circuit, bodies) and how their errors are
-- reported.

local H = require "spec.06-lua.helpers"

local process = H.process

-- ---- policies -------------------------------------------------------------------------

-- Module-level state: `built` counts constructor runs in this generation's
-- Lua state, `served` counts requests.
local COUNTED = [[
local built, served = 0, 0
return {
  name = "counted",
  schema = { properties = { label = { type = "string", default = "c" } } },
  new = function(conf)
    built = built + 1
    return { label = conf.label, serial = built }
  end,
  access = function(self, req)
    served = served + 1
    return 200, self.label, { ["X-Built"] = built, ["X-Served"] = served,
      ["X-Serial"] = self.serial }
  end,
}
]]

local function answer_policy(name, text)
  return ([[
return {
  name = %q,
  access = function(self, req) return 200, %q end,
}
]]):format(name, text)
end

local TYPED = [[
local cjson = require "cjson"
return {
  name = "typed",
  schema = { description = "shows its options", properties = {
    label = { type = "string", required = true, description = "what to call it" },
    count = { type = "integer", default = 3, minimum = 1, description = "how many" },
    mode = { type = "string", enum = { "fast", "slow" }, default = "fast", description = "how" },
    tags = { type = "array", items = { type = "string" }, description = "labels" },
  } },
  new = function(conf) return conf end,
  access = function(self)
    return 200, cjson.encode(self), { ["Content-Type"] = "application/json" }
  end,
}
]]

-- Every phase, and req.ctx between two policies of the pipeline.
-- first: access writes ctx, response reads it; second: reads ctx in access
-- (sends it upstream) and in log (records it in the shared dictionary).
local FIRST = [[
return {
  name = "first",
  access = function(self, req)
    req.ctx.trail = { "first.access" }
    req.ctx.mark = req:header("x-mark")
  end,
  response = function(self, req)
    local t = req.ctx.trail
    t[#t + 1] = "first.response"
    req.response:set_header("X-Trail", table.concat(t, ","))
    req.response:set_header("X-Upstream-Status", req.response:status())
  end,
}
]]

local SECOND = [[
local shdict = require "tollgate.shdict"
return {
  name = "second",
  access = function(self, req)
    local t = req.ctx.trail
    t[#t + 1] = "second.access"
    req:set_header("X-Ctx-Seen", table.concat(t, ","))
  end,
  response = function(self, req)
    local t = req.ctx.trail
    t[#t + 1] = "second.response"
  end,
  log = function(self, req)
    local t = req.ctx.trail
    t[#t + 1] = "second.log"
    if req.ctx.mark then
      shdict.set("log:" .. req.ctx.mark, table.concat(t, ",") .. ";" .. req.response:status(), 60)
    end
  end,
}
]]

-- Answers instead of the upstream when X-Deny is present.
local GUARD = [[
return {
  name = "guard",
  access = function(self, req)
    local why = req:header("x-deny")
    if why then
      return 403, "denied: " .. why, { ["X-Why"] = why, ["Content-Type"] = "text/plain" }
    end
  end,
}
]]

-- Authenticates from X-User (req.user), and a later step tells who it is.
local LOGIN = [[
return {
  name = "login",
  access = function(self, req)
    local u = req:header("x-user")
    if u then req.user = { id = u, sub = u } end
  end,
}
]]
local WHOAMI = [[
return {
  name = "whoami",
  access = function(self, req) return 200, "hello " .. req.user.id end,
}
]]

-- Rewrites both bodies: the request body upper-cased (and marked), the
-- response body wrapped.
local BODIES = [[
return {
  name = "bodies",
  access = function(self, req)
    local b = assert(req:body())
    req:set_body(b:upper() .. "!!")
    req.ctx.in_len = #b
  end,
  response = function(self, req)
    local b = assert(req.response:body())
    req.response:set_body("[" .. #b .. "]" .. b)
    req.response:set_header("X-In-Len", req.ctx.in_len)
  end,
}
]]

-- Lua errors in each phase; line numbers matter.
local BOOM = [[
return {
  name = "boom",
  access = function(self, req)
    if req:header("x-where") == "access" then
      local t = nil
      return t.field
    end
  end,
  response = function(self, req)
    if req:header("x-where") == "response" then
      error("response went wrong")
    end
  end,
}
]]

local BAD_NEW = [[
return {
  name = "badnew",
  new = function(conf)
    local cfg = nil
    return cfg.missing
  end,
  access = function() end,
}
]]

local function pipeline(policies_yaml, extra)
  return H.HEAD .. (extra or "") .. [[
apiEndpoints:
  api: { paths: '/*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${UP}' }
policies: [proxy, terminate, peek]] .. policies_yaml.names .. [[]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - peek:
]] .. policies_yaml.steps
end

-- ---- where policies are found -----------------------------------------------------------

describe("custom policies by name in YAML are found", function()
  -- files: where the policy file goes; extra: the tollgate: settings line
  local CASES = {
    { what = "in policies/ beside the config", name = "here",
      files = { ["policies/here.lua"] = answer_policy("here", "from policies/") },
      body = "from policies/" },
    { what = "in a relative tollgate.policyPaths directory", name = "libbed",
      extra = "  policyPaths: [lib/policies]\n",
      files = { ["lib/policies/libbed.lua"] = answer_policy("libbed", "from lib/policies") },
      body = "from lib/policies" },
    { what = "in policies/ first, then tollgate.policyPaths", name = "both",
      extra = "  policyPaths: [lib/policies]\n",
      files = { ["policies/both.lua"] = answer_policy("both", "beside wins"),
                ["lib/policies/both.lua"] = answer_policy("both", "path loses") },
      body = "beside wins" },
    { what = "beside the config before the stock library (a user's terminate)", name = "terminate",
      files = { ["policies/terminate.lua"] = answer_policy("terminate", "my terminate") },
      body = "my terminate" },
  }
  for _, c in ipairs(CASES) do
    it(c.what, function()
      local g = H.start{ config = H.HEAD .. (c.extra or "") .. ([[
apiEndpoints:
  api: { paths: '/*' }
policies: [%s]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - %s:
]]):format(c.name, c.name), files = c.files }
      local res = assert(g:get("/x"))
      assert.equal(200, res.status)
      assert.equal(c.body, res.body)
    end)
  end

  it("in an absolute tollgate.policyPaths directory", function()
    local dir = process.tmpdir("tollgate-06-policies")
    finally(function() process.rm_rf(dir) end)
    assert(process.write_file(dir .. "/abs.lua", answer_policy("abs", "from an absolute path")))
    local g = H.start{ config = H.HEAD .. "  policyPaths: [" .. dir .. "]\n" .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [abs]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - abs:
]] }
    assert.equal("from an absolute path", assert(g:get("/x")).body)
  end)

  it("not found: -t names the policy, the file:line and where it looked", function()
    local code, out = H.server.check(H.HEAD .. "  policyPaths: [lib/policies]\n" .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [missing]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - missing:
]])
    assert.equal(1, code, out)
    H.contains("gateway.config.yml:9:", out)
    H.contains('unknown policy "missing"', out)
    H.contains("lib/policies", out)
  end)
end)

-- ---- schema ---------------------------------------------------------------------------------

describe("a custom policy's schema", function()
  local CONFIG = H.HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [typed]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - typed:
          - action:
              label: first
]]
  local ACTION_LINE = 15 -- "label: first" (H.HEAD is 5 lines)

  it("gives the policy its options with the defaults applied", function()
    local g = H.start{ config = CONFIG, files = { ["policies/typed.lua"] = TYPED } }
    local res = assert(g:get("/x"))
    assert.equal(200, res.status, res.body)
    assert.same({ label = "first", count = 3, mode = "fast" }, H.json(res))
  end)

  -- what replaces "label: first"; the error's line (relative to it), key and words
  local ERRORS = {
    { what = "a wrong type", action = { "label: x", "count: many" }, line = 1,
      key = "action.count", words = "expected integer, got \"many\"" },
    { what = "a coerced type outside its minimum", action = { "label: x", "count: '0'" }, line = 1,
      key = "action.count", words = "must be at least 1" },
    { what = "a value outside the enum", action = { "label: x", "mode: medium" }, line = 1,
      key = "action.mode", words = "must be one of fast, slow, got \"medium\"" },
    { what = "a missing required option (with its description)", action = { "count: 2" }, line = 0,
      key = "action.label", words = "is required (what to call it)" },
    { what = "an unknown key", action = { "label: x", "colour: red" }, line = 1,
      key = "action.colour", words = "unknown option (known: count, label, mode, tags)" },
    { what = "a wrong item type in a list", action = { "label: x", "tags: [a, {b: 1}]" }, line = 1,
      key = "action.tags[2]", words = "expected string, got a mapping" },
  }
  for _, c in ipairs(ERRORS) do
    it("refuses " .. c.what .. " with file:line: key", function()
      local text = CONFIG:gsub("label: first\n",
        table.concat(c.action, "\n              ") .. "\n")
      local code, out = H.server.check(text, { files = { ["policies/typed.lua"] = TYPED } })
      assert.equal(1, code, out)
      H.contains("gateway.config.yml:" .. (ACTION_LINE + c.line) .. ": pipelines.p.policies[1].typed[1]." ..
        c.key .. ": " .. c.words, out)
    end)
  end
end)

-- ---- the constructor ---------------------------------------------------------------------------

describe("a custom policy's constructor", function()
  it("runs once per config load, however many requests, and again on reload", function()
    local g = H.start{ config = H.HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [counted]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - counted: { action: { label: one } }
]], files = { ["policies/counted.lua"] = COUNTED } }
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    for i = 1, 5 do
      assert(conn:request{ path = "/x" })
      local res = assert(conn:read_response())
      assert.equal("one", res.body)
      assert.equal("1", res.headers["x-built"], "request " .. i)
      assert.equal("1", res.headers["x-serial"])
      assert.equal(tostring(i), res.headers["x-served"], "module state lives on between requests")
    end
    -- more requests on new connections: still the one instance
    for _ = 1, 3 do assert.equal("1", assert(g:get("/x")).headers["x-built"]) end

    -- a reload builds a new generation: its own module state, one constructor run
    assert(process.write_file(g.config_path, (process.read_file(g.config_path):gsub("label: one",
      "label: two"))))
    assert(g:signal("HUP"))
    local res = H.until_(function()
      local r = assert(g:get("/x"))
      return r.body == "two" and r
    end, 5, "the reloaded config")
    assert.equal("1", res.headers["x-built"])
    assert.equal("1", res.headers["x-served"])
  end)

  it("an error in the constructor is refused at load with the policy's file and line", function()
    local code, out = H.server.check(H.HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [badnew]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - badnew:
]], { files = { ["policies/badnew.lua"] = BAD_NEW } })
    assert.equal(1, code, out)
    H.contains("gateway.config.yml:", out)
    H.contains("badnew", out)
    H.contains("badnew.lua:5:", out)
  end)
end)

-- ---- the phases and the request API ------------------------------------------------------------

describe("a custom policy on requests", function()
  local up, g
  setup(function()
    up = H.mock.start{ name = "custom" }
    g = H.server.start{
      config = pipeline({ names = ", first, second, guard, login, whoami, bodies, boom", steps = [[
      - boom:
      - guard:
      - login:
      - whoami:
          - condition: { name: authenticated }
            action: {}
      - terminate:
          - condition: { name: pathExact, path: /private }
            action: { statusCode: 401, message: who are you }
      - bodies:
          - condition: { name: pathMatch, pattern: '^/(bodies|chunked)/' }
      - first:
      - second:
      - proxy: { action: { serviceEndpoint: backend } }
]] }),
      vars = { UP = up.port },
      files = { ["policies/first.lua"] = FIRST, ["policies/second.lua"] = SECOND,
        ["policies/guard.lua"] = GUARD, ["policies/login.lua"] = LOGIN,
        ["policies/whoami.lua"] = WHOAMI, ["policies/bodies.lua"] = BODIES,
        ["policies/boom.lua"] = BOOM, ["policies/peek.lua"] = H.PEEK },
    }
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  it("runs access, response and log in order, sharing req.ctx between policies", function()
    local res = assert(g:get("/echo/phases", { ["X-Mark"] = "m1" }))
    assert.equal(200, res.status)
    -- access of both ran before the upstream: second saw first's ctx
    assert.equal("first.access,second.access", H.json(res).headers["x-ctx-seen"])
    -- response phase: after the upstream answered, in pipeline order
    assert.equal("first.access,second.access,first.response", res.headers["x-trail"])
    assert.equal("200", res.headers["x-upstream-status"])
    -- log phase: after the response went out, with the same ctx
    local logged = H.until_(function()
      local r = assert(g:get("/shdict/log:m1"))
      return r.status == 200 and r.body
    end, 5, "the log phase")
    assert.equal("first.access,second.access,first.response,second.response,second.log;200", logged)
  end)

  it("gives each request its own req.ctx", function()
    local a = assert(g:get("/echo/a", { ["X-Mark"] = "ctx-a" }))
    local b = assert(g:get("/echo/b"))
    assert.equal("first.access,second.access", H.json(a).headers["x-ctx-seen"])
    assert.equal("first.access,second.access", H.json(b).headers["x-ctx-seen"])
  end)

  it("short-circuits with return status, body, headers: the upstream never sees it", function()
    local before = assert(up:count()).requests
    local res = assert(g:get("/echo/x", { ["X-Deny"] = "nope" }))
    assert.equal(403, res.status)
    assert.equal("denied: nope", res.body)
    assert.equal("nope", res.headers["x-why"])
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal(tostring(#"denied: nope"), res.headers["content-length"])
    assert.equal(before + 1, assert(up:count()).requests) -- only the /count request itself
  end)

  it("sets req.user, and the authenticated condition follows it", function()
    local CASES = {
      { user = "ada", path = "/private", status = 200, body = "hello ada" },
      { user = nil, path = "/private", status = 401, body = "who are you" },
    }
    for _, c in ipairs(CASES) do
      local res = assert(g:get(c.path, { ["X-User"] = c.user }))
      assert.equal(c.status, res.status, tostring(c.user))
      assert.equal(c.body, res.body)
    end
  end)

  -- body: what the client sends; chunks: sent chunked instead
  local BODY_CASES = {
    { what = "a small body with Content-Length", body = "hello" },
    { what = "an empty POST body", body = "" },
    { what = "a chunked body", chunks = { "abc", "def", "ghi" } },
    { what = "a 300 KB body (read over several reads)", body = ("x"):rep(300 * 1024) },
  }
  for _, c in ipairs(BODY_CASES) do
    it("rewrites both bodies with Content-Length right at both ends: " .. c.what, function()
      local sent = c.body or table.concat(c.chunks)
      local res = assert(g:request{ method = "POST", path = "/bodies/echo", body = c.body,
        chunks = c.chunks, timeout = 10 })
      assert.equal(200, res.status, res.body:sub(1, 200))
      -- the client: the wrapped body, with its exact length
      assert.equal(tostring(#res.body), res.headers["content-length"])
      assert.is_nil(res.headers["transfer-encoding"])
      assert.equal(tostring(#sent), res.headers["x-in-len"])
      local echo_len, echo = res.body:match("^%[(%d+)%](.*)$")
      assert.equal(#echo, tonumber(echo_len), "the policy read the whole upstream body")
      -- the upstream: the rewritten body, with its exact Content-Length
      echo = H.cjson.decode(echo)
      local want = sent:upper() .. "!!"
      assert.equal(#want, echo.body_length)
      assert.equal(want, echo.body)
      assert.equal(tostring(#want), echo.headers["content-length"])
      assert.is_nil(echo.headers["transfer-encoding"])
    end)
  end

  it("rewrites a chunked upstream response into one with a Content-Length", function()
    local res = assert(g:get("/chunked/3"))
    assert.equal(200, res.status)
    local want = "chunk1\nchunk2\nchunk3\n"
    assert.equal("[" .. #want .. "]" .. want, res.body)
    assert.equal(tostring(#res.body), res.headers["content-length"])
    assert.is_nil(res.headers["transfer-encoding"])
  end)

  local ERROR_CASES = {
    { where = "access", line = 6 },
    { where = "response", line = 11 },
  }
  for _, c in ipairs(ERROR_CASES) do
    it("an error in " .. c.where .. " gives the client a 500 and logs the policy's file:line", function()
      local res = assert(g:get("/echo/boom-" .. c.where, { ["X-Where"] = c.where }))
      assert.equal(500, res.status)
      assert.equal("Internal Server Error", res.body)
      local line = g:wait_log("policy boom %(" .. c.where .. "%):.-boom%.lua:%d+")
      assert.truthy(line)
      local where = g:stderr():match("policy boom %(" .. c.where .. "%):[^\n]-(policies/boom%.lua:%d+)")
      assert.equal("policies/boom.lua:" .. c.line, where)
      -- the worker goes on
      assert.equal(200, assert(g:get("/echo/after")).status)
    end)
  end
end)
