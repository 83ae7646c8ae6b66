-- luacheck: std +busted
-- A reload starts in one worker, the lead: its build of the new generation
-- is the check (the one `tollgate -t` makes), and the master does not build
-- the config as well. The master logs the outcome once: "worker 0 checked
-- and applied it" and the other workers follow, or "reload refused" and no
-- worker changes. A trigger while the lead builds gives one more reload
-- after it; a lead that dies while building does not wedge later reloads;
-- a config a worker applied with no reload waiting is followed by the rest.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"
local process = require "tollgate.testing.process"

describe("reload through a lead worker", function()
  teardown(function() gateway.cleanup_all() end)

  -- the constructor of the switch policy (helpers) dies, or is slow, on demand
  local function start(message, workers)
    local r = H.start{ config = H.switch_config(message), files = H.SWITCH_FILES,
                       workers = workers }
    finally(function() r:cleanup() end)
    assert.equal(message, r:get("/").body)
    return r
  end

  local function edit(r, message)
    r:write(H.switch_config(message))
  end

  it("a good edit: the lead applies it, the master does not build it, the others follow", function()
    local r = start("one", 2)
    edit(r, "two")
    assert(r.g:signal("HUP"))
    r:wait_reload()
    local applied = r:wait_count("master %d+: worker (%d+) checked and applied it %(generation 2%); " ..
      "reloading (%d+) other worker$", 1)
    assert.equal("1", applied[1][2])
    assert.equal(0, r:count("the master checks"))
    for _ = 1, 4 do assert.equal("two", r:get("/").body) end
  end)

  it("a worker that applies a config no reload waited for: the others follow", function()
    -- (as when a lead answers after the master stopped waiting; here, SIGUSR2 by hand)
    local r = start("one", 2)
    edit(r, "two")
    assert(process.kill(r.workers[2], "USR2"))
    r:wait_reload()
    local from = r:wait_count("master %d+: worker (%d) applied a configuration no reload " ..
      "waited for; the others follow", 1)[1][1]
    r:wait_count("master %d+: worker " .. from .. " checked and applied it %(generation 2%); " ..
      "reloading 1 other worker$", 1)
    assert.equal(0, r:count("the master checks"))
    for _ = 1, 4 do assert.equal("two", r:get("/").body) end
  end)

  it("a bad edit: refused once by the master; no worker logs a failure or changes", function()
    local r = start("one", 2)
    r:write(H.switch_config("bad", { step = "      - switch: { busy: fast }" }))
    assert(r.g:signal("HUP"))
    local reason = r:wait_refused()
    assert.matches("busy", reason, 1, true)
    assert.equal(1, r:count("reload refused"))
    assert.equal(0, r:count("reload failed"))
    assert.equal(0, r:count("configuration reloaded"))
    assert.equal(0, r:count("the master checks"))
    for _ = 1, 4 do assert.equal("one", r:get("/").body) end
    -- the next good edit applies
    edit(r, "fixed")
    assert(r.g:signal("HUP"))
    r:wait_reload()
    assert.equal("fixed", r:get("/").body)
  end)

  it("a config with nothing to listen on is refused, as at start", function()
    local r = start("one", 2)
    local text = H.switch_config("none")
    r:write((text:gsub("^http:\n  hostname: [^\n]*\n  port: [^\n]*\n", "")))
    assert(r.g:signal("HUP"))
    local reason = r:wait_refused()
    assert.matches("has no http or https section: nothing to listen on", reason, 1, true)
    assert.equal(0, r:count("the master checks")) -- the lead refused it; no new listeners
    assert.equal(0, r:count("configuration reloaded"))
    assert.equal("one", r:get("/").body)
  end)

  it("a trigger while the lead builds gives one more reload after it", function()
    local r = start("one", 1)
    r:write_file("slow", "")
    edit(r, "two")
    assert(r.g:signal("HUP"))
    r:wait_count("master %d+: SIGHUP: checking", 1)
    -- the lead is busy for 0.4 s in the constructor: this one waits for it. (Replaced by
    -- a rename: written in place, the lead could read it half-written.)
    r:replace(H.switch_config("three"))
    assert(r.g:signal("HUP"))
    r:wait_count("master %d+: SIGHUP: a reload is under way; another follows it", 1)
    r:wait_reload()
    r:wait_reload()
    r:wait_count("master %d+: worker 0 checked and applied it %(generation 3%)", 1)
    assert.equal("three", r:get("/").body)
  end)

  it("a lead that dies while building: logged, restarted, and later reloads work", function()
    local r = start("one", 1)
    edit(r, "two")
    r:write_file("die", "")
    assert(r.g:signal("HUP"))
    r:wait_count("master %d+: worker 0 %(pid %d+%) died while building the new configuration", 1)
    -- it is restarted (and dies while "die" exists, restarted later and later)
    assert(os.remove(r.g.dir .. "/die"))
    r.workers = r:wait_ready(1, 10)
    assert.equal("two", r:get("/").body)
    edit(r, "three")
    assert(r.g:signal("HUP"))
    -- the restarted worker is at generation 1: its next one is 2
    r.gen = 1
    r.scan_from = #r:stderr()
    r:wait_reload()
    assert.equal("three", r:get("/").body)
    r:wait_count("master %d+: worker 0 checked and applied it", 1)
  end)
end)
