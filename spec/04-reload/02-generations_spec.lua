-- luacheck: std +busted
-- Atomic generations: a request in flight when a reload completes finishes
-- with the generation it started in (old policy instances, old response
-- phase); a request started after the reload gets the new one, also on the
-- same keep-alive connection; the old generation is closed once its last
-- request is done.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"
local http = require "spec.support.http"
local mock = require "spec.support.mock"

-- hdr steps: on /slow (exact) value V and a 300 ms sleep in access,
-- elsewhere value V without sleeping.
local function sleeping_steps(value)
  return {
    "      - hdr:",
    "          - condition: { name: pathExact, path: /slow }",
    "            action: { value: " .. value .. ", sleep: 0.3 }",
    "          - condition: { name: not, condition: { name: pathExact, path: /slow } }",
    "            action: { value: " .. value .. " }",
    H.terminate("done-" .. value),
  }
end

describe("atomic generations", function()
  local up
  setup(function() up = mock.start{ name = "gen-up" } end)
  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  -- Sends path on a new connection and waits until the request has entered
  -- the hdr policy's access phase (its log line); returns conn, worker pid.
  local function start_slow(r, path)
    local conn = assert(r.g:connect())
    assert(conn:request{ path = path })
    local pid = r.g:wait_log("worker (%d+): hdr access " .. path:gsub("%p", "%%%0") .. "$")
    return conn, tonumber(pid)
  end

  it("a request sleeping 300 ms in a policy finishes with the old generation", function()
    local r = H.start{
      config = H.config{ tollgate = { "watch: false" }, steps = sleeping_steps("old") },
      files = { ["policies/hdr.lua"] = H.hdr_policy() },
    }
    finally(function() r:cleanup() end)
    local slow, slow_worker = start_slow(r, "/slow")
    finally(function() slow:close() end)

    r:write(H.config{ tollgate = { "watch: false" }, steps = sleeping_steps("new") })
    assert(r.g:signal("HUP"))
    r:wait_reload()

    -- after the reload: the new generation, on every worker
    for _ = 1, 4 do
      local res = assert(r:get("/fast"))
      assert.equal("done-new", res.body)
      assert.equal("new", res.headers["x-value"])
      assert.equal("new", res.headers["x-access-value"])
    end
    -- the slow request was still in flight meanwhile
    assert.is_false(slow:closed())
    assert.equal("", slow.buf)
    assert.equal(0, r:count("worker " .. slow_worker .. ": generation 1 closed"))

    local res = assert(slow:read_response())
    assert.equal(200, res.status)
    assert.equal("done-old", res.body)
    assert.equal("old", res.headers["x-value"])
    assert.equal("old", res.headers["x-access-value"])

    -- its old generation goes once that request is done
    r:wait_count("worker " .. slow_worker .. ": generation 1 closed", 1)

    -- the next request on the same keep-alive connection: the new generation
    assert(slow:request{ path = "/again" })
    res = assert(slow:read_response())
    assert.equal("done-new", res.body)
    assert.equal("new", res.headers["x-value"])
  end)

  it("a proxied request to a slow upstream (/slow/300) finishes with the old generation",
    function()
    local function cfg(value)
      return H.config{
        tollgate = { "watch: false" },
        services = { backend = "http://127.0.0.1:" .. up.port },
        steps = { "      - hdr: { action: { value: " .. value .. " } }", H.proxy() },
      }
    end
    local r = H.start{ config = cfg("old"), files = { ["policies/hdr.lua"] = H.hdr_policy() } }
    finally(function() r:cleanup() end)

    local slow, slow_worker = start_slow(r, "/slow/300")
    finally(function() slow:close() end)
    r:write(cfg("new"))
    assert(r.g:signal("HUP"))
    r:wait_reload()

    for _ = 1, 4 do
      local res = assert(r:get("/echo/after"))
      assert.equal(200, res.status)
      assert.equal("new", res.headers["x-value"])
      assert.equal("gen-up", res.headers["x-upstream"])
    end
    assert.is_false(slow:closed())
    assert.equal("", slow.buf)

    local res = assert(slow:read_response())
    assert.equal(200, res.status)
    assert.equal("slow", res.body)
    assert.equal("old", res.headers["x-value"])          -- response phase of the old generation
    assert.equal("old", res.headers["x-access-value"])
    r:wait_count("worker " .. slow_worker .. ": generation 1 closed", 1)

    assert(slow:request{ path = "/echo/next" })
    res = assert(slow:read_response())
    assert.equal(200, res.status)
    assert.equal("new", res.headers["x-value"])
  end)

  it("requests in flight over several reloads each finish in their own generation", function()
    local r = H.start{
      config = H.config{ tollgate = { "watch: false" }, steps = sleeping_steps("g1") },
      files = { ["policies/hdr.lua"] = H.hdr_policy() },
      workers = 1,
    }
    finally(function() r:cleanup() end)
    local conns = {}
    finally(function() for _, c in ipairs(conns) do c:close() end end)
    for gen = 1, 3 do
      conns[gen] = assert(http.connect(r.g.port))
      assert(conns[gen]:request{ path = "/slow" })
      r:wait_count("hdr access /slow$", gen)
      r:write(H.config{ tollgate = { "watch: false" }, steps = sleeping_steps("g" .. (gen + 1)) })
      assert(r.g:signal("HUP"))
      r:wait_reload()
    end
    for gen = 1, 3 do
      local res = assert(conns[gen]:read_response())
      assert.equal("done-g" .. gen, res.body)
      assert.equal("g" .. gen, res.headers["x-value"])
    end
    assert.equal("done-g4", assert(r:get("/fast")).body)
    local pid = r.workers[1]
    for gen = 1, 3 do r:wait_count("worker " .. pid .. ": generation " .. gen .. " closed", 1) end
  end)
end)
