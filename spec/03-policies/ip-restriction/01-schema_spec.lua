-- luacheck: max line length 140
-- ip-restriction: options, CIDR parsing and its refusals; the header's first
-- example loads and serves.

local testing = require "tollgate.testing"

local NAME = "ip-restriction"

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
  { "allow only, with defaults", { allow = { "10.0.0.0/8" } }, { statusCode = 403, message = "Forbidden" } },
  { "deny only", { deny = { "192.0.2.1" } }, {} },
  { "IPv6 forms", { allow = { "::1", "2001:db8::/32", "::ffff:10.0.0.0/104", "fe80::1:2:3:4",
    "1:2:3:4:5:6:7:8/128", "1::", "::" } }, {} },
  { "an empty allow list (nobody)", { allow = {} }, { allow = {} } },
  { "a status and message", { deny = { "0.0.0.0/0" }, statusCode = 451, message = "no" },
    { statusCode = 451, message = "no" } },
}

-- { case, action, text the error contains }
local BAD = {
  { "neither list", {}, "action: needs allow or deny" },
  { "a host name", { allow = { "localhost" } }, "allow[1]: \"localhost\" is not a valid IPv4 or IPv6 address" },
  { "an IPv4 part over 255", { deny = { "10.0.0.256" } }, "deny[1]: \"10.0.0.256\" is not a valid" },
  { "a leading zero (octal in some parsers)", { deny = { "010.0.0.1" } }, "is not a valid IPv4 or IPv6 address" },
  { "an IPv4 prefix over 32", { allow = { "10.0.0.0/33" } }, "allow[1]: \"10.0.0.0/33\": the prefix length is at most 32" },
  { "an IPv6 prefix over 128", { allow = { "::/129" } }, "the prefix length is at most 128" },
  { "two ::", { allow = { "1::2::3" } }, "\"1::2::3\" is not a valid" },
  { "too many IPv6 groups", { allow = { "1:2:3:4:5:6:7:8:9" } }, "is not a valid" },
  { "a zone id", { allow = { "fe80::1%eth0" } }, "is not a valid" },
  { "a slash without bits", { allow = { "10.0.0.0/" } }, "is not an address or a CIDR network" },
  { "a list that is a string", { allow = "10.0.0.0/8" }, "action.allow: expected array" },
  { "a status below 400", { deny = { "::1" }, statusCode = 302 }, "action.statusCode: must be at least 400" },
}

describe("ip-restriction schema", function()
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
    local mod = testing.policy(NAME, { deny = {} }).module
    assert.is_string(mod.schema.description)
    for k, p in pairs(mod.schema.properties) do assert.is_string(p.description, k) end
  end)

  it("names the line of a bad entry in a config", function()
    local ok, err = pcall(gateway_with, "- ip-restriction:\n    - action:\n        deny: [10.0.0.1/40]")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("gateway.config.yml:15: pipelines.p.policies[1].ip-restriction[1].action: " ..
      "deny[1]: \"10.0.0.1/40\"", 1, true), tostring(err))
  end)

  it("runs the header's first example as written", function()
    local gw = gateway_with(header_example())
    assert.equal(200, gw:request{ path = "/", client = "10.1.2.3" }.status)
    assert.equal(403, gw:request{ path = "/", client = "10.0.13.9" }.status)
    assert.equal(200, gw:request{ path = "/", client = "::1" }.status)
    assert.equal(403, gw:request{ path = "/", client = "127.0.0.1" }.status)
  end)
end)
