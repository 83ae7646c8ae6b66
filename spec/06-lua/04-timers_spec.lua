-- tollgate.timer on the real binary (one worker): periodic and one-shot
-- timers started by a policy's constructor, stopping them, a callback that
-- sleeps and makes an HTTP call, errors in callbacks, and what a reload and
-- SIGTERM do to them. Progress is observed through shared-dictionary
-- counters read by requests, with deadlines; "a timer did not run" is
-- judged against another timer that keeps running, not against a sleep.

local H = require "spec.06-lua.helpers"

local process = H.process
local now = H.now

-- Every timer feature, each writing shared-dictionary keys suffixed with
-- the generation's marker (conf.gen):
--   ticks:<gen>, ticks:all   every `period` s
--   stopper:<gen>            every `period` s, stops itself after 3 runs
--   after:<gen>              once, after 0.1 s
--   cancelled:<gen>          a 0.2 s one-shot stopped before it fires
--   call:<gen>               once: sleeps 0.05 s, calls the mock, records the answer
--   faulty:<gen>             every `period` s, raising an error every run
--   sleeper:<gen>            (sleeper = true) once: sleeps 30 s (in progress at shutdown)
--   built:<gen>              the constructor ran
local TICKER = [[
local shdict = require "tollgate.shdict"
local timer = require "tollgate.timer"
local http = require "tollgate.http"
local cjson = require "cjson"
return {
  name = "ticker",
  schema = { properties = {
    gen = { type = "string", required = true },
    period = { type = "number", default = 0.05 },
    upstream = { type = "integer" },
    sleeper = { type = "boolean", default = false },
  } },
  new = function(conf)
    local g = conf.gen
    shdict.incr("built:" .. g, 1)
    timer.every(conf.period, function()
      shdict.incr("ticks:" .. g, 1)
      shdict.incr("ticks:all", 1)
    end)
    local runs, stopper = 0, nil
    stopper = timer.every(conf.period, function()
      runs = runs + 1
      shdict.incr("stopper:" .. g, 1)
      if runs == 3 then stopper:stop() end
    end)
    timer.after(0.1, function() shdict.incr("after:" .. g, 1) end)
    local cancelled = timer.after(0.2, function() shdict.incr("cancelled:" .. g, 1) end)
    cancelled:stop()
    if conf.upstream then
      timer.after(0, function(task)
        local t0 = require("tollgate.core").now()
        task:sleep(0.05)
        local res, err = http.request{ url = "http://127.0.0.1:" .. conf.upstream .. "/echo/timer-" .. g,
          headers = { ["X-From"] = "timer" } }
        if not res then shdict.set("call:" .. g, "error " .. tostring(err), 60) return end
        local echo = cjson.decode(res.body)
        shdict.set("call:" .. g, res.status .. " " .. echo.path .. " " .. echo.headers["x-from"], 60)
        shdict.set("callslept:" .. g, require("tollgate.core").now() - t0 >= 0.05 and "yes" or "no", 60)
      end)
    end
    timer.every(conf.period, function()
      shdict.incr("faulty:" .. g, 1)
      error("faulty timer " .. g)
    end)
    if conf.sleeper then
      timer.after(0, function(task)
        shdict.incr("sleeper:" .. g, 1)
        task:sleep(30)
        shdict.incr("sleeper-woke:" .. g, 1)
      end)
    end
    return conf
  end,
  access = function() end,
}
]]

local function config(gen, extra)
  -- watch off: the spec reloads with SIGHUP, once per edit
  return H.HEAD .. [[
  shutdownTimeout: 10000
  watch: false
apiEndpoints:
  api: { paths: '/*' }
policies: [ticker, peek, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - peek:
      - ticker: { action: { gen: ]] .. gen .. (extra or "") .. [[ } }
      - terminate: { action: { statusCode: 200, message: ok } }
]]
end

local FILES = { ["policies/ticker.lua"] = TICKER, ["policies/peek.lua"] = H.PEEK }

local function keys(gen, names)
  local out = {}
  for i, n in ipairs(names) do out[i] = n .. ":" .. gen end
  return out
end

-- Waits until ticks:<gen> reaches n; returns the counters read at that instant.
local function until_ticks(g, gen, n, names, timeout)
  local ks = keys(gen, names or {})
  ks[#ks + 1] = "ticks:" .. gen
  ks[#ks + 1] = "ticks:all"
  return H.until_(function()
    local c = H.counters(g, ks)
    return c["ticks:" .. gen] >= n and c
  end, timeout or 10, "ticks:" .. gen .. " >= " .. n)
end

describe("timers started by a policy", function()
  local up, g
  setup(function()
    up = H.mock.start{ name = "timers" }
    g = H.server.start{ config = config("A", ", upstream: " .. up.port), files = FILES }
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  it("timer.every increments a shared counter, run after run", function()
    local first = until_ticks(g, "A", 3)["ticks:A"]
    local later = until_ticks(g, "A", first + 5)["ticks:A"]
    assert.is_true(later >= first + 5)
  end)

  it("t:stop() from the callback ends a periodic timer after its third run", function()
    local c = until_ticks(g, "A", 3, { "stopper" })
    local base = c["ticks:A"]
    -- twenty more periods of the timer that goes on
    c = until_ticks(g, "A", base + 20, { "stopper" })
    assert.equal(3, c["stopper:A"])
  end)

  it("timer.after runs once; a stopped one never runs", function()
    local c = until_ticks(g, "A", 3, { "after", "cancelled" })
    local base = c["ticks:A"]
    -- 0.1 s and 0.2 s are long past after twenty 0.05 s periods more
    c = until_ticks(g, "A", base + 20, { "after", "cancelled" })
    assert.equal(1, c["after:A"])
    assert.equal(0, c["cancelled:A"])
  end)

  it("a callback may sleep and make an HTTP call", function()
    local v = H.until_(function()
      local r = assert(g:get("/shdict/call:A"))
      return r.status == 200 and r.body
    end, 5, "the timer's HTTP call")
    assert.equal("200 /echo/timer-A timer", v)
    assert.equal("yes", assert(g:get("/shdict/callslept:A")).body)
  end)

  it("an error in a callback is logged with its file and line, and the timer keeps running", function()
    local where = g:wait_log("timer callback: .-(policies/ticker%.lua:%d+): faulty timer A")
    local line
    local n = 0
    for l in TICKER:gmatch("[^\n]*\n") do
      n = n + 1
      if l:find('error("faulty timer', 1, true) then line = n end
    end
    assert.equal("policies/ticker.lua:" .. line, where)
    local base = H.counter(g, "faulty:A")
    H.until_(function() return H.counter(g, "faulty:A") >= base + 3 end, 5, "the faulty timer to run again")
    -- requests are still served
    assert.equal("ok", assert(g:get("/x")).body)
  end)
end)

describe("timers and reloads", function()
  it("a reload stops the old generation's timers; the new one starts its own", function()
    local g = H.start{ config = config("R1"), files = FILES }
    H.until_(function()
      local v = H.counters(g, { "after:R1", "stopper:R1" })
      return v["after:R1"] >= 1 and v["stopper:R1"] >= 3
    end, 5, "R1's one-shot and stopper")

    assert(process.write_file(g.config_path, config("R2")))
    assert(g:signal("HUP"))
    local c = until_ticks(g, "R2", 3, { "ticks" }, 10)
    local old1, new1, all1 = H.counters(g, { "ticks:R1" })["ticks:R1"], c["ticks:R2"], c["ticks:all"]
    -- twenty periods of the new generation later
    c = until_ticks(g, "R2", new1 + 20, {}, 10)
    local old2 = H.counters(g, { "ticks:R1" })["ticks:R1"]
    local new2, all2 = c["ticks:R2"], c["ticks:all"]
    assert.is_true(old2 - old1 <= 1, ("the old generation's timer still ran %d times"):format(old2 - old1))
    -- the total rate is the new generation's alone, not doubled
    assert.is_true((all2 - all1) <= (new2 - new1) + 1,
      ("all: +%d, new generation: +%d"):format(all2 - all1, new2 - new1))
    -- the one-shots of R2 ran in R2 too
    -- the one-shot and the self-stopping timer of R2 ran in R2 exactly as in R1
    c = H.until_(function()
      local v = H.counters(g, { "after:R2", "stopper:R2", "after:R1", "stopper:R1" })
      return v["after:R2"] >= 1 and v["stopper:R2"] >= 3 and v
    end, 5, "R2's one-shot and stopper")
    assert.same({ ["after:R2"] = 1, ["stopper:R2"] = 3, ["after:R1"] = 1, ["stopper:R1"] = 3 }, c)
  end)

  it("a build that fails after a constructor started timers: none of them ever runs", function()
    -- the ticker's constructor starts its timers, then the next step's throws: the new
    -- generation is dropped, and its timers with it (they wait for their generation to serve)
    local boom = { ["policies/boom.lua"] =
      'return { name = "boom", new = function() error("boom in the constructor") end, ' ..
      'access = function() end }' }
    for k, v in pairs(FILES) do boom[k] = v end
    local g = H.start{ config = config("K1"), files = boom }
    until_ticks(g, "K1", 2)
    local failing = config("KF"):gsub("policies: %[ticker, peek, terminate%]",
      "policies: [ticker, peek, terminate, boom]"):gsub("      %- terminate:", "      - boom:\n%0")
    assert(process.write_file(g.config_path, failing))
    assert(g:signal("HUP"))
    H.until_(function() return g:logs():find("boom in the constructor", 1, true) end, 10,
      "the reload to fail")
    -- twenty periods of the serving generation later
    until_ticks(g, "K1", H.counter(g, "ticks:K1") + 20)
    local c = H.counters(g, { "built:KF", "ticks:KF", "after:KF", "stopper:KF", "faulty:KF" })
    assert.same({ ["built:KF"] = 1, ["ticks:KF"] = 0, ["after:KF"] = 0, ["stopper:KF"] = 0,
                  ["faulty:KF"] = 0 }, c)
    assert.equal("ok", assert(g:get("/x")).body)
  end)

  it("after several reloads only the last generation ticks", function()
    local g = H.start{ config = config("S0"), files = FILES }
    until_ticks(g, "S0", 2)
    for i = 1, 4 do
      assert(process.write_file(g.config_path, config("S" .. i)))
      assert(g:signal("HUP"))
      until_ticks(g, "S" .. i, 2, {}, 10)
    end
    local before = H.counters(g, { "ticks:S0", "ticks:S1", "ticks:S2", "ticks:S3", "ticks:S4" })
    until_ticks(g, "S4", before["ticks:S4"] + 20, {}, 10)
    local after = H.counters(g, { "ticks:S0", "ticks:S1", "ticks:S2", "ticks:S3" })
    for i = 0, 3 do
      local k = "ticks:S" .. i
      assert.is_true(after[k] - before[k] <= 1, k .. " still ticking: +" .. (after[k] - before[k]))
    end
  end)
end)

describe("timers and shutdown", function()
  local CASES = {
    { what = "with periodic timers running", extra = "" },
    { what = "with a timer callback in the middle of a 30 s sleep", extra = ", sleeper: true" },
  }
  for _, c in ipairs(CASES) do
    it("SIGTERM exits promptly with status 0 " .. c.what, function()
      local g = H.start{ config = config("T", c.extra), files = FILES }
      until_ticks(g, "T", 3)
      if c.extra ~= "" then
        H.until_(function() return H.counter(g, "sleeper:T") == 1 end, 5, "the sleeper to start")
      end
      local t0 = now()
      local code = g:stop{ timeout = 15 }
      local took = now() - t0
      assert.equal(0, code, g:logs())
      assert.is_true(took < 3, ("the gateway took %.2f s to stop"):format(took))
    end)
  end
end)
