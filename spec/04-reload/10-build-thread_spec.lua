-- luacheck: std +busted
-- A worker builds a new generation in a thread beside its loop (and closes
-- old ones in another, both ten nice levels below the loop): while the
-- build runs (here: held in a policy constructor for as long as we like)
-- the worker goes on serving the previous generation, a further trigger
-- waits for it, and a build that never ends neither stops the serving nor
-- keeps the gateway from stopping. One worker throughout, so every request
-- goes to the worker that builds.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"
local process = require "spec.support.process"

describe("a reload built beside the loop", function()
  teardown(function() gateway.cleanup_all() end)

  -- the constructor of the switch policy (helpers) holds the build while the file
  -- `hold` exists
  local config = H.switch_config

  local function start(message)
    local r = H.start{ config = config(message), files = H.SWITCH_FILES, workers = 1 }
    finally(function() r:cleanup() end)
    assert.equal(message, r:get("/").body)
    return r
  end

  -- starts a reload to `message` and waits until its build is held in the constructor
  local function held_reload(r, message)
    r:write_file("hold", "")
    r:replace(config(message))
    assert(r.g:signal("HUP"))
    process.wait_for(function()
      return process.read_file(r.g.dir .. "/holding") ~= nil
    end, 5, "the build to reach the constructor")
  end

  -- how many threads of process pid run at nice 10
  local function nice10_threads(pid)
    local n = 0
    local ls = assert(io.popen("ls /proc/" .. pid .. "/task"))
    for tid in ls:lines() do
      local stat = process.read_file("/proc/" .. pid .. "/task/" .. tid .. "/stat")
      if stat then
        local fields = {}
        for f in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = f end
        if tonumber(fields[17]) == 10 then n = n + 1 end -- field 19 of stat: nice
      end
    end
    ls:close()
    return n
  end

  it("serves the previous configuration while the new one builds, then applies it", function()
    local r = start("one")
    -- the thread that closes old generations
    assert.equal(1, nice10_threads(r.workers[1]))
    held_reload(r, "two")
    -- the build is a thread of the worker's, ten nice levels below its loop
    assert.equal(2, nice10_threads(r.workers[1]))
    for _ = 1, 20 do
      local res = r:get("/")
      assert.equal(200, res.status)
      assert.equal("one", res.body)
    end
    assert.equal(0, r:count("configuration reloaded"))
    assert(os.remove(r.g.dir .. "/hold"))
    r:wait_reload()
    assert.equal("two", r:get("/").body)
    r:wait_count("master %d+: worker 0 checked and applied it %(generation 2%)", 1)
    assert.equal(1, nice10_threads(r.workers[1])) -- the build's thread ended
    -- and the previous generation, with no request left, is closed (by the closer thread)
    r:wait_count("worker %d+: generation 1 closed in [%d.]+ ms", 1)
  end)

  it("a trigger during the build is built after it, once", function()
    local r = start("one")
    held_reload(r, "two")
    r:replace(config("three"))
    assert(r.g:signal("HUP"))
    r:wait_count("master %d+: SIGHUP: a reload is under way; another follows it", 1)
    assert.equal("one", r:get("/").body)
    assert(os.remove(r.g.dir .. "/hold"))
    r:wait_reload()
    r:wait_reload()
    assert.equal("three", r:get("/").body)
    assert.equal(2, r:count("configuration reloaded"))
  end)

  it("a build past tollgate.reloadTimeout is refused; the next edit applies beside it", function()
    local function cfg(message, hold)
      return H.switch_config(message, { tollgate = { "watch: false", "reloadTimeout: 1000" },
                                        step = hold and "      - switch:" })
    end
    local r = H.start{ config = cfg("one", true), files = H.SWITCH_FILES, workers = 1 }
    finally(function() r:cleanup() end)
    r:write_file("hold", "")
    r:replace(cfg("two", true))
    assert(r.g:signal("HUP"))
    local reason = r:wait_refused()
    assert.matches("the new configuration was still building after 1 s (tollgate.reloadTimeout; " ..
      "a policy constructor that does not return?): given up", reason, 1, true)
    assert.equal("one", r:get("/").body)
    -- the stuck build still runs; a good edit does not wait for it
    r:replace(cfg("three", false))
    assert(r.g:signal("HUP"))
    r:wait_reload()
    assert.equal("three", r:get("/").body)
    -- when the stuck build ends at last, what it built is dropped
    assert(os.remove(r.g.dir .. "/hold"))
    r:wait_count("worker %d+: reload: the build given up %d+ s after it started has ended; " ..
      "what it built is dropped", 1)
    assert.equal("three", r:get("/").body)
    assert.equal(1, r:count("configuration reloaded"))
  end)

  it("a build that never ends: the worker serves on, and SIGTERM still stops the gateway", function()
    local r = start("one")
    held_reload(r, "two")
    for _ = 1, 5 do assert.equal("one", r:get("/").body) end
    local code = r.g:stop{ timeout = 10 }
    assert.equal(0, code, r.g:logs())
    assert.equal(1, r:count("worker %d+: stopping with a reload still building %(for %d+ s%); " ..
      "it is abandoned"))
    assert.equal(0, r:count("configuration reloaded"))
  end)
end)
