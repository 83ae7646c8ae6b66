-- luacheck: std +busted
-- State survives a reload: rate-limit counters (shared memory) are not
-- reset by a reload of an unrelated change, nor by a new set of workers;
-- a changed http.port makes the gateway listen on the new port (a new set
-- of workers, the old ones drained: a request in flight on them finishes)
-- and the old port stops answering once the old workers are gone.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"
local http = require "spec.support.http"
local mock = require "spec.support.mock"
local process = require "spec.support.process"

describe("state across reloads", function()
  local up
  setup(function() up = mock.start{ name = "state-up" } end)
  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  local RATE = {
    "      - rate-limit:",
    "          - action:",
    "              max: 3",
    "              windowMs: 600000",
  }
  local function rate_config(message, port)
    local steps = {}
    for i, l in ipairs(RATE) do steps[i] = l end
    steps[#steps + 1] = H.terminate(message)
    return H.config{ steps = steps, port = port }
  end

  it("a rate-limit counter is not reset by a reload of an unrelated change", function()
    local r = H.start{ config = rate_config("one") }
    finally(function() r:cleanup() end)
    assert.equal(200, r:get("/").status)
    assert.equal(200, r:get("/").status)
    r:write(rate_config("two"))
    r:wait_reload()
    local res = r:get("/")
    assert.equal(200, res.status)   -- the third of 3
    assert.equal("two", res.body)
    assert.equal(429, r:get("/").status)
    -- and again after one more reload
    r:write(rate_config("three"))
    r:wait_reload()
    assert.equal(429, r:get("/").status)
  end)

  it("a changed http.port: a new set of workers on the new port, the old one drained and closed",
    function()
    local function cfg(message, port)
      return H.config{ port = port, services = { backend = "http://127.0.0.1:" .. up.port },
        steps = { "      - hdr: { action: { value: " .. message .. " } }", H.proxy() } }
    end
    local r = H.start{ config = cfg("old"), files = { ["policies/hdr.lua"] = H.hdr_policy() } }
    finally(function() r:cleanup() end)
    local old_port, old_workers = r.g.port, r.workers
    assert.equal("old", assert(r:get("/echo/a")).headers["x-value"])

    -- a request in flight on an old worker during the switch
    local slow = assert(http.connect(old_port))
    finally(function() slow:close() end)
    assert(slow:request{ path = "/slow/500" })
    r.g:wait_log("hdr access /slow/500$")

    local new_port = process.free_port()
    r:write(cfg("new", new_port))
    r:wait_count("master %d+: new listeners or worker count: starting 2 workers, stopping the " ..
      "previous ones gracefully", 1)
    r:wait_count("master %d+: listening on http://127%.0%.0%.1:" .. new_port, 1)
    r.workers = r:wait_ready(2)
    r.gen = 1
    for _, pid in ipairs(r.workers) do
      for _, old in ipairs(old_workers) do assert.not_equal(old, pid) end
    end

    local res = assert(http.get(new_port, "/echo/b"))
    assert.equal(200, res.status)
    assert.equal("new", res.headers["x-value"])
    assert.equal("state-up", res.headers["x-upstream"])

    -- the request in flight on the old worker finishes, with its generation
    res = assert(slow:read_response())
    assert.equal(200, res.status)
    assert.equal("slow", res.body)
    assert.equal("old", res.headers["x-value"])

    -- the old workers go, and with them the old port
    process.wait_for(function()
      for _, pid in ipairs(old_workers) do if process.alive(pid) then return false end end
      return true
    end, 10, "the old workers to exit")
    assert.is_false(process.port_open(old_port))
    local none, err = http.get(old_port, "/echo/c", nil, { timeout = 2 })
    assert.is_nil(none)
    assert.matches("refused", err)

    -- and the new port reloads in place as usual
    r:write(cfg("newer", new_port))
    r:wait_reload()
    assert.equal("newer", assert(http.get(new_port, "/echo/d")).headers["x-value"])
  end)

  it("a rate-limit counter survives a new set of workers (port change)", function()
    local r = H.start{ config = rate_config("one") }
    finally(function() r:cleanup() end)
    assert.equal(200, r:get("/").status)
    assert.equal(200, r:get("/").status)
    local new_port = process.free_port()
    r:write(rate_config("two", new_port))
    r:wait_count("master %d+: new listeners or worker count", 1)
    r.workers = r:wait_ready(2)
    local res = assert(http.get(new_port, "/"))
    assert.equal(200, res.status)
    assert.equal("two", res.body)
    assert.equal(429, assert(http.get(new_port, "/")).status)
  end)

  it("a port change to a port already taken is refused; the gateway keeps serving", function()
    local sock = assert(require("socket").bind("127.0.0.1", 0))
    finally(function() sock:close() end)
    local _, taken = sock:getsockname()
    local r = H.start{ config = rate_config("one") }
    finally(function() r:cleanup() end)
    r:write(rate_config("two", taken))
    local reason = r:wait_refused()
    assert.matches("cannot listen on 127.0.0.1:" .. taken, reason, 1, true)
    assert.equal("one", r:get("/").body)
    r:write(rate_config("three"))
    r:wait_reload()
    assert.equal("three", r:get("/").body)
  end)
end)
