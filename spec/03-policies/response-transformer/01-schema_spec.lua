-- luacheck: max line length 140
-- response-transformer: options and refusals (request-transformer's
-- schema); the header's first example loads and serves.

local testing = require "tollgate.testing"

local NAME = "response-transformer"

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
  { "headers only", { headers = { add = { ["X-A"] = "'a'" }, remove = { "server" } } } },
  { "body only", { body = { remove = { "internal" } } } },
  { "values from the request and Lua", { body = { add = { id = "egContext.requestID", m = { lua = "req.method" } } } } },
}

-- { case, action, text the error contains }
local BAD = {
  { "nothing to do", {}, "action: needs headers or body" },
  { "body without add or remove", { body = {} }, "action.body: needs add or remove" },
  { "an empty add", { headers = { add = {} } }, "action.headers: add: needs at least one field" },
  { "a remove list of numbers", { headers = { remove = { {} } } }, "action.headers.remove[1]: expected string" },
  { "JavaScript beyond paths", { body = { add = { t = "Date.now()" } } }, "body.add.t: cannot evaluate" },
}

local function all_described(spec, path)
  assert.is_string(spec.description, path)
  for k, p in pairs(spec.properties or {}) do all_described(p, path .. "." .. k) end
end

describe("response-transformer schema", function()
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
    local res = gateway_with(header_example()):request{ path = "/x",
      upstream = { headers = { ["Content-Type"] = "application/json", Server = "up/1", ["X-Powered-By"] = "x" },
        body = '{"internalId":7,"name":"n"}' } }
    assert.equal(200, res.status)
    local id = res.upstream.headers["eg-request-id"]
    assert.equal('{"name":"n","requestId":"' .. id .. '"}', res.body)
    assert.equal("tollgate", res.headers["x-served-by"])
    assert.equal(id, res.headers["x-request-id"])
    assert.is_nil(res.headers["server"])
    assert.is_nil(res.headers["x-powered-by"])
  end)
end)
