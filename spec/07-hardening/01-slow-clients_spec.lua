-- luacheck: std +busted
-- Slow clients: slowloris (a head a byte at a time, slower than headTimeout
-- allows: 408 and close, the head timer bounding the whole head whatever
-- the pace), connections that never send a byte, a request body that
-- stalls (bodyTimeout: 408), and readers that never drain a large
-- response (the worker's memory stays bounded; sendTimeout closes them).
-- Normal clients are served while every attack is in progress.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local socket = require "socket"
local H = require "spec.07-hardening.helpers"

local now = H.now
local process = H.process

local HEAD_TIMEOUT = 0.8   -- seconds (the gateway's headTimeout)
local BODY_TIMEOUT = 0.5
local SEND_TIMEOUT = 1.0

-- The attack's clients, each as { name, head, pace (s between bytes) }:
-- every one would need longer than HEAD_TIMEOUT to send its head.
local SLOWLORIS = {
  { "a request line a byte at a time", "GET /echo/slow HTTP/1.1\r\n", 0.05 },
  { "headers a byte at a time", "GET /echo/slow HTTP/1.1\r\nHost: x\r\nX-Pad: "
      .. ("p"):rep(40) .. "\r\n", 0.02 },
  { "headers faster than a byte per headTimeout, never ending",
    "GET /echo/slow HTTP/1.1\r\nHost: x\r\n" .. ("X-A: b\r\n"):rep(40), 0.01 },
  { "a complete head but for the final CRLF", "GET /echo/slow HTTP/1.1\r\nHost: x\r\n", 0.001 },
}

describe("slow clients", function()
  local up, g, worker

  setup(function()
    up = mock.start{ name = "slow" }
    g = H.gateway(up, {
      client = { headTimeout = HEAD_TIMEOUT * 1000, bodyTimeout = BODY_TIMEOUT * 1000,
                 sendTimeout = SEND_TIMEOUT * 1000, keepaliveTimeout = 10000 },
      upstream = { keepalive = 0 },
    })
    worker = H.worker(g)
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  for _, case in ipairs(SLOWLORIS) do
    local name, head, pace = case[1], case[2], case[3]
    it("answers slowloris (" .. name .. ") with 408 and a close, serving others meanwhile",
       function()
      local base = H.settled_fds(worker)
      local conns = {}
      for i = 1, 10 do
        local c = assert(g:connect{ timeout = 5 })
        conns[i] = { conn = c, sent = 0 }
      end
      finally(function() for _, s in ipairs(conns) do s.conn:close() end end)

      local served, open = 0, #conns
      local deadline = now() + HEAD_TIMEOUT + 4
      while open > 0 do
        assert(now() < deadline, open .. " slowloris connection(s) still open after "
                                 .. (HEAD_TIMEOUT + 4) .. "s")
        for _, s in ipairs(conns) do
          if not s.done then
            if s.sent < #head then
              s.sent = s.sent + 1
              s.first = s.first or now()
              s.conn:send(head:sub(s.sent, s.sent)) -- may fail once the gateway closed
            end
            if s.conn:closed() then
              s.done, s.took = true, now() - s.first
              open = open - 1
            end
          end
        end
        if open > 0 then
          -- a normal client while the attack goes on
          assert.is_true(H.served(g).took < 2)
          served = served + 1
          -- the pace of the attack; returns early when the gateway answers one
          local socks = {}
          for _, s in ipairs(conns) do
            if not s.done then socks[#socks + 1] = s.conn.sock end
          end
          socket.select(socks, nil, pace)
        end
      end
      for _, s in ipairs(conns) do
        local res = assert(s.conn:read_response{ method = "GET", timeout = 1 })
        assert.equal(408, res.status)
        assert.equal("close", res.headers.connection)
        -- the head timer runs from the first byte, whatever comes after it
        assert.is_true(s.took >= HEAD_TIMEOUT * 0.9 and s.took < HEAD_TIMEOUT + 1.5,
          ("408 after %.3fs, headTimeout is %gs"):format(s.took, HEAD_TIMEOUT))
      end
      assert.is_true(served >= 3, "only " .. served .. " normal requests during the attack")
      H.wait_fds(worker, base)
    end)
  end

  it("closes connections that never send a byte after headTimeout, serving others meanwhile",
     function()
    local base = H.settled_fds(worker)
    local conns = {}
    local t0 = now()
    for i = 1, 50 do conns[i] = assert(g:connect{ timeout = 5 }) end
    finally(function() for _, c in ipairs(conns) do c:close() end end)
    process.wait_for(function() return H.fd_count(worker) == base + 50 end, 5,
                     "the worker to accept the 50 connections")
    local served = 0
    process.wait_for(function()
      H.served(g)
      served = served + 1
      for _, c in ipairs(conns) do
        if not c:closed() then return false end
      end
      return true
    end, HEAD_TIMEOUT + 4, "the silent connections to be closed")
    local took = now() - t0
    assert.is_true(took >= HEAD_TIMEOUT * 0.9, ("closed after %.3fs"):format(took))
    for _, c in ipairs(conns) do
      -- closed without a response: there was no request to answer
      assert.equal("", c.buf)
    end
    assert.is_true(served >= 3, "only " .. served .. " normal requests during the attack")
    H.wait_fds(worker, base)
  end)

  it("bounds a slow second head on a keep-alive connection by headTimeout", function()
    local conn = assert(g:connect{ timeout = 5 })
    finally(function() conn:close() end)
    assert(conn:request{ path = "/echo/first" })
    assert.equal(200, assert(conn:read_response()).status)
    local head = "GET /echo/second HTTP/1.1\r\nHost: x\r\nX-Pad: " .. ("p"):rep(200) .. "\r\n"
    local t0 = now()
    local i = 0
    local res
    while not res do
      assert(now() - t0 < HEAD_TIMEOUT + 3, "no 408 for a slow second head")
      if i < #head then
        i = i + 1
        conn:send(head:sub(i, i))
      end
      H.served(g)
      socket.select({ conn.sock }, nil, 0.02)
      if conn:closed() then res = assert(conn:read_response{ method = "GET", timeout = 1 }) end
    end
    local took = now() - t0
    assert.equal(408, res.status)
    assert.is_true(i < #head)
    assert.is_true(took >= HEAD_TIMEOUT * 0.9 and took < HEAD_TIMEOUT + 1.5,
                   ("408 after %.3fs"):format(took))
  end)

  it("answers a request body that stalls with 408 after bodyTimeout and drops the upstream exchange",
     function()
    local base = H.settled_fds(worker)
    local before = assert(up:count())
    local conn = assert(g:connect{ timeout = 5 })
    finally(function() conn:close() end)
    assert(conn:send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                     .. ("b"):rep(1000)))
    local t0 = now()
    -- the gateway opened the upstream exchange: a client and an upstream connection
    process.wait_for(function() return H.fd_count(worker) == base + 2 end, 3,
                     "the upstream exchange to start")
    H.served(g)
    local res = assert(conn:read_response{ method = "POST", timeout = BODY_TIMEOUT + 3 })
    local took = now() - t0
    assert.equal(408, res.status)
    assert.is_true(took >= BODY_TIMEOUT * 0.9, ("408 after %.3fs"):format(took))
    assert.is_true(conn:wait_closed(3))
    H.wait_fds(worker, base)
    -- the upstream never saw a complete request
    local after = assert(up:count())
    assert.equal(after.requests - before.requests - 1, after.completed - before.completed,
                 "the cut request reached the upstream complete")
  end)

  it("keeps memory bounded for readers that never drain a large response, and closes them after sendTimeout",
     function()
    local N = 8
    local SIZE = 256 * 1024 * 1024
    local base = H.settled_fds(worker)
    H.served(g)
    local rss0 = assert(H.rss_kb(worker))
    local peak = rss0
    local function sample()
      local r = H.rss_kb(worker)
      if r and r > peak then peak = r end
    end

    local readers = {}
    for i = 1, N do
      local c = assert(g:connect{ timeout = 10 })
      readers[i] = c
      assert(c:request{ path = "/bytes/" .. SIZE .. "?reader=" .. i })
      local res = assert(c:read_response{ head_only = true })
      assert.equal(200, res.status)
    end
    finally(function() for _, c in ipairs(readers) do c:close() end end)
    local t_stall = now()

    -- served while every reader stalls, until the gateway gives up on them
    -- (each holds a client and an upstream connection until then)
    local served = 0
    process.wait_for(function()
      sample()
      H.served(g)
      served = served + 1
      return H.fd_count(worker) == base
    end, SEND_TIMEOUT + 10, "the gateway to close the stalled readers")
    local took = now() - t_stall
    sample()
    assert.is_true(took >= SEND_TIMEOUT * 0.9, ("closed after %.3fs"):format(took))
    assert.is_true(served >= 3, "only " .. served .. " normal requests during the attack")

    -- what the readers get now: what was in flight, then the end
    for i, c in ipairs(readers) do
      local got = 0
      while true do
        local data, err = c:receive_some(65536, { timeout = 5 })
        if not data then
          assert.is_truthy(err == "closed" or err == "connection reset by peer",
                           "reader " .. i .. ": " .. tostring(err))
          break
        end
        got = got + #data
      end
      assert.is_true(got < SIZE / 4, "reader " .. i .. " got " .. got .. " bytes")
    end

    local log = H.wait_access_log(g, 1)
    local aborted = 0
    for _, e in ipairs(log) do
      if (e.path or ""):find("?reader=", 1, true) and e.aborted then aborted = aborted + 1 end
    end
    assert.equal(N, aborted)

    if not H.sanitized() then
      local growth = peak - rss0
      -- per reader at most its buffers (client 256 KB, upstream 16 KB, ...)
      assert.is_true(growth < N * 512 + 2048,
        ("worker RSS grew by %d KB with %d stalled readers (from %d KB)"):format(growth, N, rss0))
    end
  end)
end)
