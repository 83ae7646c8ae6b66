-- luacheck: std +busted
-- Hostile request bytes, each on its own connection while a normal client
-- is served: oversized heads and bodies (also streamed without end, with
-- the worker's memory bounded), invalid chunked encoding, header injection
-- (CR, LF, NUL and other controls in values, names and targets), request
-- smuggling variants beyond spec/02-http/02-limits (Transfer-Encoding with
-- other codings or twice, spacing and folding around it, Content-Length
-- spellings, a bare CR where a line ends), and pipelined garbage after
-- valid requests.  Header injection through policies is refused.
--
-- A case says what the gateway answers, in order, on the connection:
--   expect  steps separated by ","; each step a status, alternatives
--           separated by "|"; "reject" is any of 400, 413, 431, 501, 505
--           or the connection closed without a response.  After a
--           rejection the connection must close.
--   body    the body the upstream must receive for a 200 (the first)
--   head    true: the head itself is invalid, so nothing at all may reach
--           the upstream
-- The upstream (mock) must complete exactly as many requests as were
-- answered 200: a request the gateway refuses never reaches it whole, and
-- one request never turns into two.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local cjson = require "cjson"
local H = require "spec.07-hardening.helpers"

local process = H.process

local MAX_HEAD = 8192
local MAX_BODY = 1024 * 1024

local P = "POST /echo/m HTTP/1.1\r\nHost: x\r\n"
local TE = P .. "Transfer-Encoding: chunked\r\n\r\n"
local G = "GET /echo/m HTTP/1.1\r\nHost: x\r\n"

local CASES = {
  -- Transfer-Encoding
  { name = "TE gzip, chunked (another coding)", raw = P .. "Transfer-Encoding: gzip, chunked\r\n\r\n"
      .. "0\r\n\r\n", expect = "501", head = true },
  { name = "TE chunked, gzip", raw = P .. "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    expect = "reject", head = true },
  { name = "TE identity", raw = P .. "Transfer-Encoding: identity\r\n\r\n", expect = "reject",
    head = true },
  { name = "TE chunked with a parameter", raw = P .. "Transfer-Encoding: chunked;q=1\r\n\r\n"
      .. "0\r\n\r\n", expect = "reject", head = true },
  { name = "TE chunked in two header lines", raw = P .. "Transfer-Encoding: chunked\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", expect = "400", head = true },
  { name = "TE chunked, chunked", raw = P .. "Transfer-Encoding: chunked, chunked\r\n\r\n"
      .. "0\r\n\r\n", expect = "400", head = true },
  { name = "TE chunked and TE identity", raw = P .. "Transfer-Encoding: chunked\r\n"
      .. "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n", expect = "reject", head = true },
  { name = "'Transfer-Encoding : chunked' (space before the colon)",
    raw = P .. "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", expect = "400", head = true },
  { name = "a tab before the colon", raw = P .. "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
    expect = "400", head = true },
  { name = "a vertical tab before the coding", raw = P .. "Transfer-Encoding:\11chunked\r\n\r\n"
      .. "0\r\n\r\n", expect = "400", head = true },
  { name = "TE folded onto a second line (obs-fold)", raw = P .. "Transfer-Encoding: x\r\n"
      .. " chunked\r\n\r\n0\r\n\r\n", expect = "400", head = true },
  { name = "a first header line starting with a space", raw = P .. " Transfer-Encoding: chunked\r\n"
      .. "\r\n0\r\n\r\n", expect = "400", head = true },
  { name = "TE xchunked", raw = P .. "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    expect = "reject", head = true },
  { name = "TE chunked from an HTTP/1.0 client", raw = "POST /echo/m HTTP/1.0\r\n"
      .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", expect = "400", head = true },
  { name = "Content-Length with TE identity", raw = P .. "Content-Length: 5\r\n"
      .. "Transfer-Encoding: identity\r\n\r\nhello", expect = "400", head = true },
  { name = "TE CHUNKED (codings are case-insensitive)", raw = P .. "Transfer-Encoding: CHUNKED\r\n"
      .. "\r\n5\r\nhello\r\n0\r\n\r\n", expect = "200", body = "hello" },
  { name = "TE chunked with trailing whitespace", raw = P .. "Transfer-Encoding: chunked \r\n\r\n"
      .. "5\r\nhello\r\n0\r\n\r\n", expect = "200", body = "hello" },
  -- Content-Length
  { name = "the same Content-Length twice", raw = P .. "Content-Length: 5\r\nContent-Length: 5\r\n"
      .. "\r\nhello", expect = "400", head = true },
  { name = "Content-Length 5, 5", raw = P .. "Content-Length: 5, 5\r\n\r\nhello", expect = "400",
    head = true },
  { name = "Content-Length +5", raw = P .. "Content-Length: +5\r\n\r\nhello", expect = "400",
    head = true },
  { name = "Content-Length 0x5", raw = P .. "Content-Length: 0x5\r\n\r\nhello", expect = "400",
    head = true },
  { name = "Content-Length 5 5", raw = P .. "Content-Length: 5 5\r\n\r\nhello", expect = "400",
    head = true },
  { name = "Content-Length 5.0", raw = P .. "Content-Length: 5.0\r\n\r\nhello", expect = "400",
    head = true },
  { name = "Content-Length 1e1", raw = P .. "Content-Length: 1e1\r\n\r\nhello", expect = "400",
    head = true },
  { name = "an empty Content-Length", raw = P .. "Content-Length: \r\n\r\nhello", expect = "400",
    head = true },
  { name = "Content-Length then an empty Content-Length", raw = P .. "Content-Length: 5\r\n"
      .. "Content-Length: \r\n\r\nhello", expect = "400", head = true },
  { name = "a Content-Length of 20 digits", raw = P .. "Content-Length: 99999999999999999999\r\n"
      .. "\r\nhello", expect = "reject", head = true },
  { name = "Content-Length with spaces around it", raw = P .. "Content-Length:   5  \r\n\r\nhello",
    expect = "200", body = "hello" },
  { name = "Content-Length 05", raw = P .. "Content-Length: 05\r\n\r\nhello", expect = "200",
    body = "hello" },
  -- where a head ends
  { name = "a bare CR and any byte after the headers (a second request behind it)",
    raw = "GET /echo/m HTTP/1.1\r\nHost: x\r\n\rXGET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    expect = "reject", head = true },
  { name = "a bare CR and any byte after a header line",
    raw = "GET /echo/m HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\rXGET /echo/smuggled HTTP/1.1\r\n"
      .. "Host: x\r\n\r\n", expect = "reject", head = true },
  { name = "a bare CR and any byte after the last chunk",
    raw = TE .. "5\r\nhello\r\n0\r\n\rXGET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    expect = "reject" },
  { name = "a request line with a CRLF in its target",
    raw = "GET /echo/m\r\nX-Injected: 1 HTTP/1.1\r\nHost: x\r\n\r\n", expect = "reject", head = true },
  { name = "a request line with more than three parts", raw = "GET /echo/m HTTP/1.1 extra\r\n"
      .. "Host: x\r\n\r\n", expect = "400", head = true },
  { name = "a lower-case method", raw = "get /echo/m HTTP/1.1\r\nHost: x\r\n\r\n", expect = "400",
    head = true },
  { name = "HTTP/2.0 in a request line", raw = "GET /echo/m HTTP/2.0\r\nHost: x\r\n\r\n",
    expect = "505", head = true },
  -- chunked bodies
  { name = "a chunk size overflowing 64 bits", raw = TE .. "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    expect = "reject" },
  { name = "a negative chunk size", raw = TE .. "-5\r\nhello\r\n0\r\n\r\n", expect = "reject" },
  { name = "a 0x chunk size", raw = TE .. "0x5\r\nhello\r\n0\r\n\r\n", expect = "reject" },
  { name = "a space before the chunk size", raw = TE .. " 5\r\nhello\r\n0\r\n\r\n",
    expect = "reject" },
  { name = "an empty line before the chunk size", raw = TE .. "\r\n5\r\nhello\r\n0\r\n\r\n",
    expect = "reject" },
  { name = "a CR inside the chunk size line", raw = TE .. "5\r\r\nhello\r\n0\r\n\r\n",
    expect = "reject" },
  { name = "a CR inside a chunk extension", raw = TE .. "5;a=\rb\r\nhello\r\n0\r\n\r\n",
    expect = "reject" },
  { name = "a bare LF inside a chunk extension", raw = TE .. "5;a=\nb\r\nhello\r\n0\r\n\r\n",
    expect = "reject" },
  { name = "chunk data followed by two bytes that are not CRLF",
    raw = TE .. "5\r\nhelloXX0\r\n\r\n", expect = "reject" },
  { name = "chunk data followed by other bytes, twice",
    raw = TE .. "5\r\nhelloXX5\r\nworldYY0\r\n\r\n", expect = "reject" },
  { name = "chunk data followed by the next size line at once", raw = TE .. "5\r\nhello0\r\n\r\n",
    expect = "reject" },
  { name = "a trailer line without a colon", raw = TE .. "5\r\nhello\r\n0\r\nX-A b\r\n\r\n",
    expect = "reject" },
  { name = "a folded trailer line", raw = TE .. "5\r\nhello\r\n0\r\nX-A: b\r\n c\r\n\r\n",
    expect = "reject" },
  { name = "a 100 KB chunk extension", raw = TE .. "5;" .. ("a"):rep(100000)
      .. "\r\nhello\r\n0\r\n\r\n", expect = "reject" },
  { name = "1 MB of trailers", raw = TE .. "5\r\nhello\r\n0\r\n"
      .. ("X-T: aaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"):rep(30000) .. "\r\n", expect = "reject" },
  { name = "a valid chunk extension", raw = TE .. "5;a=b\r\nhello\r\n0\r\n\r\n", expect = "200",
    body = "hello" },
  { name = "a Content-Length trailer (not applied)", raw = TE .. "5\r\nhello\r\n0\r\n"
      .. "Content-Length: 99\r\n\r\n", expect = "200", body = "hello" },
  { name = "whitespace after a chunk size", raw = TE .. "5 \r\nhello\r\n0\r\n\r\n",
    expect = "reject|200", body = "hello" },
  { name = "a bare LF after chunk data", raw = TE .. "5\r\nhello\n\n0\r\n\r\n",
    expect = "reject|200", body = "hello" },
  { name = "bare LFs ending every chunk line", raw = TE .. "5\nhello\n0\n\n",
    expect = "reject|200", body = "hello" },
  -- header injection by the client
  { name = "a bare CR in a header value", raw = G .. "X-A: a\rX-Injected: 1\r\n\r\n",
    expect = "400", head = true },
  { name = "a CR before CRLF in a header value", raw = G .. "X-A: a\r\r\n\r\n", expect = "400",
    head = true },
  { name = "a NUL in a header value", raw = G .. "X-A: a\0b\r\n\r\n", expect = "400", head = true },
  { name = "a NUL in a header name", raw = G .. "X-A\0: b\r\n\r\n", expect = "400", head = true },
  { name = "a \\x01 in a header value", raw = G .. "X-A: a\1b\r\n\r\n", expect = "400", head = true },
  { name = "a vertical tab in a header value", raw = G .. "X-A: a\11b\r\n\r\n", expect = "400",
    head = true },
  { name = "a DEL in a header value", raw = G .. "X-A: a\127b\r\n\r\n", expect = "400", head = true },
  { name = "a NUL in the target", raw = "GET /echo/m\0x HTTP/1.1\r\nHost: x\r\n\r\n", expect = "400",
    head = true },
  { name = "a CR in the target", raw = "GET /echo/m\rx HTTP/1.1\r\nHost: x\r\n\r\n", expect = "400",
    head = true },
  { name = "a space in the target", raw = "GET /echo/m x HTTP/1.1\r\nHost: x\r\n\r\n",
    expect = "400", head = true },
  { name = "a DEL in the target", raw = "GET /echo/m\127x HTTP/1.1\r\nHost: x\r\n\r\n",
    expect = "400", head = true },
  { name = "a NUL in the Host", raw = "GET /echo/m HTTP/1.1\r\nHost: x\0y\r\n\r\n", expect = "400",
    head = true },
  { name = "a bare LF ending a header line (two clean headers upstream)",
    raw = G .. "X-A: a\nX-Injected: 1\r\n\r\n", expect = "400|200", body = "" },
  { name = "obs-text in a header value (passed as is)", raw = G .. "X-A: caf\233\r\n\r\n",
    expect = "200", body = "" },
  -- pipelined garbage
  { name = "garbage after a valid request", raw = G .. "\r\nGARBAGE\r\n\r\n", expect = "200,reject" },
  { name = "control bytes after two valid requests, then a valid one",
    raw = G .. "\r\n" .. G .. "\r\n\1\2 junk\r\n\r\n" .. G .. "\r\n", expect = "200,200,reject" },
  { name = "a truncated method after a valid request", raw = G .. "\r\nXYZ",
    expect = "200,reject" },
  { name = "a smuggled head after a body that ends early",
    raw = P .. "Content-Length: 3\r\n\r\nabcX-Injected: 1\r\n\r\n", expect = "200,reject",
    body = "abc" },
  { name = "empty lines between pipelined requests (allowed)", raw = G .. "\r\n\r\n\r\n" .. G .. "\r\n",
    expect = "200,200" },
}

-- The gateway must refuse these
local REJECT = { [400] = true, [413] = true, [431] = true, [501] = true, [505] = true }

describe("malformed requests", function()
  local up, g, worker

  setup(function()
    up = mock.start{ name = "a" }
    g = H.gateway(up, {
      client = { maxHeadSize = MAX_HEAD, maxBodySize = MAX_BODY },
      upstream = { keepalive = 0 },
    })
    worker = H.worker(g)
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  -- the mock's counters, minus the /count request itself and `served`
  -- requests of normal clients since `before`
  local function upstream_delta(before, served)
    local after = assert(up:count())
    return {
      requests = after.requests - before.requests - 1 - served,
      completed = after.completed - before.completed - 1 - served,
      rejected = after.rejected - before.rejected,
    }
  end

  for _, case in ipairs(CASES) do
    it("handles " .. case.name .. " (" .. case.expect .. ")", function()
      local base = H.settled_fds(worker)
      local before = assert(up:count())
      local conn = assert(g:connect{ timeout = 3 })
      finally(function() conn:close() end)
      conn:send(case.raw) -- may fail part way once the gateway has answered
      -- a normal client while the hostile connection is open
      H.served(g)

      local oks = 0
      local steps = {}
      for step in case.expect:gmatch("[^,]+") do steps[#steps + 1] = step end
      for i, step in ipairs(steps) do
        local allowed = {}
        for alt in step:gmatch("[^|]+") do allowed[alt] = true end
        local res, err = conn:read_response{ method = case.raw:match("^%u+") or "GET" }
        local what = res and tostring(res.status) or ("no response: " .. tostring(err))
        local ok = res and (allowed[tostring(res.status)] or (allowed.reject and REJECT[res.status]))
                   or (not res and allowed.reject and i == #steps and
                       (err == "closed" or err == "connection reset by peer"))
        assert.is_truthy(ok, ("step %d: expected %s, got %s"):format(i, step, what))
        if res and res.status == 200 then
          oks = oks + 1
          local echo = cjson.decode(res.body)
          assert.matches("^/echo/m", echo.path)
          if oks == 1 and case.body then assert.equal(case.body, echo.body) end
          for name, value in pairs(echo.headers) do
            assert.is_nil(value:find("[\r\n%z]"), "a control character upstream in " .. name)
          end
        elseif res then
          -- a rejection ends the connection
          assert.is_true(conn:wait_closed(3), "the connection stayed open after " .. res.status)
          break
        else
          break
        end
      end

      conn:close()
      H.wait_fds(worker, base)
      local d = upstream_delta(before, 1)
      assert.equal(oks, d.completed, "requests the upstream completed")
      if case.head then
        assert.equal(oks, d.requests + d.rejected, "requests that reached the upstream")
      end
    end)
  end

  it("answers a head streamed without end with 431, with bounded memory, serving others",
     function()
    local base = H.settled_fds(worker)
    H.served(g)
    local rss0 = assert(H.rss_kb(worker))
    local peak = rss0
    local conn = assert(g:connect{ timeout = 3 })
    finally(function() conn:close() end)
    assert(conn:send("GET /echo/m HTTP/1.1\r\nHost: x\r\n"))
    local line = ("X-A: " .. ("b"):rep(1000) .. "\r\n"):rep(64)
    local sent = 0
    while sent < 64 * 1024 * 1024 do
      local ok = conn:send(line, { timeout = 1 })
      if not ok then break end
      sent = sent + #line
      if sent % (4 * 1024 * 1024) < #line then
        H.served(g)
        local r = H.rss_kb(worker)
        if r > peak then peak = r end
      end
    end
    local res = assert(conn:read_response{ timeout = 5 })
    assert.equal(431, res.status)
    assert.is_true(conn:wait_closed(5))
    H.wait_fds(worker, base)
    if not H.sanitized() then
      assert.is_true(peak - rss0 < 2048, ("worker RSS grew by %d KB"):format(peak - rss0))
    end
  end)

  it("answers a chunked body streamed without end with 413, never completing it upstream",
     function()
    local base = H.settled_fds(worker)
    local before = assert(up:count())
    H.served(g)
    local served = 1
    local rss0 = assert(H.rss_kb(worker))
    local peak = rss0
    local conn = assert(g:connect{ timeout = 3 })
    finally(function() conn:close() end)
    assert(conn:send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"))
    local chunk = ("10000\r\n" .. ("c"):rep(65536) .. "\r\n"):rep(4)
    local sent = 0
    while sent < 256 * 1024 * 1024 do
      local ok = conn:send(chunk, { timeout = 1 })
      if not ok then break end
      sent = sent + #chunk
      if sent % (4 * 1024 * 1024) < #chunk then
        H.served(g)
        served = served + 1
        local r = H.rss_kb(worker)
        if r > peak then peak = r end
      end
    end
    local res = assert(conn:read_response{ method = "POST", timeout = 5 })
    assert.equal(413, res.status)
    assert.is_true(conn:wait_closed(5))
    H.wait_fds(worker, base)
    assert.equal(0, upstream_delta(before, served).completed)
    if not H.sanitized() then
      assert.is_true(peak - rss0 < 2048, ("worker RSS grew by %d KB"):format(peak - rss0))
    end
  end)

  it("answers a chunk declaring 2 GB with 413 once maxBodySize is passed", function()
    local before = assert(up:count())
    local conn = assert(g:connect{ timeout = 3 })
    finally(function() conn:close() end)
    conn:send("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7fffffff\r\n"
              .. ("c"):rep(MAX_BODY + 65536))
    H.served(g)
    local res = assert(conn:read_response{ method = "POST" })
    assert.equal(413, res.status)
    assert.is_true(conn:wait_closed(3))
    assert.equal(0, upstream_delta(before, 1).completed)
  end)

  it("answers 431 to more than 256 header lines under maxHeadSize", function()
    local conn, res = H.raw_request(g, G .. ("A:b\r\n"):rep(300) .. "\r\n")
    finally(function() conn:close() end)
    H.served(g)
    assert.equal(431, assert(res).status)
  end)

  it("answers 431 to a 100 KB header name", function()
    local conn, res = H.raw_request(g, G .. ("A"):rep(100000) .. ": b\r\n\r\n")
    finally(function() conn:close() end)
    H.served(g)
    assert.equal(431, assert(res).status)
  end)
end)

-- Policies cannot put CR, LF or NUL into a header, in either direction,
-- whatever the value's origin: the step fails (500) and nothing with the
-- injected line goes out.
local INJECT_POLICY = [[
return {
  name = "inject",
  schema = { properties = { where = { type = "string" } } },
  new = function(conf) return { where = conf.where } end,
  access = function(self, req)
    -- a value from the client, percent-decoded (as a policy might)
    local v = req:header("x-value")
    v = v and v:gsub("%%(%x%x)", function(x) return string.char(tonumber(x, 16)) end)
          or "a\r\nX-Injected: 1"
    if self.where == "request" then req:set_header("X-A", v)
    elseif self.where == "add" then req:add_header("X-A", v)
    elseif self.where == "name" then req:set_header("X-A\r\nX-Injected", "1")
    elseif self.where == "nul" then req:set_header("X-A", "a\0b")
    elseif self.where == "respond" then return 200, "hi", { ["X-A"] = v } end
  end,
  response = function(self, req)
    if self.where == "response" then req.response:set_header("X-A", "a\r\nX-Injected: 1") end
  end,
}
]]

-- path, reaches the upstream (the response phase runs after it answered)
local INJECTIONS = {
  { "/request/echo", false },
  { "/add/echo", false },
  { "/name/echo", false },
  { "/nul/echo", false },
  { "/respond/echo", false },
  { "/response/echo", true },
}

describe("header injection through policies", function()
  local up, g

  setup(function()
    up = mock.start{ name = "a" }
    local lines = { "apiEndpoints:" }
    for _, w in ipairs{ "request", "add", "name", "nul", "respond", "response" } do
      lines[#lines + 1] = ("  %s: { host: '*', paths: '/%s/*' }"):format(w, w)
    end
    lines[#lines + 1] = "  cfg: { host: '*', paths: '/cfg/*' }"
    lines[#lines + 1] = "  all: { host: '*' }"
    lines[#lines + 1] = "serviceEndpoints:"
    lines[#lines + 1] = "  up: { url: 'http://127.0.0.1:${UP}' }"
    lines[#lines + 1] = "policies: [proxy, inject]"
    lines[#lines + 1] = "pipelines:"
    for _, w in ipairs{ "request", "add", "name", "nul", "respond", "response" } do
      lines[#lines + 1] = ("  %s: { apiEndpoints: [%s], policies: [ { inject: [ { action: "
        .. "{ where: %s } } ] }, { proxy: [ { action: { serviceEndpoint: up, stripPath: true } } ] } ] }")
        :format(w, w, w)
    end
    lines[#lines + 1] = "  all: { apiEndpoints: [all], policies: [ { proxy: [ { action: "
      .. "{ serviceEndpoint: up } } ] } ] }"
    g = gateway.start{ config = H.config(table.concat(lines, "\n") .. "\n"),
                       vars = { UP = up.port }, files = { ["policies/inject.lua"] = INJECT_POLICY } }
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  for _, case in ipairs(INJECTIONS) do
    local path, reaches = case[1], case[2]
    it("refuses a CR/LF/NUL header set by a policy at " .. path, function()
      local before = assert(up:count())
      local conn = assert(g:connect())
      finally(function() conn:close() end)
      assert(conn:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
      H.served(g)
      -- the raw bytes: no injected line may appear anywhere in them
      local res = assert(conn:read_response())
      assert.equal(500, res.status)
      for _, hd in ipairs(res.header_list) do
        assert.are_not.equal("x-injected", hd[1]:lower())
        assert.are_not.equal("x-a", hd[1]:lower())
      end
      local after = assert(up:count())
      assert.equal(reaches and 1 or 0, after.requests - before.requests - 2,
                   "requests that reached the upstream")
      local e = process.wait_for(function()
        for _, l in ipairs(H.access_log(g)) do
          if l.path == path then return l end
        end
      end, 5, "the access log line of " .. path)
      assert.equal(500, e.status)
    end)
  end

  it("refuses a CR/LF value that came from the client (percent-decoded by a policy)", function()
    local before = assert(up:count())
    -- a clean value goes through
    local ok = assert(g:get("/request/echo", { ["X-Value"] = "a%20b" }))
    assert.equal(200, ok.status)
    assert.equal("a b", cjson.decode(ok.body).headers["x-a"])
    -- the header value is clean on the wire; decoded, it has a CRLF
    local res = assert(g:get("/request/echo", { ["X-Value"] = "a%0d%0aX-Injected:%201" }))
    H.served(g)
    assert.equal(500, res.status)
    local after = assert(up:count())
    -- the clean one, the normal client and /count: not the injected one
    assert.equal(3, after.requests - before.requests)
  end)

  it("refuses at load a proxy headers option with a CR/LF value", function()
    local code, out = gateway.check(H.config([[
apiEndpoints:
  all: { host: '*' }
serviceEndpoints:
  up: { url: 'http://127.0.0.1:9' }
policies: [proxy]
pipelines:
  all:
    apiEndpoints: [all]
    policies:
      - proxy: [ { action: { serviceEndpoint: up, headers: { X-A: "a\r\nX-Injected: 1" } } } ]
]]))
    assert.equal(1, code, "accepted: " .. out)
    assert.matches("headers", out, 1, true)
  end)
end)
