-- luacheck: std +busted
-- Limits: tollgate.client.maxConnections per worker (the connection over
-- the limit waits in the listen queue, unanswered, until one closes, and is
-- served then), running out of descriptors (EMFILE: the worker backs off
-- instead of spinning, keeps serving the connections it has, and recovers
-- when connections close), idle pooled upstream connections closed after
-- upstream.keepaliveTimeout, and every wait's timeout documented with a
-- default.  The waits themselves are exercised where their attacks are:
-- head, body, send and first-request timeouts in 01-slow-clients, upstream
-- connect, read and write in 05-failing-upstreams, idle keep-alive in
-- spec/02-http/02-limits, the TLS handshake in spec/05-tls.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local settings = require "tollgate.settings"
local H = require "spec.07-hardening.helpers"

local now = H.now
local process = H.process

-- Is a complete response to a request sent on conn waiting (non-blocking)?
local function answered(conn)
  conn:closed() -- pulls in what arrived
  return conn.buf:find("\r\n\r\n", 1, true) ~= nil
end

describe("maxConnections", function()
  local up

  setup(function()
    up = mock.start{ name = "a" }
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  it("leaves the connection over the limit waiting until one closes, then serves it", function()
    local MAX = 4
    local g = H.gateway(up, { client = { maxConnections = MAX }, upstream = { keepalive = 0 } })
    finally(function() g:cleanup() end)
    local worker = H.worker(g)
    local base = H.settled_fds(worker)

    local conns = {}
    for i = 1, MAX do
      conns[i] = assert(g:connect())
      assert(conns[i]:request{ path = "/echo/held" .. i })
      assert.equal(200, assert(conns[i]:read_response()).status)
    end
    finally(function() for _, c in ipairs(conns) do c:close() end end)
    g:wait_log("connections open %(maxConnections%); pausing accepts")

    -- the next one connects (the kernel's listen queue) but is not accepted
    local extra = assert(g:connect{ timeout = 5 })
    finally(function() extra:close() end)
    assert(extra:request{ path = "/echo/extra" })
    -- meanwhile the connections within the limit are served
    for round = 1, 3 do
      for i, c in ipairs(conns) do
        assert(c:request{ path = "/echo/again" .. round .. "-" .. i })
        assert.equal(200, assert(c:read_response()).status)
      end
    end
    assert.equal(base + MAX, H.fd_count(worker))
    assert.is_false(answered(extra))
    local res, err = extra:read_response{ timeout = 0.3 }
    assert.is_nil(res)
    assert.equal("timeout", err)

    -- one closes: the waiting connection is accepted and served
    conns[1]:close()
    res = assert(extra:read_response{ timeout = 5 })
    assert.equal(200, res.status)
    assert.equal("/echo/extra", require("cjson").decode(res.body).path)
    extra:close()
    for _, c in ipairs(conns) do c:close() end
    H.wait_fds(worker, base)
    H.served(g)
  end)
end)

describe("running out of descriptors (EMFILE)", function()
  local up

  setup(function()
    up = mock.start{ name = "a" }
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  it("backs off instead of spinning, keeps serving, and recovers", function()
    local LIMIT = 64
    local g = H.start_wrapped({ "prlimit", "--nofile=" .. LIMIT .. ":" .. LIMIT, "--" }, {
      config = H.config([[
apiEndpoints:
  term: { host: '*', paths: '/term' }
  all: { host: '*' }
serviceEndpoints:
  up: { url: 'http://127.0.0.1:${UP}' }
policies: [proxy, terminate]
pipelines:
  term:
    apiEndpoints: [term]
    policies: [ { terminate: [ { action: { statusCode: 200, message: ok } } ] } ]
  all: { apiEndpoints: [all], policies: [ { proxy: [ { action: { serviceEndpoint: up } } ] } ] }
]], { upstream = { keepalive = 0 } }),
      vars = { UP = up.port },
    })
    finally(function() g:cleanup() end)
    local worker = H.worker(g)
    local limits = process.read_file("/proc/" .. worker .. "/limits")
    assert.matches("Max open files%s+" .. LIMIT .. "%s+" .. LIMIT, limits)
    local base = H.settled_fds(worker)
    H.served(g)

    -- more connections than the worker has descriptors for, each with a
    -- request that the gateway answers itself
    local N = LIMIT + 20
    local conns = {}
    finally(function() for _, c in ipairs(conns) do c:close() end end)
    for i = 1, N do
      conns[i] = assert(g:connect{ timeout = 5 })
      assert(conns[i]:send("GET /term HTTP/1.1\r\nHost: x\r\n\r\n"))
    end
    g:wait_log("accept: Too many open files; pausing accepts")
    local capacity = LIMIT - base
    local served = {}
    process.wait_for(function()
      local n = 0
      for i, c in ipairs(conns) do
        if answered(c) then served[i] = true; n = n + 1 end
      end
      return n == capacity
    end, 5, capacity .. " connections to be accepted and answered")
    assert.equal(LIMIT, H.fd_count(worker))

    -- saturated: a second of wall time while the worker retries accepting
    -- (every 100 ms); the accepted connections are served meanwhile
    local ticks0 = assert(H.cpu_ticks(worker))
    local t0 = now()
    process.wait_for(function()
      for i, c in ipairs(conns) do
        if served[i] then
          c.buf = ""
          assert(c:send("GET /term HTTP/1.1\r\nHost: x\r\n\r\n"))
          local res = assert(c:read_response())
          assert.equal(200, res.status)
          assert.equal("ok", res.body)
        end
      end
      return now() - t0 >= 1
    end, 10, "a second of saturation")
    local ticks = H.cpu_ticks(worker) - ticks0
    local elapsed = now() - t0
    if os.getenv("TOLLGATE_SPEC_VERBOSE") then
      io.stderr:write(("EMFILE: %d ticks in %.2fs\n"):format(ticks, elapsed))
    end
    -- 100 ticks a second would be a worker spinning on accept()
    assert.is_true(ticks < 40 * elapsed,
      ("the worker used %d CPU ticks in %.2fs while out of descriptors"):format(ticks, elapsed))
    for i, c in ipairs(conns) do
      if not served[i] then assert.is_false(answered(c), "connection " .. i .. " was answered") end
    end
    assert.is_true(g:alive())

    -- connections close: the waiting ones are accepted and answered
    for i, c in ipairs(conns) do
      if served[i] then c:close() end
    end
    for i, c in ipairs(conns) do
      if not served[i] then
        local res = assert(c:read_response{ timeout = 5 })
        assert.equal(200, res.status)
        c:close()
      end
    end
    H.wait_fds(worker, base)
    -- and the proxy has descriptors for upstream connections again
    H.served(g)
    assert.same({ worker }, process.children(g.pid))
  end)
end)

describe("idle pooled upstream connections", function()
  it("are closed after upstream.keepaliveTimeout", function()
    local up = mock.start{ name = "a" }
    finally(function() up:stop() end)
    local g = H.gateway(up, { upstream = { keepaliveTimeout = 300 } })
    finally(function() g:cleanup() end)
    local worker = H.worker(g)
    local base = H.settled_fds(worker)
    local res = assert(g:get("/echo/pooled"))
    assert.equal(200, res.status)
    -- the upstream connection stays in the pool a while, then goes
    local t0 = now()
    process.wait_for(function() return H.fd_count(worker) == base + 1 end, 2,
                     "the pooled connection")
    H.wait_fds(worker, base, 3)
    local took = now() - t0
    assert.is_true(took >= 0.2, ("closed after %.3fs, keepaliveTimeout is 0.3s"):format(took))
    assert.equal(1, (assert(up:count()).connections) - 1)
  end)
end)

-- Every wait's setting: documented in README.md's `tollgate:` block with
-- the default the code applies, and a real timeout (not 0) by default.
-- section, key, what waits
local TIMEOUTS = {
  { nil, "shutdownTimeout", "requests in flight at a graceful stop" },
  { "client", "headTimeout", "a request head (and a TLS handshake)" },
  { "client", "bodyTimeout", "a request body, between reads" },
  { "client", "keepaliveTimeout", "an idle keep-alive connection" },
  { "client", "sendTimeout", "a client reading a response" },
  { "client", "tunnelTimeout", "a silent WebSocket" },
  { "upstream", "connectTimeout", "connecting to an upstream (and its TLS handshake)" },
  { "upstream", "timeout", "an upstream reading or answering" },
  { "upstream", "keepaliveTimeout", "an idle pooled upstream connection" },
}

local SETTING_OF = {
  shutdownTimeout = "shutdown_timeout", headTimeout = "head_timeout",
  bodyTimeout = "body_timeout", sendTimeout = "send_timeout", tunnelTimeout = "tunnel_timeout",
  connectTimeout = "upstream_connect_timeout", timeout = "upstream_timeout",
}

describe("timeouts", function()
  local readme = process.read_file(process.repo_root() .. "/README.md")
  local block = readme:match("\ntollgate:\n(.-)\n```")
  local defaults = assert(settings.parse({}))

  for _, t in ipairs(TIMEOUTS) do
    local section, key, what = t[1], t[2], t[3]
    local full = (section and (section .. ".") or "") .. key
    it(("bounds %s (tollgate.%s), documented with its default"):format(what, full), function()
      assert.is_string(block, "no tollgate: block in README.md")
      local text = block
      if section then
        text = block:match("\n  " .. section .. ":\n(.-)\n  %S") or block:match("\n  " .. section
               .. ":\n(.*)$")
        assert.is_string(text, "no " .. section .. ": in README.md's tollgate block")
      end
      local documented = tonumber(text:match("\n%s+" .. key .. ": (%d+)")
                                  or text:match("^%s+" .. key .. ": (%d+)"))
      assert.is_number(documented, "tollgate." .. full .. " is not in README.md")
      local field = SETTING_OF[key]
      if key == "keepaliveTimeout" then
        field = section == "client" and "keepalive_timeout" or "upstream_idle_timeout"
      end
      local applied = defaults[field]
      assert.is_true(applied > 0, "tollgate." .. full .. " has no timeout by default")
      assert.equal(applied * 1000, documented)
    end)
  end
end)
