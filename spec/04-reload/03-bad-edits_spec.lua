-- luacheck: std +busted
-- Bad edits are harmless: each time the old configuration keeps serving
-- (no worker reloads), the master's log says "reload refused, still serving
-- the previous configuration: FILE:LINE: key: message", and the next good
-- edit applies normally.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"

local function plain(s) return (s:gsub("%p", "%%%0")) end

describe("bad edits", function()
  teardown(function() gateway.cleanup_all() end)

  local GOOD_POLICY = H.hdr_policy("module-ok")

  -- A gateway answering "one" with the hdr policy loaded; returns r.
  local function start()
    local r = H.start{
      config = H.config{ steps = { "      - hdr:", H.terminate("one") } },
      files = { ["policies/hdr.lua"] = GOOD_POLICY },
    }
    finally(function() r:cleanup() end)
    assert.equal("one", r:get("/").body)
    return r
  end

  -- The bad edit was refused: reason matches `expect` (plain text), the old
  -- config still serves, no worker reloaded; then a good edit applies.
  local function refused_then_fixed(r, expect, fix)
    local reason = r:wait_refused()
    assert.matches(plain(expect), reason)
    assert.equal("one", r:get("/").body)
    assert.equal(0, r:count("configuration reloaded"))
    assert.equal(0, r:count("reload failed")) -- the lead reports to the master, which logs it once
    assert.is_true(r.g:alive())
    if fix then fix() else
      r:write(H.config{ steps = { "      - hdr:", H.terminate("fixed") } })
    end
    r:wait_reload()
    assert.equal("fixed", r:get("/").body)
    return reason
  end

  it("a YAML syntax error", function()
    local r = start()
    local text, marks = H.config{ steps = { "      - hdr:",
      "      - terminate: { action: { statusCode: 200, message: [broken } }  # @bad" } }
    r:write(text)
    refused_then_fixed(r, r.g.config_path .. ":" .. marks.bad .. ":")
  end)

  it("a schema error (an unknown option)", function()
    local r = start()
    local text, marks = H.config{ steps = { "      - hdr:",
      "      - terminate:",
      "          - action:",
      "              statusCode: 200",
      "              colour: blue  # @bad",
    } }
    r:write(text)
    refused_then_fixed(r, r.g.config_path .. ":" .. marks.bad ..
      ": pipelines.main.policies[2].terminate[1].action.colour: unknown option")
  end)

  it("a schema error in the tollgate section", function()
    local r = start()
    local text, marks = H.config{ tollgate = { "workerz: 3  # @bad" },
      steps = { "      - hdr:", H.terminate("two") } }
    r:write(text)
    refused_then_fixed(r, r.g.config_path .. ":" .. marks.bad .. ": tollgate.workerz: unknown option")
  end)

  it("a Lua syntax error in a user policy", function()
    local r = start()
    local policy_path = r.g.dir .. "/policies/hdr.lua"
    r:write_file("policies/hdr.lua", "return {\n  name = 'hdr',\n  access = function(self, req\nend }\n")
    local reason = r:wait_refused()
    assert.matches(plain(policy_path .. ":4:"), reason)           -- the policy file and line
    assert.matches(plain(r.g.config_path) .. ":%d+: policies", reason) -- where the config names it
    assert.equal("one", r:get("/").body)
    assert.equal("module-ok", r:get("/").headers["x-value"])
    -- fixing the policy file is the next good edit
    r:write_file("policies/hdr.lua", H.hdr_policy("module-fixed"))
    r:wait_reload()
    assert.equal("module-fixed", r:get("/").headers["x-value"])
  end)

  it("a Lua error thrown while the policy module loads", function()
    local r = start()
    local policy_path = r.g.dir .. "/policies/hdr.lua"
    r:write_file("policies/hdr.lua", "local x = nil\nlocal y = x.field\nreturn {}\n")
    local reason = r:wait_refused()
    assert.matches(plain(policy_path .. ":2:"), reason)
    assert.equal("module-ok", r:get("/").headers["x-value"])
    r:write_file("policies/hdr.lua", H.hdr_policy("module-fixed"))
    r:wait_reload()
    assert.equal("module-fixed", r:get("/").headers["x-value"])
  end)

  -- `- hdr:` with nothing after it (a policy without options, as Express
  -- Gateway's docs write `- cors:`): the error must still name the line
  it("an error thrown by a policy constructor", function()
    local r = start()
    local policy_path = r.g.dir .. "/policies/hdr.lua"
    r:write_file("policies/hdr.lua", table.concat({
      "return {",
      "  name = 'hdr',",
      "  new = function(conf)",
      "    error('the constructor refuses')",
      "  end,",
      "  access = function() end,",
      "}",
    }, "\n") .. "\n")
    local _, marks = H.config{ steps = { "      - hdr:  # @step", H.terminate("one") } }
    local reason = r:wait_refused()
    assert.matches(plain(r.g.config_path .. ":" .. marks.step .. ": pipelines.main.policies[1].hdr"),
      reason)
    assert.matches(plain(policy_path .. ":4: the constructor refuses"), reason)
    assert.equal("module-ok", r:get("/").headers["x-value"])
    r:write_file("policies/hdr.lua", H.hdr_policy("module-fixed"))
    r:wait_reload()
    assert.equal("module-fixed", r:get("/").headers["x-value"])
  end)

  it("a constructor returning nil and a message", function()
    local steps = { "      - hdr:", "          - action: {}  # @step", H.terminate("one") }
    local text, marks = H.config{ steps = steps }
    local r = H.start{ config = text, files = { ["policies/hdr.lua"] = GOOD_POLICY } }
    finally(function() r:cleanup() end)
    r:write_file("policies/hdr.lua", "return { name = 'hdr', new = function() " ..
      "return nil, 'not today' end, access = function() end }\n")
    local reason = r:wait_refused()
    assert.matches(plain(r.g.config_path .. ":" .. marks.step ..
      ": pipelines.main.policies[1].hdr[1].action: not today"), reason)
    r:write_file("policies/hdr.lua", H.hdr_policy("module-fixed"))
    r:wait_reload()
    assert.equal("module-fixed", r:get("/").headers["x-value"])
  end)

  it("an unknown policy", function()
    local r = start()
    local text, marks = H.config{ policies = { "hdr", "terminate", "nope  # @bad" },
      steps = { "      - hdr:", H.terminate("two") } }
    r:write(text)
    refused_then_fixed(r, r.g.config_path .. ":" .. marks.bad .. ": policies: unknown policy \"nope\"")
  end)

  it("an unknown policy, fixed by creating its file in <dir>/policies/", function()
    local r = start()
    r:write(H.config{ policies = { "hdr", "terminate", "extra" },
      steps = { "      - hdr:", "      - extra:", H.terminate("two") } })
    assert.matches("unknown policy \"extra\"", r:wait_refused(), 1, true)
    -- the missing policy appears: that is the next good edit
    r:write_file("policies/extra.lua", "return { name = 'extra', access = function(self, req) " ..
      "req:set_header('x-extra', '1') end }\n")
    r:wait_reload()
    assert.equal("two", r:get("/").body)
  end)

  it("a policy used in a pipeline but not declared", function()
    local r = start()
    local text, marks = H.config{ policies = { "hdr", "terminate" },
      steps = { "      - hdr:", "      - proxy: { action: { serviceEndpoint: x } }  # @bad" } }
    r:write(text)
    refused_then_fixed(r, r.g.config_path .. ":" .. marks.bad .. ": pipelines.main.policies[2]")
  end)

  it("an unknown serviceEndpoint (flow style: one line)", function()
    local r = start()
    local text, marks = H.config{ services = { backend = "http://127.0.0.1:9" },
      steps = { "      - hdr:", "      - proxy: { action: { serviceEndpoint: nowhere } }  # @bad" } }
    r:write(text)
    local reason = refused_then_fixed(r, r.g.config_path .. ":" .. marks.bad ..
      ": pipelines.main.policies[2].proxy[1].action")
    assert.matches("service endpoint nowhere", reason, 1, true)
  end)

  it("an unknown serviceEndpoint names the line and key of serviceEndpoint", function()
    local r = start()
    local text, marks = H.config{ services = { backend = "http://127.0.0.1:9" },
      steps = { "      - hdr:",
                "      - proxy:",
                "          - action:",
                "              changeOrigin: true",
                "              serviceEndpoint: nowhere  # @bad" } }
    r:write(text)
    local reason = refused_then_fixed(r, r.g.config_path .. ":" .. marks.bad ..
      ": pipelines.main.policies[2].proxy[1].action.serviceEndpoint")
    assert.matches("service endpoint nowhere", reason, 1, true)
  end)

  it("several bad edits in a row, then a good one", function()
    local r = start()
    r:write(H.config{ steps = { "      - hdr:", "      - terminate: { action: [ }" } })
    r:wait_refused()
    r:write(H.config{ steps = { "      - hdr:", "      - terminate: { action: { bogus: 1 } }" } })
    r:wait_refused()
    r:write(H.config{ policies = { "hdr", "terminate", "ghost" }, steps = { "      - hdr:" } })
    r:wait_refused()
    assert.equal("one", r:get("/").body)
    assert.equal(0, r:count("configuration reloaded"))
    r:write(H.config{ steps = { "      - hdr:", H.terminate("fixed") } })
    r:wait_reload()
    assert.equal("fixed", r:get("/").body)
  end)
end)
