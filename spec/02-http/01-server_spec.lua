-- luacheck: std +busted
-- HTTP/1.x server side of the gateway, through the real binary proxying to
-- the mock upstream: keep-alive, pipelining, HTTP/1.0, HEAD,
-- Expect: 100-continue, request bodies (chunked and Content-Length),
-- streamed large responses and uploads (with bounded worker memory).

local mock = require "spec.support.mock"
local http = require "spec.support.http"
local process = require "spec.support.process"
local gateway = require "spec.support.gateway"
local h = require "spec.02-http.helpers"
local cjson = require "cjson"

describe("http server", function()
  local up, g

  setup(function()
    up = mock.start{ name = "a" }
    g = h.proxy_gateway(up)
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  it("serves several requests on one keep-alive connection", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    for i = 1, 5 do
      assert(conn:request{ path = "/echo/" .. i })
      local res = assert(conn:read_response())
      assert.equal(200, res.status)
      local body = cjson.decode(res.body)
      assert.equal("/echo/" .. i, body.path)
      assert.is_false(conn:closed())
    end
  end)

  it("answers pipelined requests in order", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    local raw = {}
    for i = 1, 3 do
      raw[#raw + 1] = ("GET /echo/p%d HTTP/1.1\r\nHost: x\r\n\r\n"):format(i)
    end
    -- the slow one first: a gateway answering out of order would send p2 first
    raw[1] = "GET /slow/200 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert(conn:send(table.concat(raw)))
    local first = assert(conn:read_response{ method = "GET" })
    assert.equal(200, first.status)
    assert.equal("slow", first.body)
    for i = 2, 3 do
      local res = assert(conn:read_response{ method = "GET" })
      assert.equal(200, res.status)
      assert.equal("/echo/p" .. i, cjson.decode(res.body).path)
    end
  end)

  it("answers pipelined requests with bodies in order", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("GET /echo/q1 HTTP/1.1\r\nHost: x\r\n\r\n"
                     .. "POST /echo/q2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                     .. "PUT /echo/q3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .. "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                     .. "GET /echo/q4 HTTP/1.1\r\nHost: x\r\n\r\n"))
    local expect = { { "GET", "/echo/q1", "" }, { "POST", "/echo/q2", "hello" },
                     { "PUT", "/echo/q3", "abcde" }, { "GET", "/echo/q4", "" } }
    for _, e in ipairs(expect) do
      local res = assert(conn:read_response{ method = e[1] })
      assert.equal(200, res.status)
      local echo = cjson.decode(res.body)
      assert.same({ e[1], e[2], e[3] }, { echo.method, echo.path, echo.body })
    end
  end)

  it("sends a chunked upstream response to an HTTP/1.0 client without chunked coding", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("GET /chunked/3 HTTP/1.0\r\n\r\n"))
    local res = assert(conn:read_response{ method = "GET" })
    assert.equal(200, res.status)
    assert.is_nil(res.headers["transfer-encoding"])
    assert.equal("chunk1\nchunk2\nchunk3\n", res.body)
  end)

  it("answers an HTTP/1.0 request and closes the connection", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("GET /echo/ten HTTP/1.0\r\n\r\n"))
    local res = assert(conn:read_response{ method = "GET" })
    assert.equal(200, res.status)
    assert.equal("/echo/ten", cjson.decode(res.body).path)
    assert.is_true(conn:wait_closed(3))
  end)

  it("keeps an HTTP/1.0 connection open with Connection: keep-alive", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    for i = 1, 2 do
      assert(conn:send(("GET /echo/ka%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"):format(i)))
      local res = assert(conn:read_response{ method = "GET" })
      assert.equal(200, res.status)
      -- a 1.0 client can only find the end of a kept-alive body by its length
      assert.equal("length", res.framing)
      assert.matches("keep%-alive", (res.headers.connection or ""):lower())
      assert.equal("/echo/ka" .. i, cjson.decode(res.body).path)
    end
    assert.is_false(conn:closed())
  end)

  it("answers HEAD without a body but with the Content-Length of GET", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    -- HEAD then GET written together: a body after the HEAD answer would be
    -- read as the start of the next response and break it
    assert(conn:send("HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                     .. "GET /echo/after-head HTTP/1.1\r\nHost: x\r\n\r\n"))
    local head = assert(conn:read_response{ method = "HEAD" })
    assert.equal(200, head.status)
    assert.equal("1000", head.headers["content-length"])
    assert.equal("", head.body)
    local res = assert(conn:read_response{ method = "GET" })
    assert.equal(200, res.status)
    assert.equal("/echo/after-head", cjson.decode(res.body).path)
  end)

  it("sends 100 Continue before the body is sent, then the final response", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    local body = h.pattern_text(5000)
    assert(conn:send("POST /echo/continue HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     .. "Content-Length: " .. #body .. "\r\n\r\n"))
    local interim = assert(conn:read_response{ interim = true, timeout = 3 })
    assert.equal(100, interim.status)
    assert(conn:send(body))
    local res = assert(conn:read_response{ method = "POST" })
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal(#body, echo.body_length)
    assert.equal(body, echo.body)
  end)

  it("forwards a chunked request body intact", function()
    local text = h.pattern_text(300000, 7)
    local chunks = {}
    local i, sizes = 1, { 1, 10, 4096, 65536, 3, 100000 }
    local k = 1
    while i <= #text do
      local n = sizes[(k - 1) % #sizes + 1]
      chunks[#chunks + 1] = text:sub(i, i + n - 1)
      i, k = i + n, k + 1
    end
    local res = assert(g:request{ method = "POST", path = "/echo/chunked", chunks = chunks })
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal(#text, echo.body_length)
    assert.equal(text, echo.body)
  end)

  it("forwards a Content-Length request body intact", function()
    local text = h.pattern_text(500000, 3)
    local res = assert(g:request{ method = "PUT", path = "/echo/cl", body = text })
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal("PUT", echo.method)
    assert.equal(tostring(#text), echo.headers["content-length"])
    assert.equal(#text, echo.body_length)
    assert.equal(text, echo.body)
  end)

  it("streams a 50 MB response", function()
    local n = 50 * 1024 * 1024
    local res = assert(g:request{ path = "/bytes/" .. n, discard = true, timeout = 60 })
    assert.equal(200, res.status)
    assert.equal(tostring(n), res.headers["content-length"])
    assert.equal(n, res.body_length)
  end)

  it("streams a 1 GB upload with bounded worker memory", function()
    local worker = h.workers(g, 1)[1]
    -- warm up the worker's proxy path before taking the baseline
    local warm = assert(g:request{ method = "POST", path = "/upload", body = ("w"):rep(200000) })
    assert.equal(200, warm.status)
    local base = assert(process.rss_kb(worker))
    local peak = base
    local samples = 0

    local n = 1024 * 1024 * 1024
    local source = http.source_bytes(n)
    local pieces = 0
    local function body()
      pieces = pieces + 1
      if pieces % 256 == 0 then   -- every 16 MB sent
        local rss = process.rss_kb(worker)
        if rss then
          samples = samples + 1
          if rss > peak then peak = rss end
        end
      end
      return source()
    end

    local conn = assert(g:connect{ timeout = 300 })
    finally(function() conn:close() end)
    assert(conn:request{ method = "POST", path = "/upload",
                         headers = { ["Content-Length"] = n }, body = body })
    local res = assert(conn:read_response())
    local rss = process.rss_kb(worker)
    if rss and rss > peak then peak = rss end
    assert.equal(200, res.status)
    assert.equal(n, cjson.decode(res.body).received)
    assert.is_true(samples >= 32, "too few RSS samples: " .. samples)
    local growth = peak - base
    assert.is_true(growth < 16 * 1024,
      ("worker RSS grew by %d KB (from %d KB to %d KB) during a 1 GB upload"):format(growth, base, peak))
  end)
end)
