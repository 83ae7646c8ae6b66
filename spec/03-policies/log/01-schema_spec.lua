-- luacheck: max line length 140
-- log: options and refusals; the header's first example loads and logs.

local testing = require "tollgate.testing"
local core = require "tollgate.core"

local NAME = "log"

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
  { "plain text", { message = "hello" } },
  { "a template", { message = "${req.method} ${req.headers['user-agent'] || 'none'}" } },
  { "Lua", { message = { lua = "req.method .. ' ' .. req.url" } } },
  { "a number (coerced to text)", { message = 42 } },
}

-- { case, action, text the error contains }
local BAD = {
  { "no message", {}, "action.message: is required" },
  { "an unterminated ${", { message = "${req.url" }, "message: unterminated ${ in \"${req.url\"" },
  { "JavaScript beyond paths, with what to write instead", { message = "${req.url.toUpperCase()}" },
    "message: cannot evaluate ${req.url.toUpperCase()} (supported: quoted strings" },
  { "Express Gateway's bare ${url}", { message = "${url}" }, "message: cannot evaluate ${url}" },
  { "invalid Lua", { message = { lua = "'a' .." } }, "lua:" },
  { "a list", { message = { "a" } }, "action.message: expected string or object" },
}

describe("log schema", function()
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

  it("describes every option", function()
    local mod = testing.policy(NAME, { message = "x" }).module
    assert.is_string(mod.schema.description)
    for k, p in pairs(mod.schema.properties) do assert.is_string(p.description, k) end
  end)

  it("runs the header's first example as written", function()
    local info = stub(core, "log_info")
    finally(function() info:revert() end)
    local res = gateway_with(header_example()):request{ method = "PUT", path = "/a?b=1", client = "10.0.0.5",
      body = "" }
    assert.equal(200, res.status)
    assert.stub(info).was_called_with("PUT /a?b=1 from 10.0.0.5 (" .. res.upstream.headers["eg-request-id"] .. ")")
  end)
end)
