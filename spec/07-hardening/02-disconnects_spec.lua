-- luacheck: std +busted
-- Clients that leave: in the middle of a request body, while the upstream
-- works, in the middle of a response (each with a FIN and with a reset),
-- and 10,000 connections opened and dropped in batches.  The gateway stays
-- up (same worker), serves normal clients meanwhile, logs the requests as
-- aborted, never hands the upstream a request that was cut, and its worker's
-- descriptors return to their baseline.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local H = require "spec.07-hardening.helpers"

local now = H.now
local process = H.process

local MB = 1024 * 1024

-- name, what the client sends, how much of the response it reads before
-- leaving (nil: none), rst (leave with a reset), the path in the access log
local LEAVERS = {
  { "in the middle of a Content-Length body", "POST /upload?leave=cl HTTP/1.1\r\nHost: x\r\n"
      .. "Content-Length: 10000000\r\n\r\n" .. ("b"):rep(300000), nil, false, "/upload?leave=cl" },
  { "in the middle of a Content-Length body (reset)", "POST /upload?leave=clr HTTP/1.1\r\nHost: x\r\n"
      .. "Content-Length: 10000000\r\n\r\n" .. ("b"):rep(300000), nil, true, "/upload?leave=clr" },
  { "in the middle of a chunk", "POST /upload?leave=ch HTTP/1.1\r\nHost: x\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n100000\r\n" .. ("b"):rep(5000), nil, false,
    "/upload?leave=ch" },
  { "in the middle of a chunked body (reset)", "POST /upload?leave=chr HTTP/1.1\r\nHost: x\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n" .. ("400\r\n" .. ("b"):rep(1024) .. "\r\n"):rep(50),
    nil, true, "/upload?leave=chr" },
  { "while the upstream works", "GET /slow/400?leave=w HTTP/1.1\r\nHost: x\r\n\r\n", nil, false,
    "/slow/400?leave=w" },
  { "while the upstream works (reset)", "GET /slow/400?leave=wr HTTP/1.1\r\nHost: x\r\n\r\n", nil,
    true, "/slow/400?leave=wr" },
  { "in the middle of a response", "GET /bytes/67108864?leave=r HTTP/1.1\r\nHost: x\r\n\r\n",
    MB, false, "/bytes/67108864?leave=r" },
  { "in the middle of a response (reset)", "GET /bytes/67108864?leave=rr HTTP/1.1\r\nHost: x\r\n\r\n",
    MB, true, "/bytes/67108864?leave=rr" },
  { "in the middle of a chunked response", "GET /chunked/100000?delay=1&leave=c HTTP/1.1\r\n"
      .. "Host: x\r\n\r\n", 1000, false, "/chunked/100000?delay=1&leave=c" },
}

describe("clients that leave", function()
  local up, g, worker

  setup(function()
    up = mock.start{ name = "leave" }
    g = H.gateway(up, { upstream = { keepalive = 0 } })
    worker = H.worker(g)
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  local function log_entry(path)
    return process.wait_for(function()
      for _, e in ipairs(H.access_log(g)) do
        if e.path == path then return e end
      end
    end, 5, "the access log line of " .. path)
  end

  for _, case in ipairs(LEAVERS) do
    local name, raw, read, rst, logged = case[1], case[2], case[3], case[4], case[5]
    it("copes with a client leaving " .. name .. ", serving others meanwhile", function()
      local base = H.settled_fds(worker)
      local before = assert(up:count())
      local conn = assert(g:connect{ timeout = 5 })
      finally(function() conn:close() end)
      assert(conn:send(raw))
      -- the exchange is under way: a client and an upstream connection
      process.wait_for(function() return H.fd_count(worker) == base + 2 end, 5,
                       "the upstream exchange to start")
      if read then
        local res = assert(conn:read_response{ head_only = true })
        assert.equal(200, res.status)
        assert(conn:read_exact(read))
      end
      H.served(g)
      if rst then conn.sock:setoption("linger", { on = true, timeout = 0 }) end
      conn:close()
      H.served(g)

      local e = log_entry(logged)
      assert.is_true(e.aborted, "not logged as aborted")
      H.wait_fds(worker, base)
      H.served(g)
      -- a request cut by its client never reaches the upstream complete
      local after = assert(up:count())
      local normal = 3
      if raw:sub(1, 4) == "POST" then
        assert.equal(before.completed + normal + 1, after.completed,
                     "the upstream got the cut request whole")
      end
    end)
  end

  it("keeps serving through 10,000 connections opened and dropped in batches", function()
    local base = H.settled_fds(worker)
    local master = g.pid
    local BATCH, TOTAL = 500, 10000
    -- what each connection does before it goes, by index modulo 6
    local PARTIAL = "GET /echo/partial HTTP/1.1\r\nHost: x\r\nX-A:"
    local FULL = "GET /echo/dropped HTTP/1.1\r\nHost: x\r\n\r\n"
    local POST = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                 .. ("b"):rep(4000)
    local t0 = now()
    local opened, failed = 0, 0
    local served = 0
    while opened < TOTAL do
      local fds = {}
      for i = 1, BATCH do
        local fd = H.raw_connect(g.port)
        if fd then fds[#fds + 1] = { fd, (opened + i) % 6 } else failed = failed + 1 end
      end
      opened = opened + BATCH
      for _, f in ipairs(fds) do
        local fd, kind = f[1], f[2]
        if kind >= 2 and H.raw_wait_connected(fd, 1) then
          H.raw_send(fd, kind == 2 and PARTIAL or kind == 5 and POST or FULL)
        end
      end
      -- a normal client while the batch is open
      H.served(g)
      served = served + 1
      for _, f in ipairs(fds) do
        -- FIN, reset, and after sending: partial head, request, request + reset, body
        H.raw_close(f[1], f[2] == 1 or f[2] == 4)
      end
    end
    local took = now() - t0
    assert.equal(0, failed, failed .. " connects failed")
    assert.is_true(took < 60, ("10,000 connections took %.1fs"):format(took))
    -- the same processes: nothing crashed and restarted
    assert.same({ worker }, process.children(master))
    assert.is_true(g:alive())
    H.served(g)
    H.wait_fds(worker, base, 15)
    H.served(g)
    assert.is_true(served >= TOTAL / BATCH)
  end)
end)
