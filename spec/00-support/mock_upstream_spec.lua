-- luacheck: std +busted
-- Proves lua/tollgate/testing/mock_upstream.lua and tollgate.testing.http work,
-- talking to the mock directly.

local http = require "spec.support.http"
local mock = require "spec.support.mock"
local cjson = require "cjson"
local socket = require "socket"

local now = socket.gettime

local MB = 1024 * 1024

describe("mock upstream and http client", function()
  local up

  setup(function()
    up = mock.start{ name = "m1" }
  end)

  teardown(function()
    if up then up:stop() end
  end)

  local function connect(opts)
    return assert(http.connect(up.port, nil, opts))
  end

  describe("echo", function()
    it("returns method, target, headers, body as JSON", function()
      local res = assert(http.request(up.port, {
        method = "POST", path = "/echo/x?a=1&b=2",
        headers = { { "X-Dup", "one" }, { "X-Dup", "two" }, { "X-Single", "v" } },
        body = "hello body",
      }))
      assert.equal(200, res.status)
      assert.equal("OK", res.reason)
      assert.equal("1.1", res.version)
      assert.equal("application/json", res.headers["content-type"])
      assert.equal(tostring(#res.body), res.headers["content-length"])
      assert.equal("m1", res.headers["x-upstream"])
      local e = cjson.decode(res.body)
      assert.equal("POST", e.method)
      assert.equal("/echo/x?a=1&b=2", e.path)
      assert.equal("one, two", e.headers["x-dup"])
      assert.equal("v", e.headers["x-single"])
      assert.equal("127.0.0.1:" .. up.port, e.headers["host"])
      assert.equal("hello body", e.body)
      assert.equal(10, e.body_length)
      assert.equal("1.1", e.http_version)
      assert.equal(up.port, e.server_port)
      assert.equal("m1", e.upstream)
    end)

    it("answers any unknown path, with an empty body for GET", function()
      local res = assert(http.get(up.port, "/some/where", { ["X-A"] = "b" }))
      local e = cjson.decode(res.body)
      assert.equal("GET", e.method)
      assert.equal("", e.body)
      assert.equal(0, e.body_length)
      assert.equal("b", e.headers["x-a"])
    end)

    it("keeps header order and case in header_list", function()
      local res = assert(http.get(up.port, "/headers?X-B=1&x-a=2&X-B=3"))
      assert.same({ "X-B", "1" }, res.header_list[1])
      assert.same({ "x-a", "2" }, res.header_list[2])
      assert.same({ "X-B", "3" }, res.header_list[3])
      assert.equal("1, 3", res.headers["x-b"])
    end)

    it("reads a chunked request body", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:request{ method = "POST", path = "/echo", chunks = { "ab", "", "cde" },
                           trailers = { { "X-T", "1" } } })
      local res = assert(conn:read_response())
      local e = cjson.decode(res.body)
      assert.equal("abcde", e.body)
      assert.equal("chunked", e.headers["transfer-encoding"])
      -- the connection is still usable after a chunked body
      assert(conn:request{ path = "/echo?again" })
      assert.equal("/echo?again", cjson.decode(assert(conn:read_response()).body).path)
    end)

    it("answers Expect: 100-continue before reading the body", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                       .. "Expect: 100-continue\r\n\r\n"))
      local interim = assert(conn:read_response{ interim = true })
      assert.equal(100, interim.status)
      assert(conn:send("body"))
      local res = assert(conn:read_response())
      assert.equal("body", cjson.decode(res.body).body)
    end)
  end)

  describe("connections", function()
    it("reuses a keep-alive connection (visible in /count)", function()
      local before = assert(up:count())
      local conn = connect()
      finally(function() conn:close() end)
      local ids = {}
      for i = 1, 3 do
        assert(conn:request{ path = "/echo/" .. i })
        local e = cjson.decode(assert(conn:read_response()).body)
        assert.equal(i, e.connection_request)
        ids[e.connection_id] = true
      end
      assert(conn:request{ path = "/count" })
      local after = cjson.decode(assert(conn:read_response()).body)
      assert.equal(before.connections + 1, after.connections)
      assert.equal(before.requests + 4, after.requests)
      local n = 0
      for _ in pairs(ids) do n = n + 1 end
      assert.equal(1, n)
      assert.is_false(conn:closed())
    end)

    it("answers pipelined requests in order", function()
      local conn = connect()
      finally(function() conn:close() end)
      local raw = {}
      for i = 1, 5 do
        raw[#raw + 1] = "GET /echo/" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n"
      end
      raw[#raw + 1] = "GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n"
      assert(conn:send(table.concat(raw)))
      for i = 1, 5 do
        local res = assert(conn:read_response())
        assert.equal("/echo/" .. i, cjson.decode(res.body).path)
      end
      assert.equal(201, assert(conn:read_response()).status)
    end)

    it("pipelines :request calls and remembers HEAD for framing", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:request{ method = "HEAD", path = "/bytes/5000" })
      assert(conn:request{ path = "/bytes/3" })
      local head = assert(conn:read_response())
      assert.equal("5000", head.headers["content-length"])
      assert.equal("", head.body)
      assert.equal("xxx", assert(conn:read_response()).body)
    end)

    it("serves many concurrent connections", function()
      local conns = {}
      finally(function() for _, c in ipairs(conns) do c:close() end end)
      for i = 1, 200 do
        conns[i] = connect()
        assert(conns[i]:request{ path = "/echo/" .. i })
      end
      for i = 200, 1, -1 do
        local res = assert(conns[i]:read_response())
        assert.equal("/echo/" .. i, cjson.decode(res.body).path)
      end
    end)

    it("closes after Connection: close, ?close=1 and HTTP/1.0 requests", function()
      local c1 = connect()
      finally(function() c1:close() end)
      assert(c1:request{ path = "/echo", headers = { Connection = "close" } })
      assert.equal("close", assert(c1:read_response()).headers["connection"])
      assert(c1:wait_closed(2))

      local c2 = connect()
      finally(function() c2:close() end)
      assert(c2:request{ path = "/status/200?close=1" })
      assert.equal("close", assert(c2:read_response()).headers["connection"])
      assert(c2:wait_closed(2))

      local c3 = connect()
      finally(function() c3:close() end)
      assert(c3:request{ path = "/echo", version = "1.0" })
      local res = assert(c3:read_response())
      assert.equal("1.0", cjson.decode(res.body).http_version)
      assert(c3:wait_closed(2))

      local c4 = connect()
      finally(function() c4:close() end)
      assert(c4:request{ path = "/echo", version = "1.0", headers = { Connection = "keep-alive" } })
      assert.equal("keep-alive", assert(c4:read_response()).headers["connection"])
      assert.is_false(c4:closed())
    end)

    it("answers a malformed request with 400 and closes", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:send("NOT A REQUEST\r\n\r\n"))
      assert.equal(400, assert(conn:read_response()).status)
      assert(conn:wait_closed(2))
    end)
  end)

  describe("response framing", function()
    it("/chunked/N sends N chunks", function()
      local res = assert(http.get(up.port, "/chunked/5"))
      assert.equal(200, res.status)
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.equal("chunked", res.framing)
      assert.equal("chunk1\nchunk2\nchunk3\nchunk4\nchunk5\n", res.body)
      assert.equal(6, res.chunk_count) -- 5 + the last (empty) chunk
      assert.same({}, res.trailers)
    end)

    it("/chunked/N?delay=MS streams chunk by chunk", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:request{ path = "/chunked/3?delay=50" })
      local res = assert(conn:read_response{ head_only = true })
      assert.equal(200, res.status)
      assert.is_nil(res.body)
      assert(conn:read_body(res))
      assert.equal("chunk1\nchunk2\nchunk3\n", res.body)
    end)

    it("/close-delimited ends the body by closing", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:request{ path = "/close-delimited" })
      local res = assert(conn:read_response())
      assert.equal("1.0", res.version)
      assert.equal("close", res.framing)
      assert.is_nil(res.headers["content-length"])
      assert.equal("close-delimited body\n", res.body)
      assert.is_true(conn:closed())
    end)

    it("HEAD gets the head only and the connection stays usable", function()
      local conn = connect()
      finally(function() conn:close() end)
      for _, path in ipairs{ "/bytes/100000", "/chunked/3", "/echo", "/status/404" } do
        assert(conn:request{ method = "HEAD", path = path })
        local res = assert(conn:read_response())
        assert.equal("", res.body)
        assert.equal("none", res.framing)
      end
      assert(conn:request{ path = "/bytes/7" })
      assert.equal("xxxxxxx", assert(conn:read_response()).body)
    end)

    it("/status/NNN answers with that status", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:request{ path = "/status/404" })
      local res = assert(conn:read_response())
      assert.equal(404, res.status)
      assert.equal("status 404", res.body)
      assert.equal("m1", res.headers["x-upstream"])

      assert(conn:request{ path = "/status/204" })
      res = assert(conn:read_response())
      assert.equal(204, res.status)
      assert.equal("", res.body)
      assert.is_nil(res.headers["content-length"])

      assert(conn:request{ path = "/status/503" })
      assert.equal(503, assert(conn:read_response()).status)
    end)

    it("/status/1xx sends the interim response, then 200", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:request{ path = "/status/103" })
      local interim = assert(conn:read_response{ interim = true })
      assert.equal(103, interim.status)
      local res = assert(conn:read_response())
      assert.equal(200, res.status)
      assert.equal("status 103", res.body)
      -- without interim = true the 1xx is skipped
      assert(conn:request{ path = "/status/100" })
      assert.equal(200, assert(conn:read_response()).status)
    end)

    it("/header/NAME/VALUE sets a response header", function()
      local res = assert(http.get(up.port, "/header/X-Hop/" .. http.urlencode("a b, c")))
      assert.equal("a b, c", res.headers["x-hop"])
      assert.equal("ok", res.body)
    end)
  end)

  describe("large bodies", function()
    it("/bytes streams 50 MB in bounded time", function()
      local n = 50 * MB
      local t0 = now()
      local res = assert(http.get(up.port, "/bytes/" .. n, nil, { timeout = 20, discard = true }))
      assert.equal(tostring(n), res.headers["content-length"])
      assert.equal(n, res.body_length)
      assert.is_nil(res.body)
      assert.is_true(now() - t0 < 20)
    end)

    it("/bytes returns exactly N bytes of x", function()
      local res = assert(http.get(up.port, "/bytes/" .. (MB + 17)))
      assert.equal(MB + 17, #res.body)
      assert.is_nil(res.body:find("[^x]"))
    end)

    it("a slow reader does not block other connections", function()
      local slow = connect()
      finally(function() slow:close() end)
      assert(slow:request{ path = "/bytes/" .. (20 * MB) })
      local head = assert(slow:read_response{ head_only = true })
      assert.equal(200, head.status)
      -- the mock is now blocked writing to `slow`; others are still served
      local res = assert(http.get(up.port, "/echo", nil, { timeout = 2 }))
      assert.equal(200, res.status)
      assert(slow:read_body(head, { discard = true, timeout = 20 }))
      assert.equal(20 * MB, head.body_length)
    end)

    it("/slow/MS delays only its own connection", function()
      local slow = connect()
      finally(function() slow:close() end)
      local t0 = now()
      assert(slow:request{ path = "/slow/2000" })
      local res = assert(http.get(up.port, "/echo", nil, { timeout = 2 }))
      assert.equal(200, res.status)
      -- nothing has arrived on the slow connection yet
      local data, err = slow:receive_some(1, { timeout = 0 })
      assert.is_nil(data)
      assert.equal("timeout", err)
      local sres = assert(slow:read_response())
      assert.equal("slow", sres.body)
      assert.is_true(now() - t0 >= 2.0)
    end)

    it("/upload counts a 64 MB Content-Length body", function()
      local n = 64 * MB
      local res = assert(http.request(up.port, {
        method = "POST", path = "/upload", timeout = 30,
        headers = { ["Content-Length"] = n }, body = http.source_bytes(n),
      }))
      assert.equal(200, res.status)
      assert.equal(n, cjson.decode(res.body).received)
    end)

    it("/upload counts a chunked body", function()
      local n = 5 * MB + 3
      local res = assert(http.request(up.port, {
        method = "PUT", path = "/upload", body = http.source_bytes(n, "y"), timeout = 20,
      }))
      assert.equal(n, cjson.decode(res.body).received)
    end)
  end)

  describe("failures", function()
    it("/reset-before-head gives a read error", function()
      local res, err = http.get(up.port, "/reset-before-head")
      assert.is_nil(res)
      assert.equal("connection reset by peer", err)
    end)

    it("/reset-mid-body gives a read error after part of the body", function()
      local res, err, partial = http.get(up.port, "/reset-mid-body")
      assert.is_nil(res)
      assert.equal("connection reset by peer", err)
      assert.equal(200, partial.status)
      assert.equal("100000", partial.headers["content-length"])
      assert.equal(1000, partial.body_length)
    end)

    it("/never-answer hits the client timeout", function()
      local t0 = now()
      local res, err = http.get(up.port, "/never-answer", nil, { timeout = 0.3 })
      local elapsed = now() - t0
      assert.is_nil(res)
      assert.equal("timeout", err)
      assert.is_true(elapsed >= 0.3 and elapsed < 3, "elapsed " .. elapsed)
    end)

    it("/never-answer keeps the connection open", function()
      local conn = connect()
      finally(function() conn:close() end)
      assert(conn:request{ path = "/never-answer" })
      local res, err = conn:read_response{ timeout = 0.2 }
      assert.is_nil(res)
      assert.equal("timeout", err)
      assert.is_false(conn:closed())
    end)

    it("/partial-head times out with the status line parsed", function()
      local res, err, partial = http.get(up.port, "/partial-head", nil, { timeout = 0.3 })
      assert.is_nil(res)
      assert.equal("timeout", err)
      assert.equal(200, partial.status)
    end)

    it("/invalid-response is reported as invalid", function()
      local res, err = http.get(up.port, "/invalid-response")
      assert.is_nil(res)
      assert.matches("^invalid response", err)
    end)

    it("connect to a closed port fails with an error", function()
      local s = assert(socket.bind("127.0.0.1", 0))
      local _, port = s:getsockname()
      s:close()
      local conn, err = http.connect(tonumber(port))
      assert.is_nil(conn)
      assert.equal("connection refused", err)
    end)
  end)

  describe("several mocks", function()
    it("tag responses with their --name", function()
      local other = mock.start{ name = "m2" }
      finally(function() other:stop() end)
      assert.equal("m2", assert(http.get(other.port, "/status/500")).headers["x-upstream"])
      assert.equal("m1", assert(http.get(up.port, "/bytes/1")).headers["x-upstream"])
      assert.matches("^http://127%.0%.0%.1:%d+/x$", other:url("/x"))
    end)

    it("stop ends the process", function()
      local other = mock.start{}
      local pid = other.pid
      assert.is_true(other:alive())
      other.stop()
      assert.is_false(require("spec.support.process").alive(pid))
      local res = http.get(other.port, "/echo", nil, { timeout = 1 })
      assert.is_nil(res)
    end)
  end)
end)
