-- luacheck: max line length 140
-- headers: options, defaults and refusals; the header's first example loads
-- and serves.

local testing = require "tollgate.testing"

local NAME = "headers"

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

-- { case, action, options expected after validation }
local GOOD = {
  { "forwardHeaders only: the prefix defaults to empty", { forwardHeaders = { ["X-A"] = "'a'" } },
    { headersPrefix = "", forwardHeaders = { ["X-A"] = "'a'" } } },
  { "a prefix", { headersPrefix = "X-Gw-", forwardHeaders = { Id = "requestID" } }, { headersPrefix = "X-Gw-" } },
  { "paths, || and numbers", { forwardHeaders = { A = "req.headers['x-a'] || req.ip", B = 5, C = "req.user.sub" } },
    {} },
  { "a Lua value", { forwardHeaders = { A = { lua = "req.method:lower()" } } }, {} },
}

-- { case, action, text the error contains }
local BAD = {
  { "no forwardHeaders", {}, "action.forwardHeaders: is required" },
  { "forwardHeaders as a list", { forwardHeaders = { "a" } }, "action.forwardHeaders: expected object" },
  { "JavaScript beyond paths, with what to write instead", { forwardHeaders = { A = "req.method.toLowerCase()" } },
    "forwardHeaders.A: cannot evaluate \"req.method.toLowerCase()\" (supported: quoted strings" },
  { "an unknown root", { forwardHeaders = { A = "process.env.HOME" } }, "write Lua: { lua: \"...\" }" },
  { "invalid Lua", { forwardHeaders = { A = { lua = "req.method ==" } } }, "forwardHeaders.A: lua:" },
  { "a mapping that is not { lua }", { forwardHeaders = { A = { js = "x" } } },
    "forwardHeaders.A: expected a string or { lua: \"...\" }" },
  { "a header name with a space", { headersPrefix = "X ", forwardHeaders = { A = "'a'" } },
    "forwardHeaders.A: \"X A\" is not a valid header name" },
  { "a prefix that is a list", { headersPrefix = { "x" }, forwardHeaders = { A = "'a'" } },
    "action.headersPrefix: expected string" },
  { "an unknown option", { forwardHeaders = { A = "'a'" }, prefix = "x" }, "action.prefix: unknown option" },
}

describe("headers schema", function()
  for _, c in ipairs(GOOD) do
    it("accepts " .. c[1], function()
      local conf, err = testing.validate(NAME, c[2])
      assert.is_nil(err)
      for k, v in pairs(c[3]) do assert.same(v, conf[k], k) end
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

  it("describes every option", function()
    local mod = testing.policy(NAME, { forwardHeaders = { A = "'a'" } }).module
    assert.is_string(mod.schema.description)
    for k, p in pairs(mod.schema.properties) do assert.is_string(p.description, k) end
  end)

  it("names the line of a bad value in a config", function()
    local ok, err = pcall(gateway_with,
      "- headers:\n    - action:\n        forwardHeaders:\n          X-A: req.foo()")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("gateway.config.yml:15: pipelines.p.policies[1].headers[1].action: " ..
      "forwardHeaders.X-A: cannot evaluate", 1, true), tostring(err))
  end)

  it("runs the header's first example as written", function()
    local res = gateway_with(header_example()):request{ path = "/x", client = "10.9.8.7",
      headers = { ["User-Agent"] = "curl/8" } }
    assert.equal(200, res.status)
    local h = res.upstream.headers
    assert.equal(res.upstream.headers["eg-request-id"], h["x-gateway-request-id"])
    assert.equal("10.9.8.7", h["x-gateway-client"])
    assert.equal("tollgate", h["x-gateway-source"])
    assert.equal("curl/8", h["x-gateway-agent"])
  end)
end)
