-- luacheck: std +busted
-- Client-side limits and request validation: 431, 413, 408, idle keep-alive
-- timeout, malformed/ambiguous requests (400 + close) without disturbing
-- other connections, and without reaching the upstream.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local socket = require "socket"
local h = require "spec.02-http.helpers"
local cjson = require "cjson"

local now = socket.gettime

-- Requests the gateway must reject.  expect: 400, or "400/close" (a 400
-- response or the connection closed without a response are both fine, for
-- errors found after the head was accepted).  smuggle: the head itself is
-- invalid, so nothing may reach the upstream.
local BAD_REQUESTS = {
  { name = "garbage request line", expect = 400, smuggle = true,
    raw = "GARBAGE\r\n\r\n" },
  { name = "Content-Length and Transfer-Encoding", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" },
  { name = "Transfer-Encoding and Content-Length", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          .. "Content-Length: 5\r\n\r\n0\r\n\r\n" },
  { name = "two different Content-Length headers", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" },
  { name = "a Content-Length list with different values", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!" },
  { name = "Transfer-Encoding whose last coding is not chunked", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc" },
  { name = "a negative Content-Length", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" },
  { name = "a non-numeric Content-Length", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello" },
  { name = "whitespace between a header name and the colon", expect = 400, smuggle = true,
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello" },
  { name = "a space in a header name", expect = 400, smuggle = true,
    raw = "GET /echo HTTP/1.1\r\nHost: x\r\nFoo Bar: x\r\n\r\n" },
  { name = "two Host headers", expect = 400, smuggle = true,
    raw = "GET /echo HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n" },
  { name = "HTTP/1.1 without Host", expect = 400, smuggle = true,
    raw = "GET /echo HTTP/1.1\r\nUser-Agent: t\r\n\r\n" },
  { name = "a header line ending with a bare LF", expect = 400, smuggle = true,
    raw = "GET /echo HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n" },
  { name = "a request line ending with a bare CR and another byte", expect = 400, smuggle = true,
    raw = "GET /echo HTTP/1.1\rXHost: x\r\n\r\n" },
  { name = "obs-fold header line", expect = 400, smuggle = true,
    raw = "GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" },
  { name = "invalid chunk size", expect = "400/close",
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n" },
  { name = "chunk data longer than its size", expect = "400/close",
    raw = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n" },
}

-- requests that reached the mock, valid or not (the count request included)
local function requests_seen(up)
  local c = assert(up:count())
  return c.requests + c.rejected
end

describe("client limits", function()
  local up, g

  setup(function()
    up = mock.start{ name = "a" }
    g = h.proxy_gateway(up, {
      client = { maxHeadSize = 1024, maxBodySize = 1000, headTimeout = 300 },
    })
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  it("accepts a head under maxHeadSize", function()
    local res = assert(g:get("/echo", { ["X-Big"] = ("b"):rep(500) }))
    assert.equal(200, res.status)
    assert.equal(("b"):rep(500), cjson.decode(res.body).headers["x-big"])
  end)

  it("answers 431 to a head over maxHeadSize", function()
    local res = assert(g:get("/echo", { ["X-Big"] = ("b"):rep(2000) }))
    assert.equal(431, res.status)
  end)

  it("answers 431 to many small header lines adding up over maxHeadSize", function()
    local headers = {}
    for i = 1, 100 do headers[#headers + 1] = { "X-H" .. i, ("v"):rep(15) } end
    local res = assert(g:get("/echo", headers))
    assert.equal(431, res.status)
  end)

  it("answers 414 or 431 to a request line over maxHeadSize", function()
    local res = assert(g:get("/echo/" .. ("u"):rep(3000)))
    assert.is_truthy(res.status == 414 or res.status == 431, "status " .. res.status)
  end)

  it("accepts a body of exactly maxBodySize", function()
    local res = assert(g:request{ method = "POST", path = "/echo", body = ("y"):rep(1000) })
    assert.equal(200, res.status)
    assert.equal(1000, cjson.decode(res.body).body_length)
  end)

  it("answers 413 to a Content-Length body over maxBodySize", function()
    local before = requests_seen(up)
    local res = assert(g:request{ method = "POST", path = "/echo", body = ("y"):rep(1001) })
    assert.equal(413, res.status)
    -- the declared length is known from the head: nothing goes upstream
    assert.equal(before + 1, requests_seen(up))
  end)

  it("answers 413 to a chunked body over maxBodySize", function()
    local res, err = g:request{ method = "POST", path = "/echo",
                               chunks = { ("y"):rep(600), ("y"):rep(600), ("y"):rep(600) } }
    assert.is_truthy(res, err)
    assert.equal(413, res.status)
  end)

  it("answers 408 and closes when the head is not complete within headTimeout", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("GET /echo HTTP/1.1\r\nHost: x\r\n"))
    local res = assert(conn:read_response{ method = "GET", timeout = 3 })
    assert.equal(408, res.status)
    assert.is_true(conn:wait_closed(3))
  end)

  for _, case in ipairs(BAD_REQUESTS) do
    it("rejects " .. case.name .. " and keeps serving other connections", function()
      local other = assert(g:connect())
      finally(function() other:close() end)
      assert(other:request{ path = "/echo/other1" })
      assert.equal(200, assert(other:read_response()).status)
      local before = requests_seen(up)

      local conn = assert(g:connect())
      finally(function() conn:close() end)
      assert(conn:send(case.raw))
      local res, err = conn:read_response{ method = "GET", timeout = 3 }
      if case.expect == 400 or res then
        assert.is_truthy(res, "no response: " .. tostring(err))
        assert.equal(400, res.status)
      else
        assert.is_truthy(err == "closed" or err == "connection reset by peer",
                         "neither a 400 nor a closed connection: " .. tostring(err))
      end
      if case.smuggle then
        -- answered by the gateway: nothing reached the upstream
        assert.equal(before + 1, requests_seen(up), "the request reached the upstream")
      end
      assert.is_true(conn:wait_closed(3))

      assert(other:request{ path = "/echo/other2" })
      local res2 = assert(other:read_response())
      assert.equal(200, res2.status)
      assert.equal("/echo/other2", cjson.decode(res2.body).path)
    end)
  end
end)

describe("idle keep-alive connections", function()
  local up, g

  setup(function()
    up = mock.start{ name = "a" }
    g = h.proxy_gateway(up, { client = { keepaliveTimeout = 300 } })
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  it("are closed after keepaliveTimeout", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:request{ path = "/echo" })
    assert.equal(200, assert(conn:read_response()).status)
    local t0 = now()
    assert.is_false(conn:closed())
    assert.is_true(conn:wait_closed(3))
    local idle = now() - t0
    assert.is_true(idle >= 0.2, ("closed after %.3fs, keepaliveTimeout is 0.3s"):format(idle))
  end)
end)

describe("timeouts set to 0", function()
  local up, g

  setup(function()
    up = mock.start{ name = "a" }
    g = h.proxy_gateway(up, { client = { headTimeout = 300, bodyTimeout = 0 } })
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  it("bodyTimeout: 0 lets a body pause longer than any other timeout", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel"))
    socket.sleep(0.1)
    assert(conn:send("lo")) -- a read while the body is awaited (it re-arms the timer)
    socket.sleep(0.7) -- past headTimeout, the last wait that had a timeout
    assert(conn:send("world"))
    local res = assert(conn:read_response{ method = "POST", timeout = 3 })
    assert.equal(200, res.status)
    assert.equal("helloworld", cjson.decode(res.body).body)
  end)
end)
