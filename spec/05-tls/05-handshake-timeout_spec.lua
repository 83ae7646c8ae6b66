-- https listener: a slow or half-finished handshake is bounded by
-- tollgate.client.headTimeout and costs other clients nothing (one worker
-- serves them meanwhile).

local H = require "spec.05-tls.helpers"
local certs = require "spec.support.certs"
local http = require "spec.support.http"
local process = require "spec.support.process"
local socket = require "socket"

local HEAD_TIMEOUT = 0.6 -- seconds

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
  accessLog: off
  client:
    headTimeout: ${HEAD_MS}
apiEndpoints:
  api: { paths: '/*' }
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate: [ { action: { statusCode: 200, message: hello } } ]
]]

-- The start of a TLS ClientHello: a handshake record announcing 512 bytes,
-- and the first bytes of the ClientHello (type 1, version, random...).
local PARTIAL_HELLO = "\22\3\1\2\0" .. "\1\0\1\252" .. "\3\3" .. ("\42"):rep(12)

describe("https: slow and half-finished handshakes", function()
  local c, g

  setup(function()
    c = certs.generate()
    g = H.start{ config = CONFIG, vars = { HEAD_MS = HEAD_TIMEOUT * 1000 },
                 files = H.tls_files(c, { "default" }), workers = 1 }
  end)

  teardown(function()
    if g then g:cleanup() end
    if c then c:cleanup() end
  end)

  local function served()
    local t0 = process.now()
    local res, err = H.exchange(g.tls_port, H.tls(c), { path = "/" })
    assert(res, err)
    assert.equal(200, res.status)
    assert.equal("hello", res.body)
    return process.now() - t0
  end

  -- Opens a raw TCP connection to the https port, lets `stall` play a slow
  -- client on it, checks that others are served meanwhile, and returns how
  -- long the gateway took to close it.
  local function stalled(stall)
    local t0 = process.now()
    local conn = assert(http.connect(g.tls_port, "127.0.0.1", { timeout = 5 }))
    stall(conn)
    -- another client, on the same (only) worker, is served at once
    local took = served()
    assert.is_true(took < HEAD_TIMEOUT, "served in " .. took .. " s")
    assert.is_false(conn:closed(), "the stalled connection is still open meanwhile")
    assert(conn:wait_closed(HEAD_TIMEOUT + 4))
    local elapsed = process.now() - t0
    -- nothing was written to a client that never finished its handshake
    assert.equal("", conn.buf)
    conn:close()
    return elapsed
  end

  it("a client that connects and sends nothing is closed after headTimeout", function()
    local elapsed = stalled(function() end)
    assert.is_true(elapsed >= HEAD_TIMEOUT - 0.05, "closed after " .. elapsed .. " s")
    assert.is_true(elapsed < HEAD_TIMEOUT + 2, "closed after " .. elapsed .. " s")
  end)

  it("a client that sends half a ClientHello is closed after headTimeout", function()
    local elapsed = stalled(function(conn) assert(conn:send(PARTIAL_HELLO)) end)
    assert.is_true(elapsed >= HEAD_TIMEOUT - 0.05, "closed after " .. elapsed .. " s")
    assert.is_true(elapsed < HEAD_TIMEOUT + 2, "closed after " .. elapsed .. " s")
  end)

  it("a client trickling its ClientHello does not extend the timeout", function()
    local t0 = process.now()
    local conn = assert(http.connect(g.tls_port, "127.0.0.1", { timeout = 5 }))
    local sent = 0
    -- one byte every 100 ms (pacing, not waiting for anything): 2.2 s worth
    for i = 1, #PARTIAL_HELLO do
      if conn:closed() or not conn:send(PARTIAL_HELLO:sub(i, i)) then break end
      sent = sent + 1
      if i % 3 == 0 then served() end
      socket.sleep(0.1)
    end
    assert(conn:wait_closed(2))
    local elapsed = process.now() - t0
    conn:close()
    assert.is_true(sent < #PARTIAL_HELLO, "the whole trickle went through")
    assert.is_true(elapsed >= HEAD_TIMEOUT - 0.05, "closed after " .. elapsed .. " s")
    assert.is_true(elapsed < HEAD_TIMEOUT + 1, "closed after " .. elapsed .. " s")
  end)

  it("many stalled handshakes at once do not keep others from being served", function()
    local stuck = {}
    for i = 1, 50 do
      stuck[i] = assert(http.connect(g.tls_port, "127.0.0.1", { timeout = 5 }))
      if i % 2 == 0 then assert(stuck[i]:send(PARTIAL_HELLO)) end
    end
    for _ = 1, 5 do
      local took = served()
      assert.is_true(took < HEAD_TIMEOUT, "served in " .. took .. " s")
    end
    for _, conn in ipairs(stuck) do
      assert(conn:wait_closed(HEAD_TIMEOUT + 4))
      conn:close()
    end
    served()
  end)

  it("after the handshake, the head timeout starts again for the request", function()
    local t0 = process.now()
    local conn = assert(http.connect(g.tls_port, "127.0.0.1", { tls = H.tls(c) }))
    -- handshaken, but no request: closed after headTimeout (not a 408:
    -- nothing of a request came)
    assert(conn:wait_closed(HEAD_TIMEOUT + 4))
    local elapsed = process.now() - t0
    assert.is_true(elapsed >= HEAD_TIMEOUT - 0.05, "closed after " .. elapsed .. " s")
    conn:close()
    -- part of a head: 408
    conn = assert(http.connect(g.tls_port, "127.0.0.1", { tls = H.tls(c) }))
    assert(conn:send("GET / HTTP/1.1\r\nHost: x\r\n"))
    local res = assert(conn:read_response{ timeout = HEAD_TIMEOUT + 4 })
    assert.equal(408, res.status)
    conn:close()
  end)
end)
