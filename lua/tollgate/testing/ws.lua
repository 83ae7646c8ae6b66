-- A small WebSocket (RFC 6455) client for Tollgate specs, on top of
-- tollgate.testing.http connections (plain or TLS), and the protocol helpers the
-- mock upstream's /ws endpoint shares.
--
--   local ws = require "tollgate.testing.ws"
--   local sock, err, res = ws.connect(port, "/ws", {
--     tls = { cafile = ..., servername = ... },   -- optional: wss (http.connect's tls)
--     headers = { Authorization = "Bearer ..." }, -- extra handshake headers
--     host = "Host header value", address = "127.0.0.1", timeout = 5,
--   })
--   -- failure: nil, err, res (res: the HTTP response when one came, e.g. 401)
--   assert(sock:send_text("hello"))
--   local frame = assert(sock:receive())   -- { type = "text", opcode = 1,
--                                          --   payload = "hello", fin = true }
--   sock:send_binary(bytes); sock:ping("x"); sock:send_frame(opcode, payload, opts)
--   local reply = sock:close(1000, "bye")  -- sends close, returns the peer's
--                                          -- close frame ({ code, reason }) or nil, err
--   sock:wait_closed(timeout)              -- the TCP connection ended
--
-- On an existing connection: ws.handshake(conn, path, opts) (same opts
-- except tls/address).  sock.conn is the http.lua connection, sock.response
-- the 101 response.  Client frames are masked (opts.mask = false in
-- send_frame sends one unmasked, for negative specs).
--
-- Helpers: ws.sha1(s) (raw 20 bytes, libcrypto through FFI), ws.base64(s),
-- ws.accept_key(key), ws.encode_frame(opcode, payload, opts), ws.OP.

local ffi = require "ffi"
local bit = require "bit"
local http = require "tollgate.testing.http"

local band, bor, bxor, rshift, lshift = bit.band, bit.bor, bit.bxor, bit.rshift, bit.lshift
local byte, char, sub = string.byte, string.char, string.sub
local concat = table.concat
local floor = math.floor
local random = math.random
local setmetatable, tostring, pcall = setmetatable, tostring, pcall
local ipairs, pairs = ipairs, pairs

local _M = {}

_M.GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_M.OP = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }
local TYPES = { [0] = "continuation", [1] = "text", [2] = "binary", [8] = "close",
                [9] = "ping", [10] = "pong" }

---------------------------------------------------------------------------
-- SHA-1 and base64

pcall(ffi.cdef, "unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md);")
local crypto

function _M.sha1(s)
  if not crypto then
    local ok, lib = pcall(ffi.load, "crypto")
    if not ok then lib = ffi.load("libcrypto.so.3") end
    crypto = lib
  end
  local out = ffi.new("unsigned char[20]")
  crypto.SHA1(s, #s, out)
  return ffi.string(out, 20)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function _M.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = bor(lshift(a, 16), lshift(b or 0, 8), c or 0)
    local q = {}
    for k = 1, 4 do
      local v = band(rshift(n, 6 * (4 - k)), 63)
      q[k] = sub(B64, v + 1, v + 1)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = concat(q)
  end
  return concat(out)
end

function _M.accept_key(key)
  return _M.base64(_M.sha1(key .. _M.GUID))
end

---------------------------------------------------------------------------
-- frames

local function be(n, bytes)
  local t = {}
  for i = bytes, 1, -1 do
    t[i] = char(n % 256)
    n = floor(n / 256)
  end
  return concat(t)
end

local function apply_mask(payload, key)
  local out = {}
  local k = { byte(key, 1, 4) }
  for i = 1, #payload do
    out[i] = char(bxor(byte(payload, i), k[(i - 1) % 4 + 1]))
  end
  return concat(out)
end
_M.apply_mask = apply_mask

-- opts.fin (default true), opts.mask (default false here; the client masks),
-- opts.mask_key (4 bytes), opts.rsv (bits 0x70 of the first byte).
function _M.encode_frame(opcode, payload, opts)
  opts = opts or {}
  payload = payload or ""
  local fin = opts.fin ~= false
  local b1 = bor(fin and 0x80 or 0, opts.rsv or 0, opcode)
  local n = #payload
  local mask = opts.mask and 0x80 or 0
  local head
  if n < 126 then
    head = char(b1, bor(mask, n))
  elseif n < 65536 then
    head = char(b1, bor(mask, 126)) .. be(n, 2)
  else
    head = char(b1, bor(mask, 127)) .. be(n, 8)
  end
  if opts.mask then
    local key = opts.mask_key or char(random(0, 255), random(0, 255), random(0, 255),
                                      random(0, 255))
    return head .. key .. apply_mask(payload, key)
  end
  return head .. payload
end

-- Decodes the fixed part of a frame head: returns fin, opcode, masked,
-- length (or 126/127: more length bytes follow), rsv.
function _M.decode_head(b1, b2)
  return band(b1, 0x80) ~= 0, band(b1, 0x0f), band(b2, 0x80) ~= 0, band(b2, 0x7f), band(b1, 0x70)
end

function _M.be_number(s)
  local n = 0
  for i = 1, #s do n = n * 256 + byte(s, i) end
  return n
end

-- The close payload: 2-byte code and reason.
function _M.close_payload(code, reason)
  if not code then return "" end
  return be(code, 2) .. (reason or "")
end

---------------------------------------------------------------------------
-- client

local Socket = {}
Socket.__index = Socket

local function random_key()
  local t = {}
  for i = 1, 16 do t[i] = char(random(0, 255)) end
  return _M.base64(concat(t))
end

-- WebSocket handshake on an open http.lua connection.  Returns a socket, or
-- nil, err, res.
function _M.handshake(conn, path, opts)
  opts = opts or {}
  local key = random_key()
  local headers = {
    { "Upgrade", "websocket" },
    { "Connection", "Upgrade" },
    { "Sec-WebSocket-Key", key },
    { "Sec-WebSocket-Version", "13" },
  }
  if opts.headers then
    if opts.headers[1] ~= nil then
      for _, h in ipairs(opts.headers) do headers[#headers + 1] = h end
    else
      local names = {}
      for k in pairs(opts.headers) do names[#names + 1] = k end
      table.sort(names)
      for _, k in ipairs(names) do headers[#headers + 1] = { k, tostring(opts.headers[k]) } end
    end
  end
  local ok, err = conn:request{ method = "GET", path = path or "/", headers = headers,
                                host = opts.host, timeout = opts.timeout }
  if not ok then return nil, err end
  local res, rerr, partial = conn:read_response{ timeout = opts.timeout }
  if not res then return nil, rerr, partial end
  if res.status ~= 101 then
    return nil, "no upgrade: status " .. tostring(res.status), res
  end
  local accept = res.headers["sec-websocket-accept"]
  if accept ~= _M.accept_key(key) then
    return nil, "bad Sec-WebSocket-Accept " .. tostring(accept), res
  end
  if not (res.headers["upgrade"] or ""):lower():find("websocket", 1, true) then
    return nil, "101 without Upgrade: websocket", res
  end
  return setmetatable({ conn = conn, response = res, key = key }, Socket)
end

-- Opens a connection (opts.tls for wss) and does the handshake.
function _M.connect(port, path, opts)
  opts = opts or {}
  local conn, err = http.connect(port, opts.address, { timeout = opts.timeout, tls = opts.tls })
  if not conn then return nil, err end
  local sock, herr, res = _M.handshake(conn, path, opts)
  if not sock then
    conn:close()
    return nil, herr, res
  end
  return sock
end

-- Sends one frame, masked unless opts.mask == false.
function Socket:send_frame(opcode, payload, opts)
  opts = opts or {}
  local o = { fin = opts.fin, rsv = opts.rsv, mask = opts.mask ~= false,
              mask_key = opts.mask_key }
  return self.conn:send(_M.encode_frame(opcode, payload, o), { timeout = opts.timeout })
end

function Socket:send_text(s, opts) return self:send_frame(1, s, opts) end
function Socket:send_binary(s, opts) return self:send_frame(2, s, opts) end
function Socket:ping(s, opts) return self:send_frame(9, s or "", opts) end

-- Reads one frame: { opcode, type, fin, payload, masked, rsv, code, reason
-- (close frames) } or nil, err.
function Socket:receive(opts)
  opts = opts or {}
  local conn = self.conn
  local h, err = conn:read_exact(2, opts)
  if not h then return nil, err end
  local fin, opcode, masked, len, rsv = _M.decode_head(byte(h, 1), byte(h, 2))
  if len == 126 or len == 127 then
    local ext
    ext, err = conn:read_exact(len == 126 and 2 or 8, opts)
    if not ext then return nil, err end
    len = _M.be_number(ext)
  end
  local key
  if masked then
    key, err = conn:read_exact(4, opts)
    if not key then return nil, err end
  end
  local payload = ""
  if len > 0 then
    payload, err = conn:read_exact(len, opts)
    if not payload then return nil, err end
  end
  if masked then payload = apply_mask(payload, key) end
  local frame = { opcode = opcode, type = TYPES[opcode] or "unknown", fin = fin,
                  payload = payload, masked = masked, rsv = rsv }
  if opcode == 8 and #payload >= 2 then
    frame.code = _M.be_number(sub(payload, 1, 2))
    frame.reason = sub(payload, 3)
  end
  return frame
end

-- Sends a close frame and waits for the peer's (skipping data frames).
-- Returns the peer's close frame or nil, err.  The TCP connection is left
-- open: the server closes it (sock:wait_closed()) or sock.conn:close() does.
function Socket:close(code, reason, opts)
  local ok, err = self:send_frame(8, _M.close_payload(code or 1000, reason), opts)
  if not ok then return nil, err end
  while true do
    local frame, rerr = self:receive(opts)
    if not frame then return nil, rerr end
    if frame.opcode == 8 then return frame end
  end
end

function Socket:wait_closed(timeout)
  return self.conn:wait_closed(timeout)
end

function Socket:closed()
  return self.conn:closed()
end

-- Closes the TCP connection without a closing handshake.
function Socket:drop()
  self.conn:close()
end

return _M
