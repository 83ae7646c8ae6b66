-- luacheck: max line length 140
-- request-size-limit: options, sizes, and the refusals; the header's first
-- example loads and serves.

local testing = require "tollgate.testing"

local NAME = "request-size-limit"

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

local function config(steps, tollgate)
  return "http:\n  port: 0\n" .. (tollgate or "") .. "apiEndpoints:\n  api:\n    paths: '*'\n" ..
    "serviceEndpoints:\n  up:\n    url: http://127.0.0.1:9\npolicies: [" .. NAME .. ", proxy]\n" ..
    "pipelines:\n  p:\n    apiEndpoints: [api]\n    policies:\n" .. steps:gsub("[^\n]+", "      %0") ..
    "\n      - proxy:\n          - action: { serviceEndpoint: up }\n"
end

-- { case, action, bytes the limit is }
local GOOD = {
  { "bytes", { maxSize = 1000 }, 1000 },
  { "bytes as text", { maxSize = "1000" }, 1000 },
  { "kb", { maxSize = "512kb" }, 512 * 1024 },
  { "MB, any case, with a space", { maxSize = "2 MB" }, 2 * 1024 * 1024 },
  { "a fraction of a unit", { maxSize = "1.5kb" }, 1536 },
  { "b", { maxSize = "10b" }, 10 },
  { "zero", { maxSize = 0 }, 0 },
  { "above maxBufferedBody when chunked bodies are refused", { maxSize = "1gb", requireContentLength = true },
    1024 ^ 3 },
}

-- { case, action, text the error contains }
local BAD = {
  { "no maxSize", {}, "action.maxSize: is required" },
  { "an unknown unit", { maxSize = "10 bytes" }, "maxSize: expected a number of bytes or a size such as 512kb" },
  { "a negative size", { maxSize = -1 }, "maxSize: must be at least 0" },
  { "words", { maxSize = "big" }, "maxSize: expected a number of bytes" },
  { "above maxBufferedBody (8 MiB by default)", { maxSize = "10mb" },
    "maxSize: 10485760 bytes is more than tollgate.client.maxBufferedBody (8388608)" },
  { "a status below 400", { maxSize = 1, statusCode = 200 }, "action.statusCode: must be at least 400" },
  { "requireContentLength that is not a boolean", { maxSize = 1, requireContentLength = "sometimes" },
    "action.requireContentLength: expected boolean" },
}

describe("request-size-limit schema", function()
  for _, c in ipairs(GOOD) do
    it("accepts " .. c[1], function()
      local conf, err = testing.validate(NAME, c[2])
      assert.is_nil(err)
      assert.equal(413, conf.statusCode)
      assert.equal(c[3], testing.policy(NAME, c[2]).instance.max)
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
    local mod = testing.policy(NAME, { maxSize = 1 }).module
    assert.is_string(mod.schema.description)
    for k, p in pairs(mod.schema.properties) do assert.is_string(p.description, k) end
  end)

  it("checks maxSize against the config's own maxBufferedBody", function()
    local steps = "- request-size-limit:\n    - action: { maxSize: 2mb }"
    local ok, err = pcall(testing.gateway, config(steps, "tollgate:\n  client:\n    maxBufferedBody: 1048576\n"))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("maxSize: 2097152 bytes is more than tollgate.client.maxBufferedBody (1048576)",
      1, true), tostring(err))
    testing.gateway(config(steps, "tollgate:\n  client:\n    maxBufferedBody: 4194304\n"))
  end)

  it("runs the header's first example as written", function()
    local gw = testing.gateway(config(header_example()))
    assert.equal(200, gw:request{ method = "POST", path = "/", body = ("x"):rep(1024 * 1024) }.status)
    assert.equal(413, gw:request{ method = "POST", path = "/", body = ("x"):rep(1024 * 1024 + 1) }.status)
  end)
end)
