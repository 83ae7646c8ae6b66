-- luacheck: std +busted
-- Nothing is lost: under a steady load through the proxy to a mock upstream
-- (keep-alive connections sending back to back, plus a loop of new
-- connections with one request each: spec/04-reload/load.lua), 20 reloads
-- in a row, each a real change (a header's value, or a terminate message),
-- each waited for in every worker before the next: zero failed requests,
-- zero connection resets, zero non-2xx responses.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"
local process = require "spec.support.process"

describe("reloads under load", function()
  local up
  setup(function() up = mock.start{ name = "load-up" } end)
  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  -- reload i changes the header when i is even, the terminate message when odd
  local function cfg(i, tollgate)
    local value = "v" .. (i - i % 2)
    local message = "m" .. (i - (i + 1) % 2)
    return H.config{
      tollgate = tollgate,
      services = { backend = "http://127.0.0.1:" .. up.port },
      steps = {
        "      - terminate:",
        "          - condition: { name: pathExact, path: /never }",
        "            action: { statusCode: 410, message: " .. message .. " }",
        "      - hdr: { action: { value: " .. value .. " } }",
        H.proxy(),
      },
    }
  end

  local function run(trigger)
    local tg = trigger == "HUP" and { "watch: false" } or nil
    local r = H.start{ config = cfg(0, tg), files = { ["policies/hdr.lua"] = H.hdr_policy() } }
    finally(function() r:cleanup() end)
    local load = H.load(r.g.port, { keepalive = 4, fresh = 2 })
    finally(function() load.kill() end)
    load.wait_responses(200)

    for i = 1, 20 do
      local before = load.responses()
      r:write(cfg(i, tg))
      if trigger == "HUP" then assert(r.g:signal("HUP")) end
      r:wait_reload(10)
      -- the load goes on between reloads (so every reload happens under it)
      load.wait_responses(before + 50)
    end
    local res = assert(r:get("/never"))
    assert.equal(410, res.status)
    assert.equal("m19", res.body)
    assert.equal("v20", assert(r:get("/echo/x")).headers["x-value"])

    local stats = load.finish()
    assert.same({ failed = 0, resets = 0, non2xx = 0, errors = {} },
      { failed = stats.failed, resets = stats.resets, non2xx = stats.non2xx, errors = stats.errors })
    assert.equal(stats.requests, stats.ok)
    assert.is_true(stats.keepalive_requests > 500, "keep-alive requests: " .. stats.keepalive_requests)
    assert.is_true(stats.fresh_requests > 200, "new-connection requests: " .. stats.fresh_requests)
    -- no worker died or was replaced
    for _, pid in ipairs(r.workers) do assert.is_true(process.alive(pid)) end
    assert.equal(0, r:count("restarting"))
    assert.equal(0, r:count("%[error%]"))
    return stats
  end

  it("20 reloads by file edits: zero failed requests, resets, non-2xx", function()
    run("edit")
  end)

  it("20 reloads by SIGHUP: zero failed requests, resets, non-2xx", function()
    run("HUP")
  end)
end)
