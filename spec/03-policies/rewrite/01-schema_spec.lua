-- luacheck: max line length 140
-- rewrite: options, the plugin's conditions and their refusals; the header's
-- first example loads and serves.

local testing = require "tollgate.testing"

local NAME = "rewrite"

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

local function config(steps, declare)
  return "http:\n  port: 0\napiEndpoints:\n  api:\n    paths: '*'\n" ..
    "serviceEndpoints:\n  up:\n    url: http://127.0.0.1:9\npolicies: [" .. (declare or NAME) .. ", proxy]\n" ..
    "pipelines:\n  p:\n    apiEndpoints: [api]\n    policies:\n" .. steps:gsub("[^\n]+", "      %0") ..
    "\n      - proxy:\n          - action: { serviceEndpoint: up }\n"
end

local function gateway_with(steps) return testing.gateway(config(steps)) end

-- { case, action, options expected after validation }
local GOOD = {
  { "a rewrite", { rewrite = "/a/:id" }, { rewrite = "/a/:id" } },
  { "a redirect status", { rewrite = "/a", redirect = 301 }, { redirect = 301 } },
  { "a redirect status as text (coerced)", { rewrite = "/a", redirect = "307" }, { redirect = 307 } },
  { "redirect true", { rewrite = "/a", redirect = true }, { redirect = true } },
  { "redirect false", { rewrite = "/a", redirect = false }, { redirect = false } },
}

-- { case, action, text the error contains }
local BAD = {
  { "no rewrite", {}, "action.rewrite: is required" },
  { "a 200 redirect", { rewrite = "/a", redirect = 200 }, "redirect: expected a 3xx status (or true for 302), got 200" },
  { "a redirect that is text", { rewrite = "/a", redirect = "soon" }, "action.redirect: expected integer or boolean" },
  { "an invalid custom pattern", { rewrite = "/a/:id([)" }, "rewrite: invalid regular expression" },
  { "an unknown option", { rewrite = "/a", status = 301 }, "action.status: unknown option" },
}

-- { case, steps YAML, text the error contains }
local CONFIG_ERRORS = {
  { "pathmatch without match",
    "- rewrite:\n    - condition: { name: pathmatch }\n      action: { rewrite: /x }",
    "pipelines.p.policies[1].rewrite[1].condition.match: is required" },
  { "regexpmatch with an invalid regex",
    "- rewrite:\n    - condition: { name: regexpmatch, match: '^/(a' }\n      action: { rewrite: /x }",
    "condition.match: invalid regular expression" },
  { "pathmatch with an unknown key",
    "- rewrite:\n    - condition: { name: pathmatch, match: /a, pattern: /b }\n      action: { rewrite: /x }",
    "condition.pattern: unknown option" },
}

describe("rewrite schema", function()
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

  for _, c in ipairs(CONFIG_ERRORS) do
    it("refuses a config with " .. c[1], function()
      local ok, err = pcall(gateway_with, c[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(c[3], 1, true), tostring(err))
      assert.truthy(tostring(err):find("gateway.config.yml:1[45]:"), tostring(err))
    end)
  end

  it("describes every option and both conditions' options", function()
    local mod = testing.policy(NAME, { rewrite = "/" }).module
    assert.is_string(mod.schema.description)
    for k, p in pairs(mod.schema.properties) do assert.is_string(p.description, k) end
    local conditions = require "tollgate.conditions"
    for _, name in ipairs { "pathmatch", "regexpmatch" } do
      assert.truthy(conditions.compile({ name = name, match = "/a" }, "c"), name)
    end
  end)

  it("runs the header's first example as written", function()
    local gw = gateway_with(header_example())
    local res = gw:request{ path = "/tina/abc" }
    assert.equal(302, res.status)
    assert.equal("/status/abc", res.headers["location"])
    res = gw:request{ path = "/js/app/main.js?v=3" }
    assert.equal(200, res.status)
    assert.equal("/src/js/app/main.js?v=3", res.upstream.path)
  end)
end)
