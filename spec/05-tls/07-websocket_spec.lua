-- WebSocket proxying: the upgrade runs the access phase (a jwt policy
-- refuses it without a token), then the gateway relays bytes both ways,
-- over plain and TLS connections on either side; `ws: false` stops the
-- upgrade; a silent tunnel is closed after tollgate.client.tunnelTimeout;
-- the access log gets one line (status 101) when the WebSocket ends.

local H = require "spec.05-tls.helpers"
local certs = require "spec.support.certs"
local jwt = require "spec.support.jwt"
local mock = require "spec.support.mock"
local process = require "spec.support.process"
local ws = require "spec.support.ws"
local cjson = require "cjson"
local socket = require "socket"

local SECRET = "ws-s3cret"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
https:
  hostname: 127.0.0.1
  port: 0
  tls:
    default:
      key: tls/default.key
      cert: tls/default.pem
tollgate:
  accessLog: stdout
  client:
    tunnelTimeout: ${TUNNEL_MS}
apiEndpoints:
  plain: { paths: '/plain/*' }
  tls: { paths: '/tls/*' }
  secure: { paths: '/secure/*' }
  nows: { paths: '/nows/*' }
serviceEndpoints:
  plain: { url: 'http://127.0.0.1:${PLAIN_PORT}' }
  tls: { url: 'https://127.0.0.1:${TLS_PORT}' }
policies: [jwt, proxy]
pipelines:
  plain:
    apiEndpoints: [plain]
    policies:
      - proxy: [ { action: { serviceEndpoint: plain, stripPath: true } } ]
  tls:
    apiEndpoints: [tls]
    policies:
      - proxy: [ { action: { serviceEndpoint: tls, caFile: tls/ca.pem, stripPath: true } } ]
  secure:
    apiEndpoints: [secure]
    policies:
      - jwt:
          - action: { secretOrPublicKey: ${SECRET}, checkCredentialExistence: false }
      - proxy: [ { action: { serviceEndpoint: plain, stripPath: true } } ]
  nows:
    apiEndpoints: [nows]
    policies:
      - proxy: [ { action: { serviceEndpoint: plain, stripPath: true, ws: false } } ]
]]

local function start_gateway(c, plain_up, tls_up, tunnel_ms)
  return H.start{
    config = CONFIG, files = H.tls_files(c, { "default" }),
    vars = { PLAIN_PORT = plain_up.port, TLS_PORT = tls_up.port, SECRET = SECRET,
             TUNNEL_MS = tunnel_ms },
  }
end

-- Echo checks on an open WebSocket: text, a large binary message, a
-- fragmented message, ping.
local function assert_echo(sock)
  assert(sock:send_text("hello"))
  local f = assert(sock:receive())
  assert.equal("text", f.type)
  assert.equal("hello", f.payload)
  assert.is_true(f.fin)
  assert.is_false(f.masked)

  local big = {}
  for i = 1, 300000 do big[i] = string.char(i % 256) end
  big = table.concat(big)
  assert(sock:send_binary(big))
  f = assert(sock:receive())
  assert.equal("binary", f.type)
  assert.equal(#big, #f.payload)
  assert.is_true(f.payload == big, "the binary message came back intact")

  assert(sock:send_frame(ws.OP.text, "frag", { fin = false }))
  assert(sock:send_frame(ws.OP.continuation, "ments"))
  f = assert(sock:receive())
  assert.equal("text", f.type)
  assert.is_false(f.fin)
  assert.equal("frag", f.payload)
  f = assert(sock:receive())
  assert.equal("continuation", f.type)
  assert.is_true(f.fin)
  assert.equal("ments", f.payload)

  assert(sock:ping("are you there"))
  f = assert(sock:receive())
  assert.equal("pong", f.type)
  assert.equal("are you there", f.payload)
end

-- The closing handshake, then the gateway closes the client connection.
local function assert_close(sock)
  local f = assert(sock:close(1000, "done"))
  assert.equal(1000, f.code)
  assert.equal("done", f.reason)
  assert(sock:wait_closed(5))
  sock:drop()
end

describe("WebSockets through the gateway", function()
  local c, plain_up, tls_up, g

  setup(function()
    c = certs.generate()
    plain_up = mock.start{ name = "plain" }
    tls_up = mock.start{ name = "tls", tls = { cert = c.upstream.cert, key = c.upstream.key } }
    g = start_gateway(c, plain_up, tls_up, 60000)
  end)

  teardown(function()
    if g then g:cleanup() end
    if plain_up then plain_up:stop() end
    if tls_up then tls_up:stop() end
    jwt.cleanup()
    if c then c:cleanup() end
  end)

  local function wss()
    return H.tls(c)
  end

  -- The access-log lines for request id `id`.
  local function lines_for(id)
    local out = {}
    for _, l in ipairs(H.access_log(g)) do
      if l.id == id then out[#out + 1] = l end
    end
    return out
  end

  it("ws: echo through the gateway to a plain upstream", function()
    local before = assert(plain_up:count()).websockets
    local sock = assert(ws.connect(g.port, "/plain/ws"))
    assert.equal("websocket", sock.response.headers["upgrade"]:lower())
    assert.matches("[Uu]pgrade", sock.response.headers["connection"])
    assert_echo(sock)
    assert_close(sock)
    assert.equal(before + 1, assert(plain_up:count()).websockets)
  end)

  it("the upstream gets the handshake: Upgrade, Connection, the key, the request id", function()
    local sock = assert(ws.connect(g.port, "/plain/ws?hello=1"))
    -- sent by the upstream right behind its 101 head
    local f = assert(sock:receive())
    assert.equal("text", f.type)
    local seen = cjson.decode(f.payload)
    assert.equal("/ws?hello=1", seen.path)
    assert.equal("websocket", seen.headers["upgrade"])
    assert.matches("[Uu]pgrade", seen.headers["connection"])
    assert.equal(sock.key, seen.headers["sec-websocket-key"])
    assert.equal("13", seen.headers["sec-websocket-version"])
    assert.truthy(seen.headers["eg-request-id"])
    assert_echo(sock)
    assert_close(sock)
  end)

  it("wss: echo with TLS on the client side", function()
    local sock = assert(ws.connect(g.tls_port, "/plain/ws", { tls = wss() }))
    assert_echo(sock)
    assert_close(sock)
  end)

  it("ws to a wss upstream (https service endpoint)", function()
    local before = assert(tls_up:count()).websockets
    local sock = assert(ws.connect(g.port, "/tls/ws?hello=1"))
    local seen = cjson.decode(assert(sock:receive()).payload)
    assert.equal("tls", seen.upstream)
    assert_echo(sock)
    assert_close(sock)
    assert.equal(before + 1, assert(tls_up:count()).websockets)
  end)

  it("wss on both sides", function()
    local sock = assert(ws.connect(g.tls_port, "/tls/ws", { tls = wss() }))
    assert_echo(sock)
    assert_close(sock)
  end)

  it("several WebSockets at once stay separate", function()
    local socks = {}
    for i = 1, 6 do
      local port, path, opts = g.port, (i % 2 == 0) and "/plain/ws" or "/tls/ws", nil
      if i > 3 then port, opts = g.tls_port, { tls = wss() } end
      socks[i] = assert(ws.connect(port, path, opts))
    end
    for round = 1, 3 do
      for i, sock in ipairs(socks) do
        assert(sock:send_text("socket " .. i .. " round " .. round))
      end
      for i, sock in ipairs(socks) do
        assert.equal("socket " .. i .. " round " .. round, assert(sock:receive()).payload)
      end
    end
    for _, sock in ipairs(socks) do assert_close(sock) end
  end)

  it("the upstream closing ends the tunnel: the client gets its close frame, then EOF",
     function()
    local sock = assert(ws.connect(g.tls_port, "/tls/ws", { tls = wss() }))
    assert(sock:send_text("__close__"))
    local f = assert(sock:receive())
    assert.equal("close", f.type)
    assert.equal(1000, f.code)
    assert.equal("bye", f.reason)
    assert(sock:wait_closed(5))
    sock:drop()
  end)

  it("jwt: the handshake without a token is refused with 401, nothing reaches the upstream",
     function()
    local before = assert(plain_up:count())
    local sock, err, res = ws.connect(g.port, "/secure/ws")
    assert.is_nil(sock)
    assert.matches("no upgrade", err)
    assert.equal(401, res.status)
    -- a bad token, over wss too
    local bad = jwt.bad_signature(jwt.sign({ sub = "mallory" }, SECRET, "HS256"))
    sock, err, res = ws.connect(g.tls_port, "/secure/ws", {
      tls = wss(), headers = { Authorization = "Bearer " .. bad } })
    assert.is_nil(sock, err)
    assert.equal(401, res.status)
    local after = assert(plain_up:count())
    assert.equal(before.websockets, after.websockets)
    assert.equal(before.requests + 1, after.requests) -- only the /count itself
  end)

  it("jwt: the handshake with a valid token is upgraded (ws and wss)", function()
    local tok = jwt.sign({ sub = "alice", exp = os.time() + 300 }, SECRET, "HS256")
    local sock = assert(ws.connect(g.port, "/secure/ws?hello=1", {
      headers = { Authorization = "Bearer " .. tok } }))
    local seen = cjson.decode(assert(sock:receive()).payload)
    assert.equal("alice", seen.headers["eg-consumer-id"])
    assert_echo(sock)
    assert_close(sock)
    sock = assert(ws.connect(g.tls_port, "/secure/ws", {
      tls = wss(), headers = { Authorization = "Bearer " .. tok } }))
    assert_echo(sock)
    assert_close(sock)
  end)

  it("ws: false: no upgrade, the upstream answers the plain GET", function()
    local before = assert(plain_up:count()).websockets
    local sock, err, res = ws.connect(g.port, "/nows/ws")
    assert.is_nil(sock)
    assert.matches("no upgrade", err)
    assert.equal(200, res.status)
    local echo = cjson.decode(res.body)
    assert.equal("/ws", echo.path)
    assert.is_nil(echo.headers["upgrade"])
    assert.is_nil((echo.headers["connection"] or ""):lower():find("upgrade", 1, true))
    assert.is_nil(res.headers["upgrade"])
    assert.equal(before, assert(plain_up:count()).websockets)
  end)

  it("the access log gets one line, status 101, when the WebSocket ends", function()
    local sock = assert(ws.connect(g.tls_port, "/plain/ws?hello=1", { tls = wss() }))
    local id = cjson.decode(assert(sock:receive()).payload).headers["eg-request-id"]
    assert_echo(sock)
    -- still open: not logged yet
    assert.same({}, lines_for(id))
    assert_close(sock)
    local lines
    process.wait_for(function()
      lines = lines_for(id)
      return #lines > 0
    end, 5, "the WebSocket's access-log line")
    -- a later request's line shows nothing more was logged for it
    assert.equal(200, assert(g:get("/plain/after")).status)
    process.wait_for(function()
      for _, l in ipairs(H.access_log(g)) do
        if l.path == "/plain/after" then return true end
      end
    end, 5, "the next access-log line")
    lines = lines_for(id)
    assert.equal(1, #lines)
    assert.equal(101, lines[1].status)
    assert.equal("GET", lines[1].method)
    assert.matches("^/plain/ws", lines[1].path)
  end)

  it("a client that drops the TCP connection ends the tunnel, which is logged", function()
    local sock = assert(ws.connect(g.port, "/plain/ws?hello=1"))
    local id = cjson.decode(assert(sock:receive()).payload).headers["eg-request-id"]
    assert(sock:send_text("x"))
    assert.equal("x", assert(sock:receive()).payload)
    sock:drop()
    process.wait_for(function() return #lines_for(id) == 1 end, 5, "the access-log line")
    assert.equal(101, lines_for(id)[1].status)
  end)
end)

describe("WebSockets: tunnelTimeout", function()
  local TUNNEL = 0.5 -- seconds
  local c, plain_up, tls_up, g

  setup(function()
    c = certs.generate()
    plain_up = mock.start{ name = "plain" }
    tls_up = mock.start{ name = "tls", tls = { cert = c.upstream.cert, key = c.upstream.key } }
    g = start_gateway(c, plain_up, tls_up, TUNNEL * 1000)
  end)

  teardown(function()
    if g then g:cleanup() end
    if plain_up then plain_up:stop() end
    if tls_up then tls_up:stop() end
    if c then c:cleanup() end
  end)

  local function closes_after_silence(sock)
    assert(sock:send_text("last words"))
    assert.equal("last words", assert(sock:receive()).payload)
    local t0 = process.now()
    assert(sock:wait_closed(TUNNEL + 5))
    local silent = process.now() - t0
    sock:drop()
    assert.is_true(silent >= TUNNEL - 0.05, "closed after " .. silent .. " s")
    assert.is_true(silent < TUNNEL + 2, "closed after " .. silent .. " s")
  end

  it("closes a tunnel after tunnelTimeout of silence both ways (ws)", function()
    closes_after_silence(assert(ws.connect(g.port, "/plain/ws")))
  end)

  it("closes a tunnel after tunnelTimeout of silence (wss to a wss upstream)", function()
    closes_after_silence(assert(ws.connect(g.tls_port, "/tls/ws", { tls = H.tls(c) })))
  end)

  it("traffic keeps the tunnel open past tunnelTimeout", function()
    local sock = assert(ws.connect(g.port, "/plain/ws"))
    local t0 = process.now()
    -- a ping every TUNNEL/3 (pacing), for 3 x TUNNEL
    while process.now() - t0 < 3 * TUNNEL do
      assert(sock:ping("p"))
      assert.equal("pong", assert(sock:receive()).type)
      socket.sleep(TUNNEL / 3)
    end
    assert.is_false(sock:closed())
    closes_after_silence(sock)
  end)

  it("the timed-out WebSocket is logged with 101", function()
    local sock = assert(ws.connect(g.port, "/plain/ws?hello=1"))
    local id = cjson.decode(assert(sock:receive()).payload).headers["eg-request-id"]
    closes_after_silence(sock)
    local line
    process.wait_for(function()
      for _, l in ipairs(H.access_log(g)) do
        if l.id == id then line = l end
      end
      return line
    end, 5, "the access-log line")
    assert.equal(101, line.status)
  end)
end)
