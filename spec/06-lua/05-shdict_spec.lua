-- tollgate.shdict on the real binary with two workers (-w 2): what one
-- worker writes the other reads, TTLs expire for both, and increments are
-- atomic: N increments from many concurrent requests on both workers give
-- exactly N.

local H = require "spec.06-lua.helpers"

local now = H.now

-- GET /set/<key>/<value>?ttl=S[&num=1], /get/<key>, /incr/<key>?by=N&ttl=S,
-- /delete/<key>, /hammer/<key>/<n> (n increments by 1, yielding to the
-- loop every 10). Answers carry X-Worker (which worker served it), and
-- X-Value / X-Ttl.
local DICT = [[
local shdict = require "tollgate.shdict"
local core = require "tollgate.core"
local function q(req, name)
  return (req.query or ""):match("[?&]?" .. name .. "=([^&]*)")
end
return {
  name = "dict",
  access = function(self, req)
    local w = { ["X-Worker"] = core.C.tg_worker_id() }
    local op, key, arg = req.path:match("^/(%a+)/([^/]+)/?(.*)$")
    if op == "set" then
      local v = arg
      if q(req, "num") then v = tonumber(arg) end
      shdict.set(key, v, tonumber(q(req, "ttl") or ""))
      return 200, "set", w
    elseif op == "get" then
      local v, ttl = shdict.get(key)
      if v == nil then return 404, "absent", w end
      w["X-Type"] = type(v)
      w["X-Ttl"] = ttl
      return 200, tostring(v), w
    elseif op == "incr" then
      local v, ttl = shdict.incr(key, tonumber(q(req, "by") or "1"), tonumber(q(req, "ttl") or ""))
      if v == nil then return 409, ttl, w end
      w["X-Ttl"] = ttl
      return 200, tostring(v), w
    elseif op == "delete" then
      return 200, tostring(shdict.delete(key)), w
    elseif op == "hammer" then
      for i = 1, tonumber(arg) do
        assert(shdict.incr(key, 1))
        if i % 10 == 0 then req:sleep(0) end
      end
      return 200, "done", w
    end
    return 404, "no such op", w
  end,
}
]]

local CONFIG = H.HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [dict]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - dict:
]]

describe("the shared dictionary across two workers", function()
  local PER_WORKER = 10
  local g
  local pool = {}    -- worker id -> keep-alive connections served by it
  local workers = {} -- the two worker ids, in the order first seen
  local spare = {}

  setup(function()
    g = H.server.start{ config = CONFIG, files = { ["policies/dict.lua"] = DICT }, workers = 2 }
    -- new connections until each worker holds PER_WORKER of them
    H.until_(function()
      local conn = assert(g:connect{ timeout = 20 })
      assert(conn:request{ path = "/get/none" })
      local res = assert(conn:read_response())
      local w = res.headers["x-worker"]
      if not pool[w] then pool[w] = {}; workers[#workers + 1] = w end
      local list = pool[w]
      if #list < PER_WORKER then list[#list + 1] = conn else spare[#spare + 1] = conn end
      return #workers == 2 and #pool[workers[1]] == PER_WORKER and #pool[workers[2]] == PER_WORKER
    end, 20, PER_WORKER .. " connections on each of the two workers")
    for _, c in ipairs(spare) do c:close() end
  end)
  teardown(function()
    for _, list in pairs(pool) do
      for _, c in ipairs(list) do c:close() end
    end
    if g then g:cleanup() end
  end)

  -- one request on worker i's connection (and a check that it served it)
  local function via(i, path)
    local w = workers[i]
    local conn = pool[w][1]
    assert(conn:request{ path = path })
    local res = assert(conn:read_response())
    assert.equal(w, res.headers["x-worker"], "the keep-alive connection stays on its worker")
    return res
  end

  it("what one worker sets the other gets: strings and numbers, without a TTL", function()
    assert.not_equal(workers[1], workers[2])
    local CASES = {
      { path = "/set/s1/hello", key = "s1", value = "hello", type = "string" },
      { path = "/set/n1/42.5?num=1", key = "n1", value = "42.5", type = "number" },
    }
    for _, c in ipairs(CASES) do
      assert.equal(200, via(1, c.path).status)
      local res = via(2, "/get/" .. c.key)
      assert.equal(200, res.status)
      assert.equal(c.value, res.body)
      assert.equal(c.type, res.headers["x-type"])
      assert.equal("-1", res.headers["x-ttl"], "no TTL: it does not expire")
    end
  end)

  it("a value set with a TTL is seen by the other worker, then expires for both", function()
    local t0 = now()
    via(1, "/set/ttl1/soon?ttl=0.3")
    local res = via(2, "/get/ttl1")
    assert.equal(200, res.status)
    assert.equal("soon", res.body)
    local ttl = tonumber(res.headers["x-ttl"])
    assert.is_true(ttl > 0 and ttl <= 0.3, "ttl left " .. ttl)
    H.until_(function() return via(2, "/get/ttl1").status == 404 end, 5, "ttl1 to expire")
    assert.is_true(now() - t0 >= 0.29, ("expired after %.3f s"):format(now() - t0))
    assert.equal(404, via(1, "/get/ttl1").status)
  end)

  it("incr with a TTL: counted by both workers, the TTL set by the first", function()
    local t0 = now()
    local CASES = {
      { worker = 1, path = "/incr/c1?ttl=0.4", value = "1" },
      { worker = 2, path = "/incr/c1?ttl=60", value = "2" },  -- a TTL only applies to a new key
      { worker = 1, path = "/incr/c1?by=5", value = "7" },
      { worker = 2, path = "/incr/c1?by=-2.5", value = "4.5" },
    }
    for _, c in ipairs(CASES) do
      local res = via(c.worker, c.path)
      assert.equal(200, res.status)
      assert.equal(c.value, res.body, c.path)
      local ttl = tonumber(res.headers["x-ttl"])
      -- expiry - now in doubles: 0.4 can come back as 0.40000000000146
      assert.is_true(ttl > 0 and ttl <= 0.4 + 1e-9, c.path .. ": ttl left " .. ttl)
    end
    H.until_(function() return via(1, "/get/c1").status == 404 end, 5, "c1 to expire")
    assert.is_true(now() - t0 >= 0.39, ("expired after %.3f s"):format(now() - t0))
    -- a new key again, counting from the start
    assert.equal("1", via(2, "/incr/c1").body)
  end)

  it("incr on a string refuses, and delete removes for both", function()
    via(1, "/set/str1/text")
    local res = via(2, "/incr/str1")
    assert.equal(409, res.status)
    H.contains("does not hold a number", res.body)
    assert.equal("true", via(2, "/delete/str1").body)
    assert.equal(404, via(1, "/get/str1").status)
  end)

  it("N concurrent increments from many requests on both workers give exactly N", function()
    local EACH = 250
    local sent = {}
    -- one request on every pooled connection: PER_WORKER at once on each worker
    for _, w in ipairs(workers) do
      for _, conn in ipairs(pool[w]) do
        assert(conn:request{ path = "/hammer/atomic/" .. EACH })
        sent[#sent + 1] = { conn = conn, worker = w }
      end
    end
    for _, s in ipairs(sent) do
      local res = assert(s.conn:read_response())
      assert.equal(200, res.status, res.body)
      assert.equal(s.worker, res.headers["x-worker"])
    end
    local n = #sent * EACH
    assert.equal(2 * PER_WORKER * EACH, n)
    assert.equal(tostring(n), via(1, "/get/atomic").body)
    assert.equal(tostring(n), via(2, "/get/atomic").body)
  end)
end)
