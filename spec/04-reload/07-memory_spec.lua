-- luacheck: std +busted
-- No growth: 200 reloads of a config with 200 routes (each a real change,
-- with requests served between them): every worker's RSS (VmRSS) after the
-- last is within 5 MB of what it was after the first, and every replaced
-- generation was closed. (bench/reload.sh does 1,000 reloads of 1,000 routes.)

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"
local routes = require "spec.04-reload.routes"
local mock = require "spec.support.mock"
local process = require "spec.support.process"

local RELOADS, ROUTES = 200, 200

describe("memory across reloads", function()
  local up, master_rss
  setup(function() up = mock.start{ name = "mem-up" } end)
  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  local function cfg(i)
    return routes.config{ n = ROUTES, upstream = up.port, variant = "v" .. i,
      tollgate = { "watch: false", "logLevel: debug" } }
  end

  it(RELOADS .. " reloads of a " .. ROUTES .. "-route config: worker RSS within 5 MB", function()
    local r = H.start{ config = cfg(0), timeout = 10 }
    finally(function() r:cleanup() end)
    local conn = assert(r.g:connect())
    finally(function() conn:close() end)

    local first
    master_rss = {}
    for i = 1, RELOADS do
      r:write(cfg(i))
      assert(r.g:signal("HUP"))
      r:wait_reload(10)
      -- a few requests in the new generation (a keep-alive one, a new one, proxied)
      local route = (i * 7) % ROUTES + 1
      assert(conn:request{ path = "/api/" .. route, headers = { Host = "h" .. route .. ".example.com",
        Authorization = "Bearer x" } })
      local res = assert(conn:read_response())
      if route % 4 == 2 then
        assert.equal(401, res.status)
      else
        assert.equal("route " .. route .. " v" .. i, res.body)
      end
      res = assert(r:get("/echo/" .. i))
      assert.equal(200, res.status)
      if i == 1 then
        first = r:rss()
        master_rss.first = process.rss_kb(r.g.pid)
      end
    end
    local last = r:rss()
    master_rss.last = process.rss_kb(r.g.pid)
    for w = 1, #r.workers do
      assert.is_true(last[w] - first[w] < 5 * 1024,
        ("worker %d: RSS %d KB after the first reload, %d KB after the last (%+d KB)")
          :format(r.workers[w], first[w], last[w], last[w] - first[w]))
    end
    -- every replaced generation was closed (the current one is RELOADS + 1)
    for _, pid in ipairs(r.workers) do
      r:wait_count("worker " .. pid .. ": generation %d+ closed", RELOADS)
    end
  end)

  -- the master checks every new config in a Lua state of its own, closed after
  it("... and the master's RSS too", function()
    assert.is_table(master_rss, "the previous spec did not run")
    assert.is_true(master_rss.last - master_rss.first < 5 * 1024,
      ("master: RSS %d KB after the first reload, %d KB after the last (%+d KB)")
        :format(master_rss.first, master_rss.last, master_rss.last - master_rss.first))
  end)
end)
