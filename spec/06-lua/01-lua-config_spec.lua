-- Gateways written in Lua (`tollgate -c gateway.lua`), served by the real
-- binary and by tollgate.testing.gateway(path) from the same file: ordered
-- lists of endpoints, services and pipelines, policies by name, module
-- tables with action and condition, inline functions, conditions as
-- functions, no top-level `policies` list; and the errors such a file can
-- have.

local H = require "spec.06-lua.helpers"
local testing = require "tollgate.testing"

local process = H.process

-- A user policy found by name in policies/ beside the Lua config.
local STAMP = [[
return {
  name = "stamp",
  schema = { properties = { value = { type = "string", required = true } } },
  new = function(conf) return { value = conf.value } end,
  access = function(self, req) req:set_header("x-stamp", self.value) end,
}
]]

-- The gateway under test. ${UP}: the upstream's port. Endpoint names are
-- chosen so that sorting them would give the opposite order to the
-- declared one ("zz-special" before "aa-general"): only declaration order
-- lets the specific endpoint win. Pipelines "zz" then "aa" both claim the
-- "shared" endpoint: the last one declared serves it.
local GATEWAY = [[
-- a module table given directly, with its own schema
local tagger = {
  name = "tagger",
  schema = { properties = { tag = { type = "string", default = "none" } } },
  new = function(conf) return { tag = conf.tag } end,
  access = function(self, req)
    return 200, "tagged " .. self.tag .. " " .. req.path, { ["X-Tag"] = self.tag }
  end,
}

return {
  http = { hostname = "127.0.0.1", port = 0 },
  tollgate = { accessLog = "stdout" },
  apiEndpoints = {
    { name = "zz-special", paths = { "/api/special" } },
    { name = "aa-general", paths = { "/api/*" } },
    { name = "shared", paths = { "/shared" } },
    { name = "mod", paths = { "/mod/*" } },
    { name = "fn", paths = { "/fn/*" } },
  },
  serviceEndpoints = {
    { name = "z-backend", url = "http://127.0.0.1:${UP}" },
    { name = "a-unused", url = "http://127.0.0.1:9" },
  },
  pipelines = {
    { name = "special", apiEndpoints = { "zz-special" }, policies = {
      { terminate = { action = { statusCode = 200, message = "special" } } },
    } },
    { name = "general", apiEndpoints = { "aa-general" }, policies = {
      { stamp = { action = { value = "by-name" } } },             -- a user policy by name
      function(req) req:set_header("x-inline", "ran " .. req.method) end, -- an inline step
      { proxy = { action = { serviceEndpoint = "z-backend", stripPath = true } } },
    } },
    { name = "zz", apiEndpoints = { "shared" }, policies = {
      { terminate = { action = { statusCode = 200, message = "zz" } } },
    } },
    { name = "aa", apiEndpoints = { "shared" }, policies = {
      { terminate = { action = { statusCode = 200, message = "aa" } } },
    } },
    { name = "modules", apiEndpoints = { "mod" }, policies = {
      -- a module table, with an action and a function condition
      { policy = tagger, action = { tag = "cond" },
        condition = function(req) return req:header("x-pick") == "yes" end },
      -- the same module without an action: its schema's default
      { policy = tagger, condition = function(req) return req.path == "/mod/default" end },
      -- a stock policy by name whose step condition is a function
      { terminate = { { condition = function(req) return req.method == "DELETE" end,
                        action = { statusCode = 405, message = "no deleting" } } } },
      { terminate = { action = { statusCode = 404, message = "no module matched" } } },
    } },
    { name = "functions", apiEndpoints = { "fn" }, policies = {
      -- an inline function answering by returning status, body, headers
      function(req)
        if req.path == "/fn/answer" then
          return 201, "made by a function", { ["X-Fn"] = "1" }
        end
        req.ctx.seen = "first"
      end,
      -- and one that sees what the first left in req.ctx
      function(req) return 200, "ctx " .. tostring(req.ctx.seen) end,
    } },
  },
}
]]

-- What each request gets, from either runner. upstream_path: the request
-- was proxied and the upstream saw this path (plus x-stamp/x-inline).
local CASES = {
  { what = "the specific endpoint declared first wins over the wildcard",
    method = "GET", path = "/api/special", status = 200, body = "special" },
  { what = "the wildcard endpoint takes the rest: stamp by name, inline step, proxy",
    method = "GET", path = "/api/orders/7", status = 200, upstream_path = "/orders/7" },
  { what = "of two pipelines on one endpoint, the last declared serves it",
    method = "GET", path = "/shared", status = 200, body = "aa" },
  { what = "a module table runs when its function condition holds",
    method = "GET", path = "/mod/x", pick = "yes", status = 200, body = "tagged cond /mod/x",
    header = { "x-tag", "cond" } },
  { what = "a module table without an action gets its schema's defaults",
    method = "GET", path = "/mod/default", status = 200, body = "tagged none /mod/default",
    header = { "x-tag", "none" } },
  { what = "a function condition on a stock policy by name",
    method = "DELETE", path = "/mod/x", status = 405, body = "no deleting" },
  { what = "no condition held: the last step answers",
    method = "GET", path = "/mod/x", status = 404, body = "no module matched" },
  { what = "an inline function answers with status, body, headers",
    method = "GET", path = "/fn/answer", status = 201, body = "made by a function",
    header = { "x-fn", "1" } },
  { what = "inline functions share req.ctx",
    method = "GET", path = "/fn/other", status = 200, body = "ctx first" },
  { what = "nothing matches: Express's 404 page",
    method = "GET", path = "/nowhere", status = 404, body_has = "Cannot GET /nowhere" },
}

local function check_case(c, status, body, headers, upstream_path, upstream_headers)
  assert.equal(c.status, status, c.what .. ": " .. tostring(body))
  if c.body then assert.equal(c.body, body, c.what) end
  if c.body_has then H.contains(c.body_has, body, c.what) end
  if c.header then assert.equal(c.header[2], headers[c.header[1]], c.what) end
  if c.upstream_path then
    assert.equal(c.upstream_path, upstream_path, c.what)
    assert.equal("by-name", upstream_headers["x-stamp"], c.what)
    assert.equal("ran " .. c.method, upstream_headers["x-inline"], c.what)
  else
    assert.is_nil(upstream_path, c.what .. ": nothing goes upstream")
  end
end

describe("a Lua gateway through the real binary", function()
  local up, g
  setup(function()
    up = H.mock.start{ name = "lua-config" }
    g = H.server.start{ config_name = "gateway.lua", config = GATEWAY,
      files = { ["policies/stamp.lua"] = STAMP }, vars = { UP = up.port } }
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  for _, c in ipairs(CASES) do
    it(c.what, function()
      local before = assert(up:count()).requests
      local res = assert(g:request{ method = c.method, path = c.path,
        headers = { ["X-Pick"] = c.pick } })
      local up_path, up_headers
      if res.headers["x-upstream"] == "lua-config" then
        local echo = H.json(res)
        up_path, up_headers = echo.path, echo.headers
      else
        -- nothing reached the mock (its /count request is the only new one)
        assert.equal(before + 1, assert(up:count()).requests, c.what)
      end
      check_case(c, res.status, res.body, res.headers, up_path, up_headers)
    end)
  end

  it("needs no top-level policies list, and -t accepts the file", function()
    local code, out = H.server.check(GATEWAY, { config_name = "gateway.lua",
      files = { ["policies/stamp.lua"] = STAMP }, vars = { UP = up.port } })
    assert.equal(0, code, out)
    H.contains("is valid", out)
  end)
end)

describe("the same Lua gateway through testing.gateway(path)", function()
  local dir, gw
  setup(function()
    dir = process.tmpdir("tollgate-06-lua")
    assert(process.mkdir_p(dir .. "/policies"))
    assert(process.write_file(dir .. "/policies/stamp.lua", STAMP))
    assert(process.write_file(dir .. "/gateway.lua", (GATEWAY:gsub("%${UP}", "8081"))))
    gw = testing.gateway(dir .. "/gateway.lua")
  end)
  teardown(function() if dir then process.rm_rf(dir) end end)

  for _, c in ipairs(CASES) do
    it(c.what, function()
      local res = gw:request{ method = c.method, path = c.path,
        headers = { ["X-Pick"] = c.pick },
        upstream = { status = 200, body = "from upstream" } }
      local up = res.upstream
      check_case(c, res.status, res.body, res.headers, up and up.path, up and up.headers)
      if up then
        assert.equal("from upstream", res.body)
        assert.equal("127.0.0.1:8081", up.headers.host)
      end
    end)
  end
end)

-- Errors in a Lua config: `tollgate -t`, start-up and testing.gateway(path)
-- all refuse the file, naming it (and the line when Lua knows it).
local ERRORS = {
  { what = "a Lua syntax error names the file and line",
    text = "return {\n  http = { port = 0 },\n  apiEndpoints = { { name = 'a' }\n  pipelines = {},\n}\n",
    expect = { "gateway.lua:4:", "'}' expected" } },
  { what = "a runtime error names the file and line",
    text = "local t = nil\nlocal x = t.field\nreturn { http = { port = 0 } }\n",
    expect = { "gateway.lua:2:", "attempt to index" } },
  { what = "a file that does not return a table",
    text = "return 42\n",
    expect = { "gateway.lua", "returns a table" } },
  { what = "a module without any phase function",
    text = "return { http = { port = 0 }, apiEndpoints = { { name = 'a', paths = '/x' } },\n" ..
      "  pipelines = { { name = 'p', apiEndpoints = { 'a' },\n" ..
      "    policies = { { policy = { name = 'shapeless', foo = 1 } } } } } }\n",
    expect = { "gateway.lua", "shapeless", "a policy needs at least one of access, response, log" } },
  { what = "a module whose access is not a function",
    text = "return { http = { port = 0 }, apiEndpoints = { { name = 'a', paths = '/x' } },\n" ..
      "  pipelines = { { name = 'p', apiEndpoints = { 'a' },\n" ..
      "    policies = { { policy = { name = 'wrong', access = 'yes' } } } } } }\n",
    expect = { "gateway.lua", "wrong", "access must be a function" } },
  { what = "a module table whose action its schema refuses",
    text = "local m = { name = 'strict', schema = { properties = { n = { type = 'integer' } } },\n" ..
      "  access = function() end }\n" ..
      "return { http = { port = 0 }, apiEndpoints = { { name = 'a', paths = '/x' } },\n" ..
      "  pipelines = { { name = 'p', apiEndpoints = { 'a' },\n" ..
      "    policies = { { policy = m, action = { n = 'many' } } } } } }\n",
    expect = { "gateway.lua", "action.n: expected integer" } },
  { what = "an apiEndpoints entry without a name names the list",
    text = "return { http = { port = 0 },\n  apiEndpoints = { { paths = '/x' } } }\n",
    expect = { "gateway.lua", "apiEndpoints", "name" } },
  { what = "a serviceEndpoints entry without a name names the list",
    text = "return { http = { port = 0 },\n" ..
      "  serviceEndpoints = { { name = 'ok', url = 'http://127.0.0.1:1' },\n" ..
      "    { url = 'http://127.0.0.1:2' } } }\n",
    expect = { "gateway.lua", "serviceEndpoints", "name" } },
  { what = "a pipelines entry without a name names the list",
    text = "return { http = { port = 0 }, apiEndpoints = { { name = 'a', paths = '/x' } },\n" ..
      "  pipelines = { { apiEndpoints = { 'a' }, policies = {} } } }\n",
    expect = { "gateway.lua", "pipelines", "name" } },
  { what = "a policy by name that does not exist",
    text = "return { http = { port = 0 }, apiEndpoints = { { name = 'a', paths = '/x' } },\n" ..
      "  pipelines = { { name = 'p', apiEndpoints = { 'a' },\n" ..
      "    policies = { { ['no-such-policy'] = { action = {} } } } } } }\n",
    expect = { "gateway.lua", "unknown policy \"no-such-policy\"" } },
  { what = "two apiEndpoints entries with the same name",
    text = "return { http = { port = 0 },\n" ..
      "  apiEndpoints = { { name = 'a', paths = '/x' }, { name = 'a', paths = '/y' } },\n" ..
      "  pipelines = { { name = 'p', apiEndpoints = { 'a' },\n" ..
      "    policies = { { terminate = { action = { statusCode = 200 } } } } } } }\n",
    expect = { "gateway.lua", "apiEndpoints", "duplicate", "\"a\"" } },
  { what = "two pipelines entries with the same name",
    text = "return { http = { port = 0 },\n" ..
      "  apiEndpoints = { { name = 'a', paths = '/x' }, { name = 'b', paths = '/y' } },\n" ..
      "  pipelines = { { name = 'p', apiEndpoints = { 'a' }, policies = { function() end } },\n" ..
      "    { name = 'p', apiEndpoints = { 'b' }, policies = { function() end } } } }\n",
    expect = { "gateway.lua", "pipelines", "duplicate", "\"p\"" } },
}

describe("Lua config errors", function()
  for _, c in ipairs(ERRORS) do
    it("tollgate -t: " .. c.what, function()
      local code, out = H.server.check(c.text, { config_name = "gateway.lua" })
      assert.equal(1, code, out)
      for _, e in ipairs(c.expect) do H.contains(e, out, c.what) end
      -- one line: file: message, no Lua traceback
      H.not_contains("stack traceback", out)
    end)

    it("testing.gateway(path): " .. c.what, function()
      local dir = process.tmpdir("tollgate-06-err")
      finally(function() process.rm_rf(dir) end)
      assert(process.write_file(dir .. "/gateway.lua", c.text))
      local ok, err = pcall(testing.gateway, dir .. "/gateway.lua")
      assert.is_false(ok, c.what)
      for _, e in ipairs(c.expect) do H.contains(e, tostring(err), c.what) end
    end)
  end

  it("the binary refuses to start on a bad Lua config and says why", function()
    local g = H.server.start{ config_name = "gateway.lua", config = ERRORS[1].text, wait = false }
    finally(function() g:cleanup() end)
    local code = g:wait_exit(5)
    assert.equal(1, code, g:logs())
    H.contains("gateway.lua:4:", g:logs())
  end)
end)

-- Lua functions where the model has conditions and steps: nested in the
-- stock combinators, and their errors at request time.
describe("Lua functions in a Lua gateway", function()
  local NESTED = [[
local function is_m(req) return req.path == "/m" end
return {
  http = { hostname = "127.0.0.1", port = 0 },
  apiEndpoints = { { name = "a", paths = { "/*" } } },
  pipelines = { { name = "p", apiEndpoints = { "a" }, policies = {
    { terminate = {
      { condition = { name = "allOf", conditions = { { name = "method", methods = "GET" }, is_m } },
        action = { statusCode = 200, message = "allOf" } },
      { condition = { name = "oneOf", conditions = { is_m, function(req) return req.path == "/o" end } },
        action = { statusCode = 200, message = "oneOf" } },
      { condition = { name = "not", condition = function(req) return req.path == "/n" end },
        action = { statusCode = 200, message = "not" } },
      { action = { statusCode = 404, message = "none" } },
    } },
  } } },
}
]]
  -- method, path, then the answer
  local NESTED_CASES = {
    { method = "GET", path = "/m", body = "allOf" },
    { method = "POST", path = "/m", body = "oneOf" },
    { method = "GET", path = "/o", body = "oneOf" },
    { method = "GET", path = "/x", body = "not" },
    { method = "GET", path = "/n", body = "none" },
  }

  it("a function inside allOf, oneOf and not (testing.gateway)", function()
    local dir = process.tmpdir("tollgate-06-nested")
    finally(function() process.rm_rf(dir) end)
    assert(process.write_file(dir .. "/gateway.lua", NESTED))
    local ok, gw = pcall(testing.gateway, dir .. "/gateway.lua")
    assert.is_true(ok, tostring(gw))
    for _, c in ipairs(NESTED_CASES) do
      assert.equal(c.body, gw:request{ method = c.method, path = c.path }.body, c.method .. " " .. c.path)
    end
  end)

  it("a function inside allOf, oneOf and not (the binary)", function()
    local code, out = H.server.check(NESTED, { config_name = "gateway.lua" })
    assert.equal(0, code, out)
    local g = H.start{ config_name = "gateway.lua", config = NESTED }
    for _, c in ipairs(NESTED_CASES) do
      local res = assert(g:request{ method = c.method, path = c.path })
      assert.equal(c.body, res.body, c.method .. " " .. c.path)
    end
  end)

  local FAILING = [[
return {
  http = { hostname = "127.0.0.1", port = 0 },
  apiEndpoints = { { name = "a", paths = { "/*" } } },
  pipelines = { { name = "p", apiEndpoints = { "a" }, policies = {
    function(req)
      if req.path == "/step" then local t = nil; return t.x end
    end,
    { terminate = { { condition = function(req) if req.path == "/cond" then error("cond boom") end end,
                      action = { statusCode = 418 } } } },
    function() return 200, "fine" end,
  } } },
}
]]
  -- path, then the line of gateway.lua the log must name
  local FAIL_CASES = {
    { path = "/step", line = 6, words = "attempt to index" },
    { path = "/cond", line = 8, words = "cond boom" },
  }
  for _, c in ipairs(FAIL_CASES) do
    it("an error in an inline " .. c.path:sub(2) .. " gives a 500 and logs gateway.lua:" .. c.line, function()
      local g = H.start{ config_name = "gateway.lua", config = FAILING }
      local res = assert(g:get(c.path))
      assert.equal(500, res.status)
      assert.equal("Internal Server Error", res.body)
      local where = g:wait_log("pipeline p, policy [^:]+: [^\n]-(gateway%.lua:%d+): " .. c.words)
      assert.equal("gateway.lua:" .. c.line, where)
      assert.equal("fine", assert(g:get("/other")).body)
    end)
  end
end)

describe("a Lua gateway and the files it uses", function()
  -- the README's way: a module loaded by the config file itself
  local CONFIG = [[
local dir = debug.getinfo(1, "S").source:match("^@(.*/)")
local mod = dofile(dir .. "policies/answer.lua")
return {
  http = { hostname = "127.0.0.1", port = 0 },
  apiEndpoints = { { name = "a", paths = { "/*" } } },
  pipelines = { { name = "p", apiEndpoints = { "a" }, policies = { { policy = mod } } } },
}
]]
  local function answer(v)
    return "return { name = 'answer', access = function() return 200, '" .. v .. "' end }\n"
  end

  it("reloads when the config file changes", function()
    local g = H.start{ config_name = "gateway.lua", config = CONFIG,
      files = { ["policies/answer.lua"] = answer("v1") } }
    assert.equal("v1", assert(g:get("/")).body)
    assert(process.write_file(g.dir .. "/policies/answer.lua", answer("v2")))
    assert(process.write_file(g.config_path, CONFIG .. "-- edited\n"))
    H.until_(function() return assert(g:get("/")).body == "v2" end, 10, "the reload")
  end)

  it("reloads when a policy module it loads changes (README: any file the config uses)", function()
    local g = H.start{ config_name = "gateway.lua", config = CONFIG,
      files = { ["policies/answer.lua"] = answer("v1") } }
    assert.equal("v1", assert(g:get("/")).body)
    assert(process.write_file(g.dir .. "/policies/answer.lua", answer("v2")))
    H.until_(function() return assert(g:get("/")).body == "v2" end, 5, "the edited module to serve")
  end)
end)
