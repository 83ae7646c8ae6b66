-- luacheck: std +busted
-- Failing upstreams: refused, a connect that hangs, reset or closed before
-- the head, a head that never ends (or never stops), an invalid response
-- (also malformed header names), reset/closed/stalled/invalid in the
-- middle of the body, an upstream that accepts and never answers, one that
-- never reads the request body, and a response larger than the client can
-- take.  Each gets the documented answer (502 "Bad gateway.", 504 "Gateway
-- timeout.") or, once the response has begun, a closed client connection;
-- normal clients are served meanwhile; and afterwards the worker's
-- descriptors are back to their baseline and its memory has not grown.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local http = require "spec.support.http"
local H = require "spec.07-hardening.helpers"

local now = H.now
local process = H.process

local TIMEOUT = 0.6          -- tollgate.upstream.timeout (s)
local CONNECT_TIMEOUT = 0.5  -- tollgate.upstream.connectTimeout (s)

-- name, request path (through the gateway), expected: 502 / 504 / "closed"
-- (the response began: the client connection is closed before its end),
-- concurrent requests per round, rounds
local CASES = {
  { "a refused connection", "/refused/x", 502, 20, 5 },
  { "a connect that hangs (accept queue full)", "/hang/x", 504, 5, 1 },
  { "a reset before the head", "/reset-before-head", 502, 20, 5 },
  { "a close before the head", "/close-before-head", 502, 20, 5 },
  { "a head that never ends", "/partial-head", 504, 5, 1 },
  { "a head without end", "/endless-head", 502, 5, 2 },
  { "an invalid response", "/invalid-response", 502, 20, 5 },
  { "a NUL in a response header", "/header/X-A/a%00b", 502, 20, 2 },
  { "a reset in the middle of the body", "/reset-mid-body", "closed", 10, 2 },
  { "a close in the middle of the body", "/close-mid-body", "closed", 10, 2 },
  { "an invalid chunk in the middle of the body", "/bad-chunked", "closed", 10, 2 },
  { "a stall in the middle of the body", "/chunked/3?delay=" .. (TIMEOUT * 3000), "closed", 5, 1 },
  { "an upstream that accepts and never answers", "/never-answer", 504, 5, 1 },
}

-- Malformed response header lines: the client must never receive them as
-- they are (RFC 9112 5.1: a proxy removes whitespace before the colon;
-- an invalid field name is an invalid response).  A 502 or the line
-- dropped or repaired are all fine.
local BAD_HEADERS = {
  { "a space before the colon", "/header/X-A%20/b" },
  { "a space inside the name", "/header/X%20A/b" },
  { "a tab before the colon", "/header/X-A%09/b" },
  { "a parenthesis in the name", "/header/X(A)/b" },
}

describe("failing upstreams", function()
  local up, g, worker, dead_port, hang

  setup(function()
    up = mock.start{ name = "up" }
    dead_port = process.free_port()
    hang = H.full_backlog_listener()
    g = gateway.start{
      config = H.config([[
apiEndpoints:
  refused: { host: '*', paths: '/refused/*' }
  hang: { host: '*', paths: '/hang/*' }
  all: { host: '*' }
serviceEndpoints:
  up: { url: 'http://127.0.0.1:${UP}' }
  dead: { url: 'http://127.0.0.1:${DEAD}' }
  hang: { url: 'http://127.0.0.1:${HANG}' }
policies: [proxy]
pipelines:
  refused: { apiEndpoints: [refused], policies: [ { proxy: [ { action: { serviceEndpoint: dead } } ] } ] }
  hang: { apiEndpoints: [hang], policies: [ { proxy: [ { action: { serviceEndpoint: hang } } ] } ] }
  all: { apiEndpoints: [all], policies: [ { proxy: [ { action: { serviceEndpoint: up } } ] } ] }
]], { upstream = { timeout = TIMEOUT * 1000, connectTimeout = CONNECT_TIMEOUT * 1000,
                   keepalive = 0 } }),
      vars = { UP = up.port, DEAD = dead_port, HANG = hang.port },
    }
    worker = H.worker(g)
    -- warm up every path once (Lua, buffers) before baselines are taken
    for _, case in ipairs(CASES) do
      local c = assert(g:connect{ timeout = 5 })
      c:request{ path = case[2] }
      c:read_response()
      c:close()
    end
    for _ = 1, 20 do H.served(g) end
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
    if hang then hang.close() end
  end)

  local function check_timing(expect, took)
    local limit = expect == 504 and (took >= math.min(TIMEOUT, CONNECT_TIMEOUT) * 0.9) or true
    assert.is_true(limit, ("answered after %.3fs, before the timeout"):format(took))
    assert.is_true(took < math.max(TIMEOUT, CONNECT_TIMEOUT) + 2,
                   ("answered after %.3fs"):format(took))
  end

  for _, case in ipairs(CASES) do
    local name, path, expect, n, rounds = case[1], case[2], case[3], case[4], case[5]
    it(("answers %s with %s, leaking nothing"):format(name, expect), function()
      local base = H.settled_fds(worker)
      local rss0 = H.rss_kb(worker)
      for _ = 1, rounds do
        local conns = {}
        local t0 = now()
        for i = 1, n do
          conns[i] = assert(g:connect{ timeout = 5 })
          assert(conns[i]:request{ path = path })
        end
        -- a normal client while these are in progress
        H.served(g)
        for _, c in ipairs(conns) do
          local res, err, partial = c:read_response()
          local took = now() - t0
          if expect == "closed" then
            assert.is_nil(res, "a complete response")
            assert.is_truthy(err == "closed" or err == "connection reset by peer",
                             "expected the connection closed, got " .. tostring(err))
            -- the head may or may not have gone out before the failure
            if partial then assert.equal(200, partial.status) end
          else
            assert.is_truthy(res, tostring(err))
            assert.equal(expect, res.status)
            assert.equal(expect == 502 and "Bad gateway." or "Gateway timeout.", res.body)
            check_timing(expect, took)
          end
          c:close()
        end
      end
      H.served(g)
      H.wait_fds(worker, base, 5)
      if not H.sanitized() then
        local grown = H.rss_kb(worker) - rss0
        assert.is_true(grown < 1024, ("worker RSS grew by %d KB"):format(grown))
      end
    end)
  end

  for _, case in ipairs(BAD_HEADERS) do
    it("never passes a response header with " .. case[1] .. " to the client", function()
      local conn = assert(g:connect())
      finally(function() conn:close() end)
      assert(conn:request{ path = case[2] })
      H.served(g)
      local res, err, partial = conn:read_response()
      local got = res or partial
      assert.is_truthy(got, tostring(err))
      -- our client refuses malformed header lines: a response it cannot
      -- parse is what the gateway passed on
      assert.is_truthy(res, "the client got a malformed header line: " .. tostring(err))
      if res.status == 200 then
        for _, h in ipairs(res.header_list) do
          assert.matches("^[!#$%%&'*+%-.^_`|~%w]+$", h[1])
        end
      else
        assert.equal(502, res.status)
      end
    end)
  end

  it("sends the response head as soon as the upstream's head is in, before any body", function()
    local conn = assert(g:connect{ timeout = 5 })
    finally(function() conn:close() end)
    local t0 = now()
    -- the head at once, then a chunk every 500 ms (under the upstream timeout)
    assert(conn:request{ path = "/chunked/3?delay=500" })
    local res = assert(conn:read_response{ head_only = true })
    local took = now() - t0
    assert.equal(200, res.status)
    assert.is_true(took < 0.4, ("the head reached the client after %.3fs"):format(took))
    assert(conn:read_body(res))
    assert.equal("chunk1\nchunk2\nchunk3\n", res.body)
  end)

  it("answers 504 when the upstream never reads a large request body", function()
    local base = H.settled_fds(worker)
    local conn = assert(g:connect{ timeout = 10 })
    finally(function() conn:close() end)
    local t0 = now()
    local n = 32 * 1024 * 1024
    -- the gateway stops reading this client while its buffer to the
    -- upstream is full; after the 504 it reads and drops the rest
    conn:request{ method = "POST", path = "/never-read", headers = { ["Content-Length"] = n },
                  body = http.source_bytes(n) }
    local res = assert(conn:read_response{ method = "POST" })
    local took = now() - t0
    assert.equal(504, res.status)
    assert.is_true(took >= TIMEOUT * 0.9, ("504 after %.3fs"):format(took))
    assert.is_true(conn:wait_closed(5))
    H.served(g)
    H.wait_fds(worker, base)
  end)

  it("streams a response larger than a slow client takes with bounded memory", function()
    local base = H.settled_fds(worker)
    local rss0 = assert(H.rss_kb(worker))
    local peak = rss0
    local size = 32 * 1024 * 1024
    local conn = assert(g:connect{ timeout = 10 })
    finally(function() conn:close() end)
    assert(conn:request{ path = "/bytes/" .. size })
    local res = assert(conn:read_response{ head_only = true })
    assert.equal(200, res.status)
    local next_check = 0
    -- 16 MB/s: far slower than the upstream sends
    local got, err = H.throttled_read(conn, size, 16 * 1024 * 1024, function(n)
      if n >= next_check then
        next_check = n + 2 * 1024 * 1024
        local r = H.rss_kb(worker)
        if r > peak then peak = r end
        H.served(g)
      end
    end, 30)
    assert.equal(size, got, tostring(err))
    conn:close()
    H.wait_fds(worker, base)
    if not H.sanitized() then
      assert.is_true(peak - rss0 < 2048, ("worker RSS grew by %d KB"):format(peak - rss0))
    end
  end)
end)
