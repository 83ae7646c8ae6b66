-- luacheck: max line length 140
-- expression (policy and condition) on requests parsed by the gateway's C.

local testing = require "tollgate.testing"
local core = require "tollgate.core"

-- A gateway: an expression step (with an optional condition), then a real
-- proxy step, so what reaches the upstream is what proxy sends.
local function gateway(action, condition)
  return testing.gateway{
    http = { port = 0 },
    apiEndpoints = { api = { paths = "*" } },
    serviceEndpoints = { up = { url = "http://upstream.test" } },
    policies = { "expression", "proxy" },
    pipelines = { p = { apiEndpoints = { "api" }, policies = {
      { expression = { { action = action, condition = condition } } },
      { proxy = { { action = { serviceEndpoint = "up" } } } },
    } } },
  }
end

-- { case, lua, request, expected: upstream path / headers, or status and body }
local CASES = {
  { "rewrites the URL", "req.url = '/v2' .. req.url", { path = "/a?b=1" }, { path = "/v2/a?b=1" } },
  { "sets and removes headers", "req:set_header('x-a', req.method); req:remove_header('x-secret')",
    { path = "/", headers = { ["X-Secret"] = "s" } }, { headers = { ["x-a"] = "GET", ["x-secret"] = false } } },
  { "an expression's value is ignored", "req.method == 'GET'", { path = "/p" }, { path = "/p" } },
  { "answers the request itself", "if not req:header('x-key') then req:respond(401, 'no key', " ..
    "{ ['Content-Type'] = 'text/plain' }) end", { path = "/" }, { status = 401, body = "no key" } },
  { "lets the request through when it does not answer", "if not req:header('x-key') then req:respond(401) end",
    { path = "/k", headers = { ["X-Key"] = "1" } }, { path = "/k" } },
  { "shares req.ctx with later code", "req.ctx.n = (req.ctx.n or 0) + 1; req:set_header('x-n', req.ctx.n)",
    { path = "/" }, { headers = { ["x-n"] = "1" } } },
  { "an error answers 500", "error('boom')", { path = "/" }, { status = 500, body = "Internal Server Error" } },
}

describe("expression policy", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local log = stub(core, "log_error")
      local ok, res = pcall(function() return gateway({ lua = c[2] }):request(c[3]) end)
      log:revert()
      assert(ok, res)
      local want = c[4]
      if want.status then
        assert.equal(want.status, res.status)
        assert.equal(want.body, res.body)
        assert.is_nil(res.upstream)
        if want.status == 500 then assert.stub(log).was_called(1) end
      else
        assert.equal(200, res.status)
        if want.path then assert.equal(want.path, res.upstream.path) end
        for name, v in pairs(want.headers or {}) do
          if v == false then assert.is_nil(res.upstream.headers[name], name)
          else assert.equal(v, res.upstream.headers[name], name) end
        end
      end
    end)
  end
end)

-- { case, condition lua, request, does the step run }
local CONDITION_CASES = {
  { "true", "req.method == 'POST'", { method = "POST", path = "/", body = "" }, true },
  { "false", "req.method == 'POST'", { path = "/" }, false },
  { "nil is false", "req:header('x-none')", { path = "/" }, false },
  { "a string is true (even empty: Lua truth)", "req:header('x-a')", { path = "/", headers = { ["X-A"] = "" } }, true },
  { "the user", "req.user == nil and req.ip == '10.0.0.1'", { path = "/", client = "10.0.0.1" }, true },
  { "a chunk with return", "local p = req.path; return p:sub(1, 4) == '/api'", { path = "/api/x" }, true },
}

describe("expression condition", function()
  for _, c in ipairs(CONDITION_CASES) do
    it(c[1], function()
      local res = gateway({ lua = "req:set_header('x-ran', 'yes')" }, { name = "expression", lua = c[2] })
        :request(c[3])
      assert.equal(200, res.status)
      assert.equal(c[4] and "yes" or nil, res.upstream.headers["x-ran"])
    end)
  end

  it("an error in the condition answers 500", function()
    local log = stub(core, "log_error")
    finally(function() log:revert() end)
    local res = gateway({ lua = "x = 1" }, { name = "expression", lua = "req.user.sub == 'a'" }):request{ path = "/" }
    assert.equal(500, res.status)
    assert.is_nil(res.upstream)
    assert.stub(log).was_called(1)
  end)
end)
