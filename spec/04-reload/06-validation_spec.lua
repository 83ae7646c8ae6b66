-- luacheck: std +busted
-- `tollgate -t`, `tollgate reload` and the master's check before a reload
-- share one validation path: a config -t refuses is refused by a reload
-- with the same message (file, line, key and text), and what -t accepts a
-- reload applies.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"

describe("-t and reload: one validation path", function()
  teardown(function() gateway.cleanup_all() end)

  local BAD = {
    { "a YAML syntax error", { steps = { "      - hdr:",
      "      - terminate: { action: { message: [oops } }" } } },
    { "an unknown option", { steps = { "      - hdr:",
      "      - terminate: { action: { statusCode: 200, colour: red } }" } } },
    { "a wrong type", { steps = { "      - hdr:",
      "      - terminate: { action: { statusCode: many } }" } } },
    { "a bad tollgate setting", { tollgate = { "logLevel: loud" }, steps = { "      - hdr:" } } },
    { "an unknown policy", { policies = { "hdr", "nope" }, steps = { "      - hdr:" } } },
    { "an undeclared policy", { policies = { "hdr" }, steps = { "      - hdr:",
      "      - terminate: { action: { statusCode: 200 } }" } } },
    { "an unknown service", { services = { backend = "http://127.0.0.1:9" },
      steps = { "      - hdr:", "      - proxy: { action: { serviceEndpoint: elsewhere } }" } } },
    { "an unknown apiEndpoint in a pipeline", { steps = { "      - hdr:", H.terminate("x") },
      pipelines = { "  other:", "    apiEndpoints: [ghost]", "    policies:",
                    "      - terminate: { action: { statusCode: 200 } }" } } },
    { "a bad condition", { steps = { "      - hdr:", "      - terminate:",
      "          - condition: { name: pathMatch }", "            action: { statusCode: 200 }" } } },
    { "an invalid regex", { steps = { "      - hdr:", "      - terminate:",
      "          - condition: { name: pathMatch, pattern: '([' }",
      "            action: { statusCode: 200 }" } } },
  }

  it("a config -t refuses is refused by a reload, with the same message", function()
    local r = H.start{
      config = H.config{ steps = { "      - hdr:", H.terminate("one") } },
      files = { ["policies/hdr.lua"] = H.hdr_policy() },
    }
    finally(function() r:cleanup() end)
    for _, case in ipairs(BAD) do
      local name, opts = case[1], case[2]
      r:write(H.config(opts))
      local reason = r:wait_refused()
      local code, out = r:check()
      assert.equal(1, code, name .. ": -t accepted it: " .. out)
      assert.equal("tollgate: " .. reason, (out:gsub("\n$", "")), name)
      -- `tollgate reload` checks the same way before signalling
      local rcode, rout = r:reload_command()
      assert.equal(1, rcode, name)
      assert.equal(out, rout, name)
      assert.equal("one", r:get("/").body, name)
    end
    assert.equal(0, r:count("configuration reloaded"))
  end)

  it("Lua errors in a user policy: the same message from -t and from the reload", function()
    local r = H.start{
      config = H.config{ steps = { "      - hdr:", H.terminate("one") } },
      files = { ["policies/hdr.lua"] = H.hdr_policy() },
    }
    finally(function() r:cleanup() end)
    local policies = {
      "return { name = 'hdr', access = function( end }\n",
      "error('at load time')\n",
      "return { name = 'hdr', new = function() error('in new') end, access = function() end }\n",
      "return { name = 'hdr' }\n",
      "return 42\n",
    }
    for _, text in ipairs(policies) do
      r:write_file("policies/hdr.lua", text)
      local reason = r:wait_refused()
      local code, out = r:check()
      assert.equal(1, code, text)
      assert.equal("tollgate: " .. reason, (out:gsub("\n$", "")), text)
    end
    assert.equal("one", r:get("/").body)
  end)

  it("what -t accepts a reload applies", function()
    local r = H.start{
      config = H.config{ steps = { "      - hdr:", H.terminate("one") } },
      files = { ["policies/hdr.lua"] = H.hdr_policy() },
    }
    finally(function() r:cleanup() end)
    local good = {
      H.config{ steps = { "      - hdr: { action: { value: x } }", H.terminate("two") } },
      H.config{ tollgate = { "client: { maxHeadSize: 4096 }", "upstream: { timeout: 1000 }" },
        steps = { "      - hdr:", H.terminate("three") } },
      (H.config{ steps = { "      - hdr:", "      - terminate:",
        "          - condition: { name: pathExact, path: /x }",
        "            action: { statusCode: 201, message: four }", H.terminate("four") } }),
    }
    for i, text in ipairs(good) do
      r:write(text)
      local code, out = r:check()
      assert.equal(0, code, out)
      assert.matches("is valid", out)
      r:wait_reload()
      assert.equal(({ "two", "three", "four" })[i], r:get("/").body)
    end
    assert.equal(0, r:count("reload refused"))
  end)

  it("a config without an http section: -t does not call valid what start and reload refuse",
    function()
    local r = H.start{ config = H.config{ steps = { H.terminate("one") } } }
    finally(function() r:cleanup() end)
    local text = H.config{ steps = { H.terminate("two") } }
    text = text:gsub("^http:\n  hostname: 127%.0%.0%.1\n  port: 0\n", "")
    r:write(text)
    r:wait_count("master %d+: reload refused", 1)
    assert.equal("one", r:get("/").body)
    local code, out = r:check()
    assert.equal(1, code, "-t: " .. out)
  end)
end)
