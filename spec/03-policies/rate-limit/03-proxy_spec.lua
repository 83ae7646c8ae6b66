-- luacheck: max line length 140
-- rate-limit: the real binary on real sockets. One limit across all
-- workers (the counters are in shared memory), headers and bodies over
-- HTTP, and the seed tutorial's pipeline (rate-limit -> jwt -> proxy).

local gateway = require "spec.support.gateway"
local http = require "spec.support.http"
local mock = require "spec.support.mock"
local jwt = require "spec.support.jwt"
local socket = require "socket"
local cjson = require "cjson"

-- Tags every response with the worker's pid, to see the load was shared.
local WHOAMI = [[
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
return {
  name = "whoami",
  response = function(_, req)
    req.response:set_header("X-Worker", tostring(ffi.C.getpid()))
  end,
}
]]

local HEAD = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  accessLog: off
]]

-- Opens keep-alive connections until `per` of them are served by each of
-- `workers` workers (asked on /probe, which is not rate limited): the load
-- is then spread evenly, whatever the kernel's choice of acceptor.
local function connect_spread(g, workers, per)
  local by_worker, conns = {}, {}
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    local full = 0
    for _, list in pairs(by_worker) do if #list >= per then full = full + 1 end end
    if full >= workers then break end
    local c = assert(g:connect{ timeout = 10 })
    assert(c:request{ path = "/probe" })
    local res = assert(c:read_response())
    local w = assert(res.headers["x-worker"], "no X-Worker on /probe")
    by_worker[w] = by_worker[w] or {}
    if #by_worker[w] < per then
      table.insert(by_worker[w], c)
      conns[#conns + 1] = c
    else
      c:close()
    end
  end
  return conns, by_worker
end

-- Sends `per` pipelined requests on every connection first, then reads
-- every response: all of them are in flight at once.
local function blast(conns, per, path, headers)
  for _, c in ipairs(conns) do
    for _ = 1, per do assert(c:request{ path = path, headers = headers }) end
  end
  local statuses, workers = {}, {}
  for _, c in ipairs(conns) do
    for _ = 1, per do
      local res = assert(c:read_response())
      statuses[res.status] = (statuses[res.status] or 0) + 1
      local w = res.headers["x-worker"]
      if w then workers[w] = (workers[w] or 0) + 1 end
    end
  end
  return statuses, workers
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("rate-limit policy (integration)", function()
  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
    jwt.cleanup()
  end)

  it("10 per second holds within +-1 across 2 workers under concurrent load", function()
    local g = gateway.start{
      workers = 2,
      config = HEAD .. [[
apiEndpoints:
  probe: { paths: '/probe' }
  api: { paths: '/*' }
policies: [whoami, rate-limit, terminate]
pipelines:
  probe:
    apiEndpoints: [probe]
    policies:
      - whoami:
      - terminate: [ { action: { statusCode: 200, message: probe } } ]
  p:
    apiEndpoints: [api]
    policies:
      - whoami:
      - rate-limit: [ { action: { max: 10, windowMs: 1000 } } ]
      - terminate: [ { action: { statusCode: 200, message: ok } } ]
]],
      files = { ["policies/whoami.lua"] = WHOAMI },
    }
    finally(function() g:cleanup() end)

    local conns, by_worker = connect_spread(g, 2, 24)
    finally(function() for _, c in ipairs(conns) do c:close() end end)
    assert.equal(48, #conns, "could not get 24 connections on each of 2 workers: " ..
      cjson.encode((function() local t = {} for w, l in pairs(by_worker) do t[w] = #l end return t end)()))
    local all_workers = {}
    for round = 1, 4 do
      socket.sleep(1.2) -- the previous round's window (1 s from its first request) is over
      local t0 = socket.gettime()
      local statuses, workers = blast(conns, 4, "/round/" .. round)
      local took = socket.gettime() - t0
      for w, n in pairs(workers) do all_workers[w] = (all_workers[w] or 0) + n end
      local ok, refused = statuses[200] or 0, statuses[429] or 0
      assert.equal(48 * 4, ok + refused, "round " .. round .. ": other statuses")
      assert(took < 1, ("round %d took %.3fs: not one window"):format(round, took))
      assert(ok >= 9 and ok <= 11, ("round %d: %d requests let through (limit 10/s), %d refused, " ..
        "workers %s"):format(round, ok, refused, cjson.encode(workers)))
    end
    assert(count_keys(all_workers) == 2, "the load did not reach both workers: " .. cjson.encode(all_workers))
  end)

  it("headers and the JSON or plain refusal over HTTP", function()
    local g = gateway.start{
      workers = 2,
      config = HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [rate-limit, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - rate-limit: [ { action: { max: 2, windowMs: 60000, rateLimitBy: "${req.headers['x-api-key']}" } } ]
      - terminate: [ { action: { statusCode: 200, message: ok } } ]
]],
    }
    finally(function() g:cleanup() end)
    local key = { ["X-Api-Key"] = "k-" .. os.time() }
    local res = assert(g:get("/x", key))
    assert.equal(200, res.status)
    assert.equal("2", res.headers["x-ratelimit-limit"])
    assert.equal("1", res.headers["x-ratelimit-remaining"])
    local reset = tonumber(res.headers["x-ratelimit-reset"])
    assert(reset and math.abs(reset - (os.time() + 60)) <= 2, "reset " .. tostring(reset))
    assert.is_nil(res.headers["retry-after"])
    assert.equal(200, assert(g:get("/x", key)).status)

    res = assert(g:get("/x", key))
    assert.equal(429, res.status)
    assert.equal("Too many requests, please try again later.", res.body)
    assert.matches("^text/plain", res.headers["content-type"])
    assert.equal("0", res.headers["x-ratelimit-remaining"])
    local ra = tonumber(res.headers["retry-after"])
    assert(ra and ra > 0 and ra <= 60, "Retry-After " .. tostring(res.headers["retry-after"]))

    key.Accept = "application/json"
    res = assert(g:get("/x", key))
    assert.equal(429, res.status)
    assert.matches("^application/json", res.headers["content-type"])
    assert.same({ message = "Too many requests, please try again later." }, cjson.decode(res.body))

    key.Accept = "image/png"
    assert.equal(429, assert(g:get("/x", key)).status) -- never 406

    -- another key: its own bucket, on whichever worker
    assert.equal(200, assert(g:get("/x", { ["X-Api-Key"] = "other-" .. os.time() })).status)
  end)

  it("the seed tutorial's pipeline: rate-limit -> jwt -> proxy", function()
    local keys = jwt.keys()
    local up = mock.start{ name = "backend" }
    finally(function() up:stop() end)
    local g = gateway.start{
      workers = 2,
      config = HEAD .. [[
apiEndpoints:
  api: { paths: '/api/*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${UP}' }
policies: [rate-limit, jwt, proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - rate-limit: [ { action: { max: 3, windowMs: 60000 } } ]
      - jwt: [ { action: { secretOrPublicKeyFile: demo.pub, checkCredentialExistence: false } } ]
      - proxy: [ { action: { serviceEndpoint: backend } } ]
]],
      vars = { UP = up.port },
      files = { ["demo.pub"] = keys.rsa.public_pem },
    }
    finally(function() g:cleanup() end)
    local auth = { Authorization = "Bearer " .. jwt.sign({ sub = "alice", exp = os.time() + 300 }, keys.rsa, "RS256") }
    local res = assert(g:get("/api/coffee")) -- no token: 401, counted
    assert.equal(401, res.status)
    assert.equal("2", res.headers["x-ratelimit-remaining"])
    res = assert(g:get("/api/coffee", auth))
    assert.equal(200, res.status)
    assert.equal("alice", cjson.decode(res.body).headers["eg-consumer-id"])
    assert.equal("1", res.headers["x-ratelimit-remaining"])
    assert.equal("3", res.headers["x-ratelimit-limit"])
    assert.equal(200, assert(g:get("/api/coffee", auth)).status)
    res = assert(g:get("/api/coffee", auth))
    assert.equal(429, res.status)
    assert.truthy(res.headers["retry-after"])
  end)

  -- (spec/04-reload/04-state_spec.lua covers an unrelated change and a new
  -- set of workers; here the rate-limit step's own options change)
  it("counters survive a config reload that changes the limit's options", function()
    local H = require "spec.04-reload.helpers"
    local function cfg(max, message)
      return H.config{ steps = {
        "      - rate-limit:",
        "          - action: { max: " .. max .. ", windowMs: 600000, message: " .. message .. " }",
        H.terminate("ok"),
      } }
    end
    local r = H.start{ config = cfg(3, "first") }
    finally(function() r:cleanup() end)
    for _ = 1, 3 do assert.equal(200, assert(r:get("/")).status) end
    local res = assert(r:get("/"))
    assert.equal(429, res.status)
    assert.equal("first", res.body)
    -- a higher max: the count so far (4) stays, one more fits
    r:write(cfg(5, "second"))
    r:wait_reload()
    res = assert(r:get("/"))
    assert.equal(200, res.status)
    assert.equal("0", res.headers["x-ratelimit-remaining"])
    res = assert(r:get("/"))
    assert.equal(429, res.status)
    assert.equal("second", res.body)
  end)

  it("a limit refuses requests across connections of one client (HTTP/1.0, Connection: close)", function()
    local g = gateway.start{
      workers = 2,
      config = HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [rate-limit, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - rate-limit: [ { action: { max: 5, windowMs: 60000 } } ]
      - terminate: [ { action: { statusCode: 200, message: ok } } ]
]],
    }
    finally(function() g:cleanup() end)
    local ok = 0
    for i = 1, 20 do
      local res = assert(http.request(g.port, { path = "/c/" .. i, version = i % 2 == 0 and "1.0" or "1.1",
        headers = { Connection = "close" } }))
      if res.status == 200 then ok = ok + 1 else assert.equal(429, res.status) end
    end
    assert.equal(5, ok)
  end)
end)
