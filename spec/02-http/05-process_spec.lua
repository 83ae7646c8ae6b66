-- luacheck: std +busted
-- The gateway as a process: -t config check (exit code, file:line in the
-- message), -w workers, graceful SIGTERM with a request in flight, worker
-- restart after SIGKILL, and the JSON access log.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local process = require "spec.support.process"
local h = require "spec.02-http.helpers"
local cjson = require "cjson"

local VALID = [[
http:
  hostname: 127.0.0.1
  port: 0
apiEndpoints:
  api:
    host: '*'
    paths: '/a/*'
serviceEndpoints:
  backend:
    url: http://127.0.0.1:9
policies: [proxy, terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate:
          - action:
              statusCode: 201
]]

-- name, line the message must name, a fragment of the message, config.
local BAD_CONFIGS = {
  { "an undeclared policy in a pipeline", 11, "nosuch", [[
http:
  port: 0
apiEndpoints:
  api:
    host: '*'
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - nosuch:
          - action: {}
]] },
  { "an unknown policy in the policies list", 6, "nosuch", [[
http:
  port: 0
apiEndpoints:
  api:
    host: '*'
policies: [terminate, nosuch]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate:
          - action: {}
]] },
  { "bad YAML indentation", 6, "", [[
http:
  port: 0
apiEndpoints:
  api:
    host: '*'
     paths: '/a'
policies: [terminate]
]] },
  { "a pipeline naming a missing endpoint", 9, "ghost", [[
http:
  port: 0
apiEndpoints:
  api:
    host: '*'
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api, ghost]
    policies:
      - terminate:
          - action: {}
]] },
  { "an out-of-range action option", 13, "statusCode", [[
http:
  port: 0
apiEndpoints:
  api:
    host: '*'
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate:
          - action:
              statusCode: 999
]] },
  { "an action option of the wrong type", 15, "changeOrigin", [[
http:
  port: 0
apiEndpoints:
  api:
    host: '*'
serviceEndpoints:
  backend:
    url: http://127.0.0.1:9
policies: [proxy]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - proxy:
          - action: { serviceEndpoint: backend, changeOrigin: maybe }
]] },
  { "a proxy naming a missing service endpoint", 15, "nowhere", [[
http:
  port: 0
apiEndpoints:
  api:
    host: '*'
serviceEndpoints:
  backend:
    url: http://127.0.0.1:9
policies: [proxy]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - proxy:
          - action: { serviceEndpoint: nowhere }
]] },
  { "a bad tollgate setting", 5, "headTimeout", [[
http:
  port: 0
tollgate:
  client:
    headTimeout: soon
apiEndpoints:
  api:
    host: '*'
]] },
}

describe("gateway -t", function()
  it("accepts a valid config with exit 0", function()
    local code, out = gateway.check(VALID)
    assert.equal(0, code, out)
    assert.matches("gateway.config.yml is valid", out, 1, true)
  end)

  for _, case in ipairs(BAD_CONFIGS) do
    local name, line, fragment, text = case[1], case[2], case[3], case[4]
    it("rejects " .. name .. " with exit 1, naming the file and line " .. line, function()
      local code, out = gateway.check(text)
      assert.equal(1, code, out)
      assert.matches("gateway.config.yml:" .. line .. ":", out, 1, true)
      assert.matches(fragment, out, 1, true)
      assert.is_nil(out:find("is valid", 1, true), out)
    end)
  end
end)

describe("gateway process", function()
  local up

  setup(function()
    up = mock.start{ name = "a" }
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  -- Returns a function that waits until the mock has read `n` requests
  -- besides the /count requests this makes (each one counts itself).
  local function wait_upstream_requests(n)
    local base = up:count().requests
    local polls = 0
    return function()
      process.wait_for(function()
        local c = up:count()
        polls = polls + 1
        return c and c.requests - base - polls >= n
      end, 5, n .. " request(s) at the upstream")
    end
  end

  it("-w 2 starts two workers (two children of the master)", function()
    local g = h.proxy_gateway(up, { workers = 2 })
    finally(function() g:cleanup() end)
    local workers = h.workers(g, 2)
    assert.equal(2, #workers)
    assert.are_not.equal(workers[1], workers[2])
    for _ = 1, 4 do
      assert.equal(200, assert(g:get("/echo")).status)
    end
    assert.equal(0, g:stop())
  end)

  it("finishes an in-flight request on SIGTERM and exits 0", function()
    local g = h.proxy_gateway(up)
    finally(function() g:cleanup() end)
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    local arrived = wait_upstream_requests(1)
    assert(conn:request{ path = "/slow/500" })
    arrived()
    assert(g:signal("TERM"))
    local res = assert(conn:read_response{ timeout = 5 })
    assert.equal(200, res.status)
    assert.equal("slow", res.body)
    local code, how = g:wait_exit(5)
    assert.equal("exited", how)
    assert.equal(0, code)
  end)

  it("stops accepting connections at once on SIGTERM while draining", function()
    local g = h.proxy_gateway(up)
    finally(function() g:cleanup() end)
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    local arrived = wait_upstream_requests(1)
    assert(conn:request{ path = "/slow/1000" })
    arrived()
    assert(g:signal("TERM"))
    -- new connections refused while the gateway still runs the request
    process.wait_for(function() return not process.port_open(g.port) end, 0.8,
                     "the gateway to stop accepting connections")
    assert.is_true(g:alive())
    assert.equal(200, assert(conn:read_response{ timeout = 5 }).status)
  end)

  it("restarts a worker killed with SIGKILL and keeps serving", function()
    local g = h.proxy_gateway(up)
    finally(function() g:cleanup() end)
    local old = h.workers(g, 1)[1]
    assert.equal(200, assert(g:get("/echo")).status)
    assert(process.kill(old, "KILL"))
    local new = process.wait_for(function()
      local list = process.children(g.pid)
      if #list == 1 and list[1] ~= old then return list[1] end
    end, 5, "a new worker")
    assert.are_not.equal(old, new)
    g:wait_log(tostring(old) .. ".*restart")
    process.wait_for(function()
      local res = g:get("/echo")
      return res and res.status == 200
    end, 5, "requests to be served again")
    assert.is_true(g:alive())
    assert.equal(0, g:stop())
  end)

  it("writes one JSON access log line per request", function()
    local dead = process.free_port()
    local g = gateway.start{
      config = h.head() .. ([[
apiEndpoints:
  api: { host: '*', paths: '/api/*' }
  dead: { host: '*', paths: '/dead/*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${UP}' }
  dead: { url: 'http://127.0.0.1:${DEAD}' }
policies: [proxy]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - proxy: [ { action: { serviceEndpoint: backend, stripPath: true } } ]
  broken:
    apiEndpoints: [dead]
    policies:
      - proxy: [ { action: { serviceEndpoint: dead } } ]
]]),
      vars = { UP = up.port, DEAD = dead },
    }
    finally(function() g:cleanup() end)

    local ok = assert(g:request{ method = "POST", path = "/api/echo?x=1", body = "hello",
                                 host = "logged.example:81" })
    assert.equal(200, ok.status)
    local id = cjson.decode(ok.body).headers["eg-request-id"]
    assert.equal(404, assert(g:get("/nowhere")).status)
    assert.equal(502, assert(g:get("/dead/x")).status)
    -- a client that leaves in the middle of a large response
    local conn = assert(g:connect())
    assert(conn:request{ path = "/api/bytes/50000000" })
    assert.equal(200, assert(conn:read_response{ head_only = true }).status)
    conn:close()

    local log = h.wait_access_log(g, 4)
    assert.equal(4, #log)
    local by_path = {}
    for _, e in ipairs(log) do by_path[e.path] = e end

    local e = assert(by_path["/api/echo?x=1"], "no line for /api/echo?x=1")
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", e.time)
    assert.equal(id, e.id)
    assert.equal("127.0.0.1", e.client)
    assert.equal("POST", e.method)
    assert.equal("logged.example:81", e.host)
    assert.equal(200, e.status)
    assert.is_true(e.bytes >= #ok.body, "bytes " .. tostring(e.bytes))
    assert.is_number(e.upstream_ms)
    assert.is_number(e.total_ms)
    assert.is_true(e.total_ms >= e.upstream_ms)
    assert.equal("main", e.pipeline)
    assert.is_nil(e.error)
    assert.is_nil(e.aborted)

    local nf = assert(by_path["/nowhere"], "no line for /nowhere")
    assert.equal(404, nf.status)
    assert.equal("GET", nf.method)
    assert.is_string(nf.id)
    assert.are_not.equal(id, nf.id)
    assert.is_nil(nf.pipeline)

    local bad = assert(by_path["/dead/x"], "no line for /dead/x")
    assert.equal(502, bad.status)
    assert.equal("broken", bad.pipeline)
    assert.is_string(bad.error)

    local gone = assert(by_path["/api/bytes/50000000"], "no line for /api/bytes/50000000")
    assert.is_true(gone.aborted)
    assert.is_true(gone.bytes < 50000000)
  end)

  it("notices a client that leaves while the upstream is still working", function()
    local g = h.proxy_gateway(up)
    finally(function() g:cleanup() end)
    local conn = assert(g:connect())
    local arrived = wait_upstream_requests(1)
    assert(conn:request{ path = "/slow/300" })
    arrived()
    conn:close()
    local log = h.wait_access_log(g, 1)
    assert.equal("/slow/300", log[1].path)
    -- the client is gone: the request is logged as aborted, not as answered
    assert.is_true(log[1].aborted, cjson.encode(log[1]))
    assert.equal(499, log[1].status)
  end)
end)
