-- A small raw HTTP/1.1 client for Tollgate specs (LuaSocket).
--
--   local http = require "tollgate.testing.http"
--   local conn = assert(http.connect(port))
--   conn:request{ method = "POST", path = "/echo", body = "hi" }
--   local res = assert(conn:read_response())
--   -- res.status, res.reason, res.version, res.headers["content-type"],
--   -- res.header_list, res.body, res.body_length, res.trailers
--   conn:close()
--
--   local res = assert(http.get(port, "/echo", { ["X-A"] = "1" }))
--
-- Every call that waits has a deadline: the connection's timeout (default
-- 5 s, http.connect(port, host, { timeout = s }) or conn:settimeout(s)) or
-- opts.timeout of that call.  The deadline covers the whole call (e.g. a
-- whole response), so a hung gateway fails the spec instead of hanging it.
--
-- TLS (LuaSec): http.connect(port, host, { tls = {...} }) wraps the socket
-- and completes the handshake before returning (same deadline):
--   tls.cafile       trusted CAs (PEM); verify defaults to "peer" with one,
--                    "none" without
--   tls.verify       "peer" / "none" (LuaSec's verify)
--   tls.servername   SNI name (tls.sni is the same)
--   tls.certificate, tls.key   a client certificate and its key (PEM files)
--   tls.protocol     LuaSec protocol: "any" (default), "tlsv1_2", "tlsv1_3",
--                    "tlsv1_1", ...
--   tls.ciphers      OpenSSL cipher string (e.g. "DEFAULT:@SECLEVEL=0")
--   tls.alpn         "http/1.1" or a list of protocol names to offer
-- A failed handshake returns nil, "tls handshake: <LuaSec's error>" (the
-- socket is closed).  On a TLS connection conn.tls is true and
-- conn:peer_certificate() (LuaSec x509 or nil), conn:tls_info() (LuaSec's
-- info(): protocol, cipher, ...) and conn:alpn() (the negotiated protocol or
-- nil) are available; everything else works as on plain connections.
-- http.request / http.get take the same opts.tls.
--
-- Failures are returned as nil, err[, partial]: err is "timeout", "closed"
-- (the peer closed the connection with a FIN before the response was
-- complete), "connection reset by peer" (RST), another socket error, or
-- "invalid response: ...".  `partial` is what
-- had been read of the response so far (status/headers/body, when known).

local socket = require "socket"
local ffi = require "ffi"

local ipairs = ipairs
local math = math
local pairs = pairs
local pcall = pcall
local setmetatable = setmetatable
local string = string
local table = table
local tonumber = tonumber
local tostring = tostring
local type = type

local now = socket.gettime
local concat = table.concat
local fmt = string.format
local min = math.min

local _M = {
  DEFAULT_TIMEOUT = 5,
}

local RECV_SIZE = 65536

-- Reads go through recv(2) directly (LuaSocket reports a connection reset
-- as "closed"; specs need to tell a RST from a FIN).
pcall(ffi.cdef, "long recv(int fd, void *buf, unsigned long len, int flags);")
pcall(ffi.cdef, "char *strerror(int errnum);")
local MSG_DONTWAIT = 0x40
local EINTR, EAGAIN, ECONNRESET = 4, 11, 104
local recv_buf = ffi.new("char[?]", RECV_SIZE)

-- Non-blocking recv: returns data, or nil and "again" / "closed" /
-- "connection reset by peer" / another error string.
local function raw_recv(sock, n)
  while true do
    local got = tonumber(ffi.C.recv(sock:getfd(), recv_buf, min(n, RECV_SIZE), MSG_DONTWAIT))
    if got > 0 then return ffi.string(recv_buf, got) end
    if got == 0 then return nil, "closed" end
    local e = ffi.errno()
    if e == EAGAIN then return nil, "again" end
    if e ~= EINTR then
      if e == ECONNRESET then return nil, "connection reset by peer" end
      return nil, ffi.string(ffi.C.strerror(e))
    end
  end
end
local MAX_HEAD = 1024 * 1024

local Conn = {}
Conn.__index = Conn

local function trim(s)
  return (s:gsub("^[ \t]+", ""):gsub("[ \t]+$", ""))
end

-- Wraps a connected socket in TLS (client mode) and completes the
-- handshake.  Returns the LuaSec socket, or nil, err (sock closed).
local function tls_wrap(sock, t, timeout)
  local ok, ssl = pcall(require, "ssl")
  if not ok then
    sock:close()
    return nil, "LuaSec (lua-sec) is not installed: " .. tostring(ssl)
  end
  local alpn = t.alpn
  local params = {
    mode = "client",
    protocol = t.protocol or "any",
    verify = t.verify or (t.cafile and "peer" or "none"),
    cafile = t.cafile,
    certificate = t.certificate,
    key = t.key,
    options = t.options or { "all" },
    ciphers = t.ciphers,
    alpn = alpn,
  }
  local s, err = ssl.wrap(sock, params)
  if not s then
    sock:close()
    return nil, err
  end
  local name = t.servername or t.sni
  if name then s:sni(name) end
  s:settimeout(timeout)
  local done
  done, err = s:dohandshake()
  if not done then
    s:close()
    return nil, err
  end
  return s
end

-- Opens a connection.  Returns conn or nil, err.
--   opts.timeout  default per-call timeout in seconds (default 5)
--   opts.tls      TLS parameters (see the top of this file)
function _M.connect(port, host, opts)
  opts = opts or {}
  host = host or "127.0.0.1"
  local timeout = opts.timeout or _M.DEFAULT_TIMEOUT
  local sock, err = socket.tcp()
  if not sock then return nil, err end
  sock:settimeout(timeout)
  local ok
  ok, err = sock:connect(host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  sock:setoption("tcp-nodelay", true)
  local conn = setmetatable({
    sock = sock, host = host, port = port, timeout = timeout,
    buf = "", pending = {}, eof = false, err = nil,
  }, Conn)
  if opts.tls then
    local ssock
    ssock, err = tls_wrap(sock, opts.tls, timeout)
    if not ssock then return nil, "tls handshake: " .. tostring(err) end
    conn.sock, conn.tls = ssock, true
  end
  return conn
end

-- The peer's certificate (LuaSec x509 object) on a TLS connection.
function Conn:peer_certificate()
  if not self.tls then return nil, "not a TLS connection" end
  return self.sock:getpeercertificate()
end

-- LuaSec's info(): { protocol = "TLSv1.3", cipher = ..., ... }.
function Conn:tls_info()
  if not self.tls then return nil, "not a TLS connection" end
  return self.sock:info()
end

-- The ALPN protocol the server selected, or nil.
function Conn:alpn()
  if not self.tls then return nil, "not a TLS connection" end
  return self.sock:getalpn()
end

function Conn:settimeout(seconds)
  self.timeout = seconds
end

local function deadline_of(self, opts)
  return now() + ((opts and opts.timeout) or self.timeout)
end

-- Waits until the socket is readable or the deadline passes.
local function wait_readable(self, deadline)
  local left = deadline - now()
  if left <= 0 then return nil, "timeout" end
  socket.select({ self.sock }, nil, left)
  return true
end

-- Receives whatever is available (up to n bytes), waiting until the deadline
-- when nothing is.  Returns data, or nil and "timeout" / "closed" / error.
-- Non-blocking read on a TLS connection, same results as raw_recv.
local function tls_recv(self, n)
  if self.tls_eof then return nil, self.tls_eof end
  self.sock:settimeout(0)
  local data, err, partial = self.sock:receive(min(n, RECV_SIZE))
  if data then return data end
  if err ~= "timeout" and err ~= "wantread" and err ~= "wantwrite" then
    self.tls_eof = err
  end
  if partial and #partial > 0 then return partial end
  if not self.tls_eof then return nil, "again" end
  return nil, err
end

local function recv_any(self, n)
  if self.tls then return tls_recv(self, n) end
  return raw_recv(self.sock, n)
end

local function recv_some(self, n, deadline)
  if self.eof then return nil, self.err or "closed" end
  while true do
    local data, err = recv_any(self, n)
    if data then return data end
    if err ~= "again" then
      self.eof, self.err = true, err
      return nil, err
    end
    local ok, werr = wait_readable(self, deadline)
    if not ok then return nil, werr end
  end
end

-- Appends more input to self.buf.
local function fill(self, deadline)
  local data, err = recv_some(self, RECV_SIZE, deadline)
  if not data then return nil, err end
  self.buf = self.buf .. data
  return true
end

local function read_line(self, deadline, limit)
  local from = 1
  while true do
    local pos = self.buf:find("\n", from, true)
    if pos then
      local line = self.buf:sub(1, pos - 1)
      self.buf = self.buf:sub(pos + 1)
      if line:sub(-1) == "\r" then line = line:sub(1, -2) end
      return line
    end
    if #self.buf > (limit or MAX_HEAD) then return nil, "invalid response: line too long" end
    from = #self.buf + 1
    local ok, err = fill(self, deadline)
    if not ok then return nil, err end
  end
end

-- Reads exactly n bytes into sink(piece).
local function read_n(self, n, deadline, sink)
  local remaining = n
  if #self.buf > 0 then
    local take = min(#self.buf, remaining)
    sink(self.buf:sub(1, take))
    self.buf = self.buf:sub(take + 1)
    remaining = remaining - take
  end
  while remaining > 0 do
    local data, err = recv_some(self, min(remaining, RECV_SIZE), deadline)
    if not data then return nil, err end
    sink(data)
    remaining = remaining - #data
  end
  return true
end

-- Reads until the peer closes into sink(piece).
local function read_to_close(self, deadline, sink)
  if #self.buf > 0 then
    sink(self.buf)
    self.buf = ""
  end
  while true do
    local data, err = recv_some(self, RECV_SIZE, deadline)
    if not data then
      if err == "closed" then return true end
      return nil, err
    end
    sink(data)
  end
end

---------------------------------------------------------------------------
-- sending

local function send_raw(self, data, deadline)
  local i = 1
  while i <= #data do
    local left = deadline - now()
    if left <= 0 then return nil, "timeout" end
    self.sock:settimeout(left)
    local last, err, partial = self.sock:send(data, i)
    if last then
      i = last + 1
    else
      if err ~= "timeout" and err ~= "wantwrite" and err ~= "wantread" then return nil, err end
      i = partial + 1
    end
  end
  return true
end

-- Sends raw bytes.  Returns true or nil, err.
function Conn:send(data, opts)
  return send_raw(self, data, deadline_of(self, opts))
end

-- Normalises headers (a map, or a list of {name, value}) to a list.
-- Map entries are sorted by name so requests are reproducible; a map value
-- may be a list to send the header several times.
local function header_list(headers)
  local list = {}
  if not headers then return list end
  if headers[1] ~= nil then
    for _, h in ipairs(headers) do list[#list + 1] = { h[1], h[2] } end
    return list
  end
  local names = {}
  for k in pairs(headers) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = headers[k]
    if type(v) == "table" then
      for _, one in ipairs(v) do list[#list + 1] = { k, tostring(one) } end
    else
      list[#list + 1] = { k, tostring(v) }
    end
  end
  return list
end

local function has_header(list, name)
  for _, h in ipairs(list) do
    if h[1]:lower() == name then return true end
  end
  return false
end

-- Builds and sends a request; does not read the response.
--   opts.method   default "GET"
--   opts.path     request target, default "/"
--   opts.version  default "1.1"
--   opts.headers  map { name = value | {values} } or list { {name, value} }
--                 (a list keeps order and duplicates).  Host is added unless
--                 given (opts.host = false: no Host; a string: that value).
--   opts.body     a string (Content-Length added unless the headers have
--                 Content-Length or Transfer-Encoding: then sent as is), or
--                 an iterator function returning pieces until nil (sent with
--                 chunked coding unless a Content-Length header is given).
--   opts.chunks   list of strings sent as chunks (adds Transfer-Encoding:
--                 chunked unless present).  opts.trailers: list of
--                 {name, value} sent after the last chunk.
--   opts.timeout  deadline for sending, seconds
-- Returns true or nil, err.  The method is remembered so read_response()
-- knows when a response has no body (HEAD), also when pipelining.
function Conn:request(opts)
  opts = opts or {}
  local method = opts.method or "GET"
  local list = header_list(opts.headers)
  if opts.host ~= false and not has_header(list, "host") then
    local host = type(opts.host) == "string" and opts.host
                 or (self.host .. ":" .. tostring(self.port))
    table.insert(list, 1, { "Host", host })
  end
  local body = opts.body
  local chunks = opts.chunks
  if type(body) == "function" and not has_header(list, "content-length") then
    chunks = body
  end
  if chunks then
    if not has_header(list, "transfer-encoding") then
      list[#list + 1] = { "Transfer-Encoding", "chunked" }
    end
  elseif type(body) == "string" then
    if not has_header(list, "content-length") and not has_header(list, "transfer-encoding")
       and (#body > 0 or method == "POST" or method == "PUT" or method == "PATCH") then
      list[#list + 1] = { "Content-Length", tostring(#body) }
    end
  end

  local lines = { fmt("%s %s HTTP/%s", method, opts.path or "/", opts.version or "1.1") }
  for _, h in ipairs(list) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ""
  local head = concat(lines, "\r\n")

  local deadline = deadline_of(self, opts)
  self.pending[#self.pending + 1] = method
  local ok, err
  if chunks then
    ok, err = send_raw(self, head, deadline)
    if not ok then return nil, err end
    local function send_chunk(piece)
      if #piece == 0 then return true end
      return send_raw(self, fmt("%x\r\n", #piece) .. piece .. "\r\n", deadline)
    end
    if type(chunks) == "function" then
      for piece in chunks do
        ok, err = send_chunk(piece)
        if not ok then return nil, err end
      end
    else
      for _, piece in ipairs(chunks) do
        ok, err = send_chunk(piece)
        if not ok then return nil, err end
      end
    end
    local tail = { "0" }
    for _, t in ipairs(opts.trailers or {}) do tail[#tail + 1] = t[1] .. ": " .. t[2] end
    tail[#tail + 1] = ""
    tail[#tail + 1] = ""
    return send_raw(self, concat(tail, "\r\n"), deadline)
  elseif type(body) == "function" then
    ok, err = send_raw(self, head, deadline)
    if not ok then return nil, err end
    for piece in body do
      ok, err = send_raw(self, piece, deadline)
      if not ok then return nil, err end
    end
    return true
  else
    return send_raw(self, head .. (body or ""), deadline)
  end
end

---------------------------------------------------------------------------
-- reading

local function parse_head(self, deadline)
  local line, err
  -- tolerate empty lines before a status line
  repeat
    line, err = read_line(self, deadline)
    if not line then return nil, err end
  until line ~= ""
  local version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
  if not version then
    return nil, "invalid response: bad status line " .. fmt("%q", line:sub(1, 200))
  end
  local res = {
    status = tonumber(status), reason = reason, version = version,
    headers = {}, header_list = {},
  }
  local size = 0
  while true do
    line, err = read_line(self, deadline)
    if not line then return nil, err, res end
    size = size + #line + 2
    if size > MAX_HEAD then return nil, "invalid response: head too large", res end
    if line == "" then break end
    if line:find("^[ \t]") then
      local last = res.header_list[#res.header_list]
      if not last then return nil, "invalid response: bad header line", res end
      last[2] = last[2] .. " " .. trim(line)
    else
      local name, value = line:match("^([^:%s]+):(.*)$")
      if not name then
        return nil, "invalid response: bad header line " .. fmt("%q", line:sub(1, 200)), res
      end
      res.header_list[#res.header_list + 1] = { name, trim(value) }
    end
  end
  for _, h in ipairs(res.header_list) do
    local k = h[1]:lower()
    res.headers[k] = res.headers[k] and (res.headers[k] .. ", " .. h[2]) or h[2]
  end
  return res
end

-- Decides how the body of `res` is delimited (RFC 9112 section 6.3).
local function framing(res, method)
  local s = res.status
  if method == "HEAD" or s < 200 or s == 204 or s == 304 then return "none" end
  if method == "CONNECT" and s < 300 then return "none" end
  local te = res.headers["transfer-encoding"]
  if te then
    local last
    for t in te:gmatch("[^,]+") do last = trim(t):lower() end
    if last == "chunked" then return "chunked" end
    return "close"
  end
  local cl = res.headers["content-length"]
  if cl then
    local n
    for v in cl:gmatch("[^,]+") do
      local this = trim(v)
      if not this:match("^%d+$") or (n and tonumber(this) ~= n) then
        return nil, "invalid response: bad Content-Length " .. fmt("%q", cl)
      end
      n = tonumber(this)
    end
    if not n then return nil, "invalid response: bad Content-Length" end
    return "length", n
  end
  return "close"
end

local function read_chunked(self, res, deadline, sink)
  while true do
    local line, err = read_line(self, deadline, 4096)
    if not line then return nil, err end
    local hex = line:match("^%s*(%x+)")
    if not hex or #hex > 15 then
      return nil, "invalid response: bad chunk size line " .. fmt("%q", line:sub(1, 100))
    end
    local size = tonumber(hex, 16)
    res.chunk_count = (res.chunk_count or 0) + 1
    if size == 0 then
      res.trailers, res.trailer_list = {}, {}
      while true do
        line, err = read_line(self, deadline)
        if not line then return nil, err end
        if line == "" then return true end
        local name, value = line:match("^([^:%s]+):(.*)$")
        if name then
          value = trim(value)
          res.trailer_list[#res.trailer_list + 1] = { name, value }
          local k = name:lower()
          res.trailers[k] = res.trailers[k] and (res.trailers[k] .. ", " .. value) or value
        end
      end
    end
    local ok
    ok, err = read_n(self, size, deadline, sink)
    if not ok then return nil, err end
    line, err = read_line(self, deadline, 16)
    if not line then return nil, err end
    if line ~= "" then return nil, "invalid response: missing CRLF after chunk data" end
  end
end

-- Reads the body of a response returned by read_response{head_only = true}.
-- opts.discard: count the body (res.body_length) without keeping it.
-- Returns res (with res.body set) or nil, err, res.
function Conn:read_body(res, opts)
  opts = opts or {}
  local deadline = deadline_of(self, opts)
  local pieces, count = {}, 0
  local sink
  if opts.discard then
    sink = function(p) count = count + #p end
  else
    sink = function(p) count = count + #p; pieces[#pieces + 1] = p end
  end
  local function done(ok, err)
    res.body_length = count
    res.body = (not opts.discard) and concat(pieces) or nil
    if not ok then return nil, err, res end
    return res
  end
  local kind, n = res.framing, res.framing_length
  if kind == "none" then
    return done(true)
  elseif kind == "length" then
    return done(read_n(self, n, deadline, sink))
  elseif kind == "chunked" then
    return done(read_chunked(self, res, deadline, sink))
  else
    return done(read_to_close(self, deadline, sink))
  end
end

-- Reads one response.
--   opts.method     request method, for framing (default: the method of the
--                   oldest request sent with :request() and not yet answered,
--                   else "GET")
--   opts.head_only  return after the head (res.body == nil); read the body
--                   later with conn:read_body(res)
--   opts.interim    return 1xx interim responses (they are skipped otherwise)
--   opts.discard    do not keep the body, only count it (res.body_length)
--   opts.timeout    seconds for the whole call
-- Returns res = { status, reason, version, headers, header_list, body,
-- body_length, framing = "length"|"chunked"|"close"|"none", chunk_count,
-- trailers, trailer_list }, or nil, err, partial_res.
function Conn:read_response(opts)
  opts = opts or {}
  local deadline = deadline_of(self, opts)
  local res, err, partial
  while true do
    res, err, partial = parse_head(self, deadline)
    if not res then return nil, err, partial end
    if res.status >= 200 or res.status == 101 then break end
    if opts.interim then
      res.framing = "none"
      res.body, res.body_length = "", 0
      return res
    end
  end
  local method = table.remove(self.pending, 1)
  method = opts.method or method or "GET"
  local kind, n = framing(res, method)
  if not kind then return nil, n, res end
  res.framing, res.framing_length = kind, n
  if opts.head_only then return res end
  return self:read_body(res, { discard = opts.discard, timeout = deadline - now() })
end

-- Receives up to n bytes (whatever arrives first), for streaming checks.
-- Returns data or nil, err.
function Conn:receive_some(n, opts)
  n = n or RECV_SIZE
  if #self.buf > 0 then
    local data = self.buf:sub(1, n)
    self.buf = self.buf:sub(n + 1)
    return data
  end
  return recv_some(self, n, deadline_of(self, opts))
end

-- Reads exactly n bytes (buffered input first).  Returns the bytes or
-- nil, err, what_was_read.
function Conn:read_exact(n, opts)
  local pieces = {}
  local ok, err = read_n(self, n, deadline_of(self, opts), function(p) pieces[#pieces + 1] = p end)
  if not ok then return nil, err, concat(pieces) end
  return concat(pieces)
end

-- True if the peer has closed the connection (or reset it).  Non-blocking:
-- data that arrived meanwhile is kept for later reads.
function Conn:closed()
  if self.eof then return true end
  local got = 0
  while got < 1024 * 1024 do
    local data, err = recv_any(self, RECV_SIZE)
    if data then
      self.buf = self.buf .. data
      got = got + #data
    elseif err == "again" then
      return false
    else
      self.eof, self.err = true, err
      return true
    end
  end
  return false
end

-- Waits until the peer closes the connection.  Returns true, or nil,
-- "timeout" (default: the connection's timeout).
function Conn:wait_closed(timeout)
  local deadline = now() + (timeout or self.timeout)
  while true do
    if self:closed() then return true end
    local ok, err = wait_readable(self, deadline)
    if not ok then return nil, err end
  end
end

function Conn:close()
  if not self.sock_closed then
    self.sock:close()
    self.sock_closed = true
  end
end

---------------------------------------------------------------------------
-- one-shot helpers

-- Sends one request on a new connection and reads the response.
-- opts: as Conn:request (host = Host header value) plus address (where to
-- connect, default 127.0.0.1), timeout (whole exchange, default 5 s),
-- interim, discard, tls (see http.connect).  Returns res or nil, err, partial.
function _M.request(port, opts)
  opts = opts or {}
  local deadline = now() + (opts.timeout or _M.DEFAULT_TIMEOUT)
  local conn, err = _M.connect(port, opts.address, { timeout = opts.timeout, tls = opts.tls })
  if not conn then return nil, err end
  local ok
  ok, err = conn:request(opts)
  if not ok then
    -- the server may have answered (and closed) before reading everything
    local res = conn:read_response{ timeout = math.max(0, deadline - now()) }
    conn:close()
    if res then return res end
    return nil, err
  end
  local res, rerr, partial = conn:read_response{
    timeout = math.max(0, deadline - now()), discard = opts.discard, interim = opts.interim,
  }
  conn:close()
  if not res then return nil, rerr, partial end
  return res
end

function _M.get(port, path, headers, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.method, o.path, o.headers = "GET", path, headers
  return _M.request(port, o)
end

-- An iterator producing n bytes of `char` (default "x") in 64 KB pieces,
-- for large streamed request bodies:
--   conn:request{ method = "POST", path = "/upload",
--                 headers = { ["Content-Length"] = n },
--                 body = http.source_bytes(n) }
function _M.source_bytes(n, char)
  local block = string.rep(char or "x", RECV_SIZE)
  local remaining = n
  return function()
    if remaining <= 0 then return nil end
    local piece = remaining >= #block and block or block:sub(1, remaining)
    remaining = remaining - #piece
    return piece
  end
end

-- Percent-encodes a string for use in a path segment or query value.
function _M.urlencode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return fmt("%%%02X", c:byte())
  end))
end

return _M
