-- luacheck: max line length 140
-- expression: the policy's options and the `expression` condition's;
-- Express Gateway's JavaScript refused with the Lua to write; the header's
-- first example loads and serves.

local testing = require "tollgate.testing"
local conditions = require "tollgate.conditions"

local NAME = "expression"

local function header_example()
  local f = assert(io.open("policies/" .. NAME .. ".lua"))
  local text = f:read("*a")
  f:close()
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do
    if not line:match("^%-%-") then break end
    local body = line:match("^%-%-   (.*)$")
    if body and (#lines > 0 or body:match("^%- ")) then
      lines[#lines + 1] = body
    elseif #lines > 0 then
      break
    end
  end
  return table.concat(lines, "\n")
end

local function gateway_with(steps)
  return testing.gateway("http:\n  port: 0\napiEndpoints:\n  api:\n    paths: '*'\n" ..
    "serviceEndpoints:\n  up:\n    url: http://127.0.0.1:9\npolicies: [" .. NAME .. ", proxy]\n" ..
    "pipelines:\n  p:\n    apiEndpoints: [api]\n    policies:\n" .. steps:gsub("[^\n]+", "      %0") ..
    "\n      - proxy:\n          - action: { serviceEndpoint: up }\n")
end

-- { case, action }
local GOOD = {
  { "a statement", { lua = "req.url = '/x'" } },
  { "an expression", { lua = "req:set_header('x-a', req.method)" } },
  { "several statements", { lua = "local n = #req.url; req:set_header('x-len', n)" } },
}

-- { case, action, text the error contains }
local BAD = {
  { "neither lua nor jscode", {}, "action: lua: is required" },
  { "jscode: an assignment to req.url, translated", { jscode = "req.url = '/v2' + req.url" },
    "jscode: Express Gateway's JavaScript cannot run in tollgate; write Lua with req in scope instead: " ..
    "lua: \"req.url = '/v2' .. req.url\"" },
  { "jscode: a header assignment, translated", { jscode = "req.headers['X-From'] = egContext.requestID;" },
    "lua: \"req:set_header('x-from', req.id)\"" },
  { "jscode: two statements, translated", { jscode = "req.headers.a = \"1\"; req.url = '/b'" },
    "lua: '" .. "req:set_header(''a'', \"1\"); req.url = ''/b''" .. "'" },
  { "jscode beyond translation: an example instead", { jscode = "req.url = req.url.replace(/a/, 'b')" },
    "write Lua with req in scope instead, for example lua: \"req:set_header('x-from', 'gateway')\"" },
  { "jscode together with lua", { jscode = "x", lua = "y" }, "jscode: Express Gateway's JavaScript" },
  { "invalid Lua", { lua = "req.url = " }, "expression:1:" },
  { "an unknown option", { lua = "x()", code = "y" }, "action.code: unknown option" },
}

-- { case, condition, error text (nil: compiles) }
local CONDITIONS = {
  { "lua", { name = "expression", lua = "req.method == 'GET'" }, nil },
  { "no lua", { name = "expression" }, "c: lua: is required" },
  { "JavaScript, translated", { name = "expression", expression = "req.headers['x-a'] === 'yes' && !req.user" },
    "c: expression: Express Gateway's JavaScript cannot run in tollgate; write Lua with req in scope " ..
    "instead: lua: \"req:header('x-a') == 'yes' and not req.user\"" },
  { "JavaScript beyond translation", { name = "expression", expression = "/^a/.test(req.url)" },
    "for example lua: \"req:header('x-debug') == 'yes'\"" },
  { "invalid Lua, reported as an expression", { name = "expression", lua = "req.method ==" },
    "c.lua: c.lua:1: unexpected symbol near '<eof>'" },
  { "an unknown option", { name = "expression", lua = "true", js = "x" }, "c.js: unknown option" },
}

describe("expression schema", function()
  for _, c in ipairs(GOOD) do
    it("accepts " .. c[1], function()
      local conf, err = testing.validate(NAME, c[2])
      assert.is_nil(err)
      assert.is_table(conf)
      testing.policy(NAME, c[2])
    end)
  end

  for _, c in ipairs(BAD) do
    it("refuses " .. c[1], function()
      local ok, err = pcall(testing.policy, NAME, c[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(c[3], 1, true), tostring(err))
    end)
  end

  for _, c in ipairs(CONDITIONS) do
    it("condition: " .. (c[3] and "refuses " or "accepts ") .. c[1], function()
      local fn, err = conditions.compile(c[2], "c")
      if c[3] then
        assert.is_nil(fn)
        assert.truthy(tostring(err):find(c[3], 1, true), tostring(err))
      else
        assert.is_function(fn)
      end
    end)
  end

  it("describes every option, the condition's too", function()
    local mod = testing.policy(NAME, { lua = "x()" }).module
    assert.is_string(mod.schema.description)
    for k, p in pairs(mod.schema.properties) do assert.is_string(p.description, k) end
  end)

  it("names the line of a refused condition in a config", function()
    local ok, err = pcall(gateway_with, "- expression:\n    - action: { lua: 'x()' }\n" ..
      "      condition:\n        name: expression\n        expression: \"req.method === 'GET'\"")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("gateway.config.yml:17: pipelines.p.policies[1].expression[1].condition: " ..
      "expression: Express Gateway's JavaScript", 1, true), tostring(err))
  end)

  it("runs the header's first example as written", function()
    local res = gateway_with(header_example()):request{ path = "/items" }
    assert.equal(200, res.status)
    assert.equal("/v2/items", res.upstream.path)
    assert.equal("2", res.upstream.headers["x-api-version"])
  end)
end)
