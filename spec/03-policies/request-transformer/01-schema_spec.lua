-- luacheck: max line length 140
-- request-transformer: options and refusals; the header's first example
-- loads and serves.

local testing = require "tollgate.testing"

local NAME = "request-transformer"

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
  { "headers add only", { headers = { add = { ["X-A"] = "'a'" } } } },
  { "headers remove only", { headers = { remove = { "x-a" } } } },
  { "body add and remove", { body = { add = { n = 1, s = "'x'", ip = "req.ip" }, remove = { "password" } } } },
  { "both, with Lua and a boolean", { headers = { add = { ["X-A"] = { lua = "req.id" } } },
    body = { add = { flag = true } } } },
}

-- { case, action, text the error contains }
local BAD = {
  { "nothing to do", {}, "action: needs headers or body" },
  { "headers without add or remove", { headers = {} }, "action.headers: needs add or remove" },
  { "an empty add", { body = { add = {} } }, "action.body: add: needs at least one field" },
  { "remove that is not a list", { body = { remove = "password" } }, "action.body.remove: expected array" },
  { "a list value to add", { body = { add = { a = { 1, 2 } } } },
    "body.add.a: expected a string, a number or { lua: ... }" },
  { "JavaScript beyond paths", { headers = { add = { ["X-A"] = "new Date().toString()" } } },
    "headers.add.X-A: cannot evaluate \"new Date().toString()\"" },
  { "an unknown key in headers", { headers = { add = { ["X-A"] = "'a'" }, rename = {} } },
    "action.headers.rename: unknown option" },
  { "an unknown option", { query = { add = { a = "'b'" } } }, "action.query: unknown option" },
}

local function all_described(spec, path)
  assert.is_string(spec.description, path)
  for k, p in pairs(spec.properties or {}) do all_described(p, path .. "." .. k) end
end

describe("request-transformer schema", function()
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

  it("describes every option, nested ones too", function()
    all_described(testing.policy(NAME, { body = { remove = { "a" } } }).module.schema, "action")
  end)

  it("runs the header's first example as written", function()
    local res = gateway_with(header_example()):request{ method = "POST", path = "/x", client = "10.1.1.1",
      headers = { ["Content-Type"] = "application/json", ["X-Debug"] = "1" },
      body = '{"user":"bob","password":"secret"}' }
    assert.equal(200, res.status)
    local up = res.upstream
    assert.equal("10.1.1.1", up.headers["x-client-ip"])
    assert.equal("2", up.headers["x-api-version"])
    assert.is_nil(up.headers["x-debug"])
    assert.equal('{"user":"bob","requestId":"' .. up.headers["eg-request-id"] .. '","source":"gateway"}', up.body)
  end)
end)
