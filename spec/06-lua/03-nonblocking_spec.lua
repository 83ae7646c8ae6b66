-- Non-blocking I/O from policies, on the real binary with one worker:
-- req:sleep in every phase and tollgate.http calls let the worker serve
-- other requests meanwhile. Ordering and bounds are asserted, never fixed
-- sleeps: the spec only waits for responses, log lines or shared values.

local H = require "spec.06-lua.helpers"

local process = H.process
local now = H.now

-- Sleeps in the phase(s) its headers ask for; the log phase records how
-- long it slept in the shared dictionary (key "napped:<x-mark>").
local NAPPER = [[
local shdict = require "tollgate.shdict"
local function secs(req, name) return tonumber(req:header(name) or "") end
return {
  name = "napper",
  access = function(self, req)
    local s = secs(req, "x-sleep-access")
    if s then req:sleep(s) end
  end,
  response = function(self, req)
    local s = secs(req, "x-sleep-response")
    if s then
      req:sleep(s)
      req.response:set_header("X-Slept-Response", s)
    end
  end,
  log = function(self, req)
    local s = secs(req, "x-sleep-log")
    local mark = req:header("x-mark")
    if s then
      req:sleep(s)
      if mark then shdict.set("napped:" .. mark, "slept " .. s, 60) end
    end
  end,
}
]]

-- Makes the HTTP call its headers describe and answers with what it got:
-- 200 + JSON { status, headers, body } or 502 + the error.
-- X-Call-Twice: two calls in a row (keep-alive), the answer has both.
local CALLER = [[
local cjson = require "cjson"
local http = require "tollgate.http"
local shdict = require "tollgate.shdict"
local function call(req, path)
  local port = req:header("x-call-port") or os.getenv("MOCK_PORT")
  return http.request{
    url = (req:header("x-call-scheme") or "http") .. "://127.0.0.1:" .. port .. path,
    method = req:header("x-call-method"),
    headers = { ["X-Sent"] = "from-policy", ["Content-Type"] = req:header("x-call-type") },
    body = req:header("x-call-body"),
    timeout = tonumber(req:header("x-call-timeout") or ""),
    ca_file = req:header("x-call-ca"),
    verify = req:header("x-call-verify") ~= "no",
  }
end
return {
  name = "caller",
  access = function(self, req)
    local path = req:header("x-call-path")
    if not path then return end
    local res, err = call(req, path)
    if not res then return 502, "call failed: " .. tostring(err) end
    local out = { status = res.status, headers = res.headers, body = res.body }
    if req:header("x-call-twice") then
      local res2, err2 = call(req, path)
      if not res2 then return 502, "second call failed: " .. tostring(err2) end
      out.second = { status = res2.status, body = res2.body }
    end
    return 200, cjson.encode(out), { ["Content-Type"] = "application/json" }
  end,
  response = function(self, req)
    local path = req:header("x-call-in-response")
    if not path then return end
    local res, err = call(req, path)
    req.response:set_header("X-Response-Call", res and res.status or tostring(err))
  end,
  log = function(self, req)
    local path = req:header("x-call-in-log")
    if not path then return end
    local res, err = call(req, path)
    shdict.set("logcall:" .. req:header("x-mark"), res and res.status or tostring(err), 60)
  end,
}
]]

-- Calls whose method, header name or header value carry CR/LF: refused
-- (raised or nil, err), never sent as extra header lines.
local INJECT = [[
local http = require "tollgate.http"
local CASES = {
  value = { headers = { ["X-Bad"] = "a\r\nInjected: 1" } },
  value_lf = { headers = { ["X-Bad"] = "a\nInjected: 1" } },
  name = { headers = { ["X-Bad: 1\r\nInjected"] = "1" } },
  method = { method = "GET /echo HTTP/1.1\r\nInjected: 1\r\nX-Rest:" },
  url = { path = "/echo\r\nInjected: 1\r\nX-Rest: y" },
}
return {
  name = "inject",
  access = function(self, req)
    local which = req.path:match("^/inject/(.+)$")
    if not which then return end
    local c = CASES[which]
    local ok, res, err = pcall(http.request, { url = "http://127.0.0.1:" .. os.getenv("MOCK_PORT") ..
      (c.path or "/echo/inject"), method = c.method, headers = c.headers })
    if not ok then return 400, "raised: " .. tostring(res) end
    if not res then return 502, "call failed: " .. tostring(err) end
    return 200, res.body, { ["Content-Type"] = "application/json" }
  end,
}
]]

local CONFIG = H.HEAD .. [[
  client: { maxBufferedBody: 100000 }
apiEndpoints:
  api: { paths: '/*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${UP}' }
policies: [napper, caller, inject, peek, proxy, terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - peek:
      - napper:
      - inject:
      - caller:
      - proxy:
          - condition: { name: pathMatch, pattern: '^/up/' }
            action: { serviceEndpoint: backend }
      - terminate: { action: { statusCode: 200, message: fast } }
]]

local FILES = { ["policies/napper.lua"] = NAPPER, ["policies/caller.lua"] = CALLER,
  ["policies/inject.lua"] = INJECT, ["policies/peek.lua"] = H.PEEK }

-- Sends a request on its own connection and returns a reader: reader()
-- returns the response and the seconds from send to the last byte.
local function send(g, opts)
  local conn = assert(g:connect{ timeout = 10 })
  local t0 = now()
  assert(conn:request(opts))
  return function()
    local res, err = conn:read_response()
    local elapsed = now() - t0
    conn:close()
    assert(res, err)
    return res, elapsed
  end, conn
end

-- n quick requests, one after the other on one connection: all of them
-- answered; returns the time they took, and the time the first took.
local function quick_requests(g, n)
  local conn = assert(g:connect())
  local t0 = now()
  local first
  for _ = 1, n do
    assert(conn:request{ path = "/fast" })
    local res = assert(conn:read_response())
    assert.equal(200, res.status)
    assert.equal("fast", res.body)
    first = first or (now() - t0)
  end
  local elapsed = now() - t0
  conn:close()
  return elapsed, first
end

-- Nothing has arrived on conn yet (the slow response is still pending).
local function pending(conn)
  local data, err = conn:receive_some(1, { timeout = 0 })
  return data == nil and err == "timeout"
end

describe("req:sleep on one worker", function()
  local up, g
  setup(function()
    up = H.mock.start{ name = "nb" }
    g = H.server.start{ config = CONFIG, files = FILES, vars = { UP = up.port },
      env = { MOCK_PORT = tostring(up.port) } }
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  -- the phase slept in, the header naming it, how long
  local CASES = {
    { phase = "access", header = "X-Sleep-Access", seconds = 0.1 },
    { phase = "response", header = "X-Sleep-Response", seconds = 0.1 },
  }
  for _, c in ipairs(CASES) do
    it("a policy sleeping " .. c.seconds .. " s in " .. c.phase ..
       " does not hold up other requests on the same worker", function()
      local read_slow, slow_conn = send(g, { path = "/slow", headers = { [c.header] = c.seconds } })
      -- ten requests on another connection, each answered while the slow one waits
      local quick, first = quick_requests(g, 10)
      -- the proof: all ten were answered while the slow one was still pending
      -- (a worker blocked by the sleep could only answer them after it)
      assert.is_true(pending(slow_conn), "the slow request was already answered")
      local res, slow = read_slow()
      assert.equal(200, res.status)
      assert.equal("fast", res.body)
      if c.phase == "response" then assert.equal(tostring(c.seconds), res.headers["x-slept-response"]) end
      assert.is_true(slow >= c.seconds, "the slow request slept (" .. slow .. " s)")
      assert.is_true(slow < c.seconds + 2, "the slow request woke up (" .. slow .. " s)")
      assert.is_true(quick < slow, ("ten quick requests (%.3f s) finished before the slow one (%.3f s)")
        :format(quick, slow))
      assert.is_true(first < c.seconds / 2, ("the first quick request took %.3f s"):format(first))
    end)
  end

  it("many requests sleeping at once overlap instead of queueing", function()
    local readers = {}
    for i = 1, 20 do
      readers[i] = send(g, { path = "/overlap", headers = { ["X-Sleep-Access"] = "0.2" } })
    end
    local worst = 0
    for i = 1, 20 do
      local res, elapsed = readers[i]()
      assert.equal(200, res.status)
      assert.is_true(elapsed >= 0.2, "slept " .. elapsed)
      if elapsed > worst then worst = elapsed end
    end
    -- one after the other would take 4 s
    assert.is_true(worst < 2, ("twenty 0.2 s sleeps took %.3f s"):format(worst))
  end)

  it("a sleep in the log phase comes after the response, and finishes", function()
    local read, _ = send(g, { path = "/logsleep", headers = { ["X-Sleep-Log"] = "0.3", ["X-Mark"] = "ls1" } })
    local res, elapsed = read()
    assert.equal(200, res.status)
    assert.is_true(elapsed < 0.3, ("the client waited %.3f s for the log phase"):format(elapsed))
    local t0 = now()
    -- the worker serves others while the log phase sleeps
    local _, first = quick_requests(g, 5)
    assert.is_true(first < 0.15, ("a request during the log phase's sleep took %.3f s"):format(first))
    local v = H.until_(function()
      local r = assert(g:get("/shdict/napped:ls1"))
      return r.status == 200 and r.body
    end, 5, "the log phase to finish its sleep")
    assert.equal("slept 0.3", v)
    assert.is_true(now() - t0 + elapsed >= 0.3)
  end)

  it("a sleep in access before proxying still reaches the upstream", function()
    local res = assert(g:get("/up/echo/z", { ["X-Sleep-Access"] = "0.05" }))
    assert.equal(200, res.status)
    assert.equal("/up/echo/z", H.json(res).path)
  end)
end)

describe("tollgate.http from a policy", function()
  local up, g
  setup(function()
    up = H.mock.start{ name = "called" }
    g = H.server.start{ config = CONFIG, files = FILES, vars = { UP = up.port },
      env = { MOCK_PORT = tostring(up.port) } }
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  local function call(headers)
    local res = assert(g:get("/call", headers, { timeout = 10 }))
    return res, res.status == 200 and H.json(res) or nil
  end

  -- headers for the caller policy, then what the call returned
  local CASES = {
    { what = "GET: status, headers and body of the mock's echo",
      headers = { ["X-Call-Path"] = "/echo/get?q=1" },
      check = function(out)
        assert.equal(200, out.status)
        assert.equal("called", out.headers["x-upstream"])
        local echo = H.cjson.decode(out.body)
        assert.equal("GET", echo.method)
        assert.equal("/echo/get?q=1", echo.path)
        assert.equal("from-policy", echo.headers["x-sent"])
        assert.matches("^127%.0%.0%.1:%d+$", echo.headers.host)
      end },
    { what = "POST with a body and a content type",
      headers = { ["X-Call-Path"] = "/echo/post", ["X-Call-Method"] = "POST",
        ["X-Call-Body"] = "a=1&b=2", ["X-Call-Type"] = "application/x-www-form-urlencoded" },
      check = function(out)
        local echo = H.cjson.decode(out.body)
        assert.equal("POST", echo.method)
        assert.equal("a=1&b=2", echo.body)
        assert.equal("7", echo.headers["content-length"])
        assert.equal("application/x-www-form-urlencoded", echo.headers["content-type"])
      end },
    { what = "a non-2xx status is a response, not an error",
      headers = { ["X-Call-Path"] = "/status/418" },
      check = function(out)
        assert.equal(418, out.status)
        assert.equal("status 418", out.body)
      end },
    { what = "response headers, lower-cased",
      headers = { ["X-Call-Path"] = "/header/X-Custom-Thing/abc%20def" },
      check = function(out)
        assert.equal("abc def", out.headers["x-custom-thing"])
      end },
    { what = "a chunked response is read whole",
      headers = { ["X-Call-Path"] = "/chunked/3" },
      check = function(out)
        assert.equal(200, out.status)
        assert.equal("chunk1\nchunk2\nchunk3\n", out.body)
      end },
    { what = "HEAD: the head, no body",
      headers = { ["X-Call-Path"] = "/bytes/10", ["X-Call-Method"] = "HEAD" },
      check = function(out)
        assert.equal(200, out.status)
        assert.equal("", out.body)
        assert.equal("10", out.headers["content-length"])
      end },
    { what = "a 204 without a body",
      headers = { ["X-Call-Path"] = "/status/204" },
      check = function(out)
        assert.equal(204, out.status)
        assert.equal("", out.body)
      end },
    { what = "two calls in a row reuse the connection (keep-alive)",
      headers = { ["X-Call-Path"] = "/echo/ka", ["X-Call-Twice"] = "1" },
      check = function(out)
        local a, b = H.cjson.decode(out.body), H.cjson.decode(out.second.body)
        assert.equal(a.connection_id, b.connection_id)
        assert.equal(a.connection_request + 1, b.connection_request)
      end },
  }
  for _, c in ipairs(CASES) do
    it(c.what, function()
      local res, out = call(c.headers)
      assert.equal(200, res.status, res.body)
      c.check(out)
    end)
  end

  local FAILURES = {
    { what = "a response larger than maxBufferedBody (100000)", path = "/bytes/200000",
      words = "maxBufferedBody" },
    { what = "a connection reset before the head", path = "/reset-before-head", words = "reset" },
    { what = "an invalid response", path = "/invalid-response", words = "invalid response" },
  }
  for _, c in ipairs(FAILURES) do
    it(c.what .. " gives nil and an error", function()
      local res = call{ ["X-Call-Path"] = c.path }
      assert.equal(502, res.status, res.body:sub(1, 300))
      assert.matches("^call failed: ", res.body)
      H.contains(c.words, res.body)
    end)
  end

  local INJECTIONS = { "value", "value_lf", "name", "method", "url" }
  for _, which in ipairs(INJECTIONS) do
    it("refuses CR/LF in the call's " .. which .. " instead of sending extra header lines", function()
      local res = assert(g:get("/inject/" .. which))
      assert.is_true(res.status == 400 or res.status == 502,
        ("status %d: the call was sent: %s"):format(res.status, res.body))
      H.not_contains('"injected"', res.body)
    end)
  end

  it("a refused port gives nil and an error", function()
    local closed = process.free_port()
    local res = call{ ["X-Call-Path"] = "/x", ["X-Call-Port"] = tostring(closed) }
    assert.equal(502, res.status)
    assert.matches("^call failed: .+", res.body)
    H.contains("refused", res.body)
  end)

  it("a call that gets no answer times out with nil and an error", function()
    local t0 = now()
    local res = call{ ["X-Call-Path"] = "/never-answer", ["X-Call-Timeout"] = "0.2" }
    local elapsed = now() - t0
    assert.equal(502, res.status)
    assert.matches("^call failed: .+", res.body)
    H.contains("timed out", res.body)
    assert.is_true(elapsed >= 0.2, "gave up after " .. elapsed .. " s")
    assert.is_true(elapsed < 3, "gave up after " .. elapsed .. " s")
  end)

  it("a slow call does not hold up other requests", function()
    local read_slow, slow_conn = send(g, { path = "/call", headers = { ["X-Call-Path"] = "/slow/300" } })
    local quick, first = quick_requests(g, 10)
    assert.is_true(pending(slow_conn), "the slow call was already answered")
    local res, slow = read_slow()
    assert.equal(200, res.status, res.body)
    assert.equal("slow", H.json(res).body)
    assert.is_true(slow >= 0.3, "slow call took " .. slow)
    assert.is_true(quick < slow, ("quick requests took %.3f s, the call %.3f s"):format(quick, slow))
    assert.is_true(first < 0.15, ("the first quick request took %.3f s"):format(first))
  end)

  it("works in the response and log phases", function()
    local res = assert(g:get("/fast", { ["X-Call-In-Response"] = "/status/202",
      ["X-Call-In-Log"] = "/status/203", ["X-Mark"] = "lc1" }))
    assert.equal(200, res.status)
    assert.equal("202", res.headers["x-response-call"])
    local v = H.until_(function()
      local r = assert(g:get("/shdict/logcall:lc1"))
      return r.status == 200 and r.body
    end, 5, "the log phase's call")
    assert.equal("203", v)
  end)
end)

describe("tollgate.http over TLS", function()
  local certs = require "tollgate.testing.certs"
  local c, up, g
  setup(function()
    c = certs.generate()
    up = H.mock.start{ name = "tls-called", tls = { cert = c.upstream.cert, key = c.upstream.key } }
    g = H.server.start{ config = CONFIG, files = FILES, vars = { UP = up.port },
      env = { MOCK_PORT = tostring(up.port) } }
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
    if c then c:cleanup() end
  end)

  -- extra headers for the caller, then the outcome
  local CASES = {
    { what = "trusted through ca_file", ca = true, status = 200 },
    { what = "verify = false", verify = "no", status = 200 },
    { what = "an unknown CA with verification on (the default)", status = 502, words = "call failed" },
  }
  for _, k in ipairs(CASES) do
    it(k.what, function()
      local res = assert(g:get("/call", { ["X-Call-Path"] = "/echo/tls", ["X-Call-Scheme"] = "https",
        ["X-Call-Ca"] = k.ca and c.ca.cert or nil, ["X-Call-Verify"] = k.verify }, { timeout = 10 }))
      assert.equal(k.status, res.status, res.body)
      if k.status == 200 then
        local echo = H.cjson.decode(H.json(res).body)
        assert.equal("/echo/tls", echo.path)
        assert.equal("from-policy", echo.headers["x-sent"])
      else
        H.contains(k.words, res.body)
      end
    end)
  end
end)
