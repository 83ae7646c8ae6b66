-- luacheck: max line length 140
-- cors: options, defaults and refusals, as the gateway validates them; the
-- header's first example loads and serves.

local testing = require "tollgate.testing"

local NAME = "cors"

-- The first example of the policy's header comment: the YAML list item.
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
  { "no options: Express Gateway's defaults", {},
    { origin = "*", methods = { "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE" },
      optionsSuccessStatus = 204, credentials = false, preflightContinue = false } },
  { "one origin", { origin = "https://a.example" }, { origin = "https://a.example" } },
  { "origin true (reflect)", { origin = true }, { origin = true } },
  { "origin false (off)", { origin = false }, { origin = false } },
  { "a list with a regex", { origin = { "https://a.example", "/^https:\\/\\/.*\\.b\\.example$/i" } },
    { origin = { "https://a.example", "/^https:\\/\\/.*\\.b\\.example$/i" } } },
  { "a regex string alone", { origin = "/example\\.com$/" }, { origin = "/example\\.com$/" } },
  { "methods as a string", { methods = "GET,POST" }, { methods = "GET,POST" } },
  { "allowed and exposed headers", { allowedHeaders = { "X-A" }, exposedHeaders = "X-B" },
    { allowedHeaders = { "X-A" }, exposedHeaders = "X-B" } },
  { "maxAge as a numeric string (coerced)", { maxAge = "600" }, { maxAge = 600 } },
  { "a 200 preflight status", { optionsSuccessStatus = 200 }, { optionsSuccessStatus = 200 } },
}

-- { case, action, text the error contains }
local BAD = {
  { "an origin that is a mapping", { origin = { a = 1 } }, "action.origin: expected boolean or array or string" },
  { "an origin list with a mapping", { origin = { "a", {} } }, "action.origin[2]: expected string" },
  { "an invalid regex", { origin = "/(unclosed/" }, "origin: invalid regular expression" },
  { "an unknown regex flag", { origin = { "/a/x" } }, "origin[1]: unknown regular expression flag \"x\"" },
  { "a negative maxAge", { maxAge = -1 }, "action.maxAge: must be at least 0" },
  { "a fractional maxAge", { maxAge = 1.5 }, "action.maxAge: expected integer" },
  { "credentials that is not a boolean", { credentials = "yes" }, "action.credentials: expected boolean" },
  { "a preflight status that is not 2xx", { optionsSuccessStatus = 301 },
    "action.optionsSuccessStatus: must be at most 299" },
  { "an unknown option", { origins = "*" }, "action.origins: unknown option" },
}

describe("cors schema", function()
  for _, c in ipairs(GOOD) do
    it("accepts " .. c[1], function()
      local conf, err = testing.validate(NAME, c[2])
      assert.is_nil(err)
      for k, v in pairs(c[3]) do assert.same(v, conf[k], k) end
      testing.policy(NAME, c[2]) -- builds
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
    local mod = testing.policy(NAME, {}).module
    assert.is_string(mod.schema.description)
    for k, p in pairs(mod.schema.properties) do
      assert.is_string(p.description, k)
    end
  end)

  it("takes Express Gateway's !!js/regexp tag as a regex origin", function()
    local ok, gw = pcall(gateway_with, "- cors:\n    - action:\n        origin: !!js/regexp /^https:\\/\\/a\\./")
    assert.is_true(ok, tostring(gw))
  end)

  it("names the line of a bad option in a config", function()
    local ok, err = pcall(gateway_with, "- cors:\n    - action:\n        maxAge: soon")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("gateway.config.yml:16: pipelines.p.policies[1].cors[1].action.maxAge",
      1, true), tostring(err))
  end)

  it("runs the header's first example as written", function()
    local gw = gateway_with(header_example())
    local res = gw:request{ method = "OPTIONS", path = "/x",
      headers = { Origin = "https://shop.example.com" } }
    assert.equal(204, res.status)
    assert.equal("https://shop.example.com", res.headers["access-control-allow-origin"])
    assert.equal("GET,POST", res.headers["access-control-allow-methods"])
    assert.equal("600", res.headers["access-control-max-age"])
  end)
end)
