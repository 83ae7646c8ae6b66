#!/usr/bin/env luajit
-- Mock HTTP/1.1 upstream server for Tollgate integration specs.
--
-- Usage:
--   luajit lua/tollgate/testing/mock_upstream.lua [--port N] [--portfile PATH]
--                                         [--name NAME] [--verbose]
--                                         [--tls-cert FILE --tls-key FILE
--                                          [--tls-ca FILE]]
--
--   --port 0 (the default) picks a free port.  Once listening, the actual
--   port is written to --portfile atomically (PATH.tmp, then rename); without
--   --portfile it is printed on stdout.  --name NAME adds `X-Upstream: NAME`
--   to every response.  Nothing is logged unless --verbose (a Lua error inside
--   a connection handler is a bug of this mock and is always reported on
--   stderr).
--   --tls-cert/--tls-key (PEM files) serve HTTPS instead (LuaSec, server
--   mode, TLS 1.2/1.3): every accepted connection does a TLS handshake
--   first (without blocking the others); a failed handshake just closes it.
--   --tls-ca FILE also requires a client certificate signed by a CA in FILE.
--   Over TLS the JSON echo has tls_sni (the SNI name the client sent, or
--   null) and tls_client (the client certificate's CN, or null).
--
-- One process, one thread: every connection is a coroutine, and a scheduler
-- built on socket.select() resumes it when its socket is readable/writable or
-- its timer expires.  All socket I/O is non-blocking, so a slow or stuck peer
-- never delays the other connections.  socket.select() is limited to
-- FD_SETSIZE (1024) descriptors: connections beyond ~1000 concurrent ones are
-- refused (closed at once).
--
-- Keep-alive (HTTP/1.1 default, HTTP/1.0 with `Connection: keep-alive`) and
-- pipelining are supported; request bodies may use Content-Length or chunked
-- transfer coding; `Expect: 100-continue` is answered with a 100 response.
--
-- Behaviour by request path (the query string is ignored unless stated):
--   /status/NNN          status NNN, body "status NNN" (no body for 204/304;
--                        for 1xx: that interim response, then 200 "status NNN")
--   /slow/MS             wait MS ms (without blocking others), 200 "slow"
--   /bytes/N             200, N bytes of "x", Content-Length, 64 KB writes
--   /chunked/N           200 chunked, N chunks "chunk1\n" .. "chunkN\n";
--                        ?delay=MS waits MS ms before each chunk
--   /close-delimited     HTTP/1.0 200 without Content-Length, body, close
--   /reset-before-head   RST (SO_LINGER 0) without answering
--   /reset-mid-body      head with Content-Length 100000, 1000 bytes, RST
--   /never-answer        read the request, never reply, keep the socket open
--   /partial-head        "HTTP/1.1 200 OK\r\nX-A: b\r\n", then nothing
--   /invalid-response    "garbage\r\n\r\n", then close
--   /close-before-head   read the request, close (FIN) without answering
--   /close-mid-body      head with Content-Length 100000, 1000 bytes, FIN
--   /bad-chunked         200 chunked: one valid chunk ("hello"), then the
--                        invalid size line "zz\r\n"; the socket stays open
--                        until the peer closes
--   /endless-head        "HTTP/1.1 200 OK\r\n", then header lines
--                        ("X-Pad-K: <1000 x>\r\n") without end, as fast as the
--                        peer reads them, until it closes
--   /never-read          read the request head, then neither read the body
--                        nor answer; keep the socket open until the peer
--                        closes (so the peer's writes stall once the socket
--                        buffers are full)
--   /upload              count the request body without storing it,
--                        200 JSON {"received": N}
--   /count               200 JSON {"requests": R, "connections": C,
--                        "rejected": B, "websockets": W, "completed": D}:
--                        requests read so far (this one included), connections
--                        accepted, malformed requests answered 400 (not
--                        counted in R), WebSocket upgrades answered 101,
--                        requests whose body was read to its end (this one
--                        included; a request whose connection closed in the
--                        middle of its body is in R, not in D)
--   /header/NAME/VALUE   200 "ok" with response header NAME: VALUE
--                        (percent-decoded)
--   /headers?N=V&N=V     200 "ok" with each N: V as a response header, in
--                        order, repeats allowed (percent-decoded)
--   /ws                  a WebSocket echo (RFC 6455) when the request is an
--                        upgrade (Upgrade: websocket, Sec-WebSocket-Key):
--                        101, then text/binary/continuation frames are echoed
--                        back (unmasked, same opcode and FIN), ping gets pong,
--                        close gets a close with the same payload and the
--                        connection ends; an unmasked client frame gets close
--                        1002; a text frame "__close__" makes the mock send
--                        close 1000 "bye" and close.  ?hello=1 sends a text
--                        frame with the handshake's JSON echo (as below) right
--                        behind the 101 head, in the same write.  Without
--                        the upgrade headers: the JSON echo (a plain GET).
--   anything else        200 JSON echo: {method, path (full request target),
--                        headers (lower-cased names, repeats joined ", "),
--                        body, body_length, http_version, server_port,
--                        upstream (--name), connection_id,
--                        connection_request (1 for the first request on its
--                        connection, 2 for the next, ...)}
-- A header given through /header or /headers replaces the mock's own header
-- of that name (Content-Type, Content-Length, Connection); a `Connection`
-- value containing "close" makes the mock close after the response.
-- Any path accepts ?close=1: answer with `Connection: close` and close.
-- HEAD requests get the head of the corresponding GET response.

-- tollgate.testing.* from the tree this script is in, whatever the cwd
do
  local lua_dir = arg and arg[0] and arg[0]:match("^(.*)/tollgate/testing/[^/]*$")
  if lua_dir then package.path = lua_dir .. "/?.lua;" .. package.path end
end

local socket = require "socket"
local cjson = require "cjson"
local ffi = require "ffi"
local bit = require "bit"
local ws = require "tollgate.testing.ws"

local arg = arg
local assert = assert
local byte = string.byte
local coroutine = coroutine
local error = error
local io = io
local ipairs = ipairs
local math = math
local os = os
local pairs = pairs
local pcall = pcall
local select = select
local setmetatable = setmetatable
local string = string
local table = table
local tonumber = tonumber
local tostring = tostring

local now = socket.gettime
local yield = coroutine.yield
local concat = table.concat
local insert = table.insert
local remove = table.remove
local fmt = string.format
local min = math.min
local floor = math.floor

local CHUNK_SIZE = 65536
local MAX_HEAD = 65536
local MAX_FD = 1000          -- keep below FD_SETSIZE (1024) for select()
local LINGER_TIMEOUT = 2     -- seconds to drain input on a graceful close

local BYTES_CHUNK = string.rep("x", CHUNK_SIZE)

pcall(ffi.cdef, "int ioctl(int fd, unsigned long request, ...);")
pcall(ffi.cdef, "int setsockopt(int fd, int level, int name, const void *val, unsigned int len);")
pcall(ffi.cdef, "int shutdown(int fd, int how);")
local TIOCOUTQ = 0x5411
local SOL_SOCKET, SO_LINGER, SHUT_WR = 1, 13, 1

local REASONS = {
  [100] = "Continue", [101] = "Switching Protocols", [102] = "Processing",
  [103] = "Early Hints",
  [200] = "OK", [201] = "Created", [202] = "Accepted", [203] = "Non-Authoritative Information",
  [204] = "No Content", [205] = "Reset Content", [206] = "Partial Content",
  [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
  [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [410] = "Gone", [411] = "Length Required", [413] = "Content Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type", [417] = "Expectation Failed",
  [421] = "Misdirected Request", [422] = "Unprocessable Content", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
  [505] = "HTTP Version Not Supported",
}

---------------------------------------------------------------------------
-- options

local opts = { port = 0, verbose = false }
do
  local i = 1
  while arg and i <= #arg do
    local a = arg[i]
    if a == "--port" then
      opts.port = tonumber(arg[i + 1]); i = i + 2
    elseif a == "--portfile" then
      opts.portfile = arg[i + 1]; i = i + 2
    elseif a == "--name" then
      opts.name = arg[i + 1]; i = i + 2
    elseif a == "--verbose" then
      opts.verbose = true; i = i + 1
    elseif a == "--tls-cert" then
      opts.tls_cert = arg[i + 1]; i = i + 2
    elseif a == "--tls-key" then
      opts.tls_key = arg[i + 1]; i = i + 2
    elseif a == "--tls-ca" then
      opts.tls_ca = arg[i + 1]; i = i + 2
    else
      io.stderr:write("mock_upstream: unknown argument ", tostring(a), "\n")
      os.exit(2)
    end
  end
  if not opts.port then
    io.stderr:write("mock_upstream: --port needs a number\n")
    os.exit(2)
  end
  if (opts.tls_cert == nil) ~= (opts.tls_key == nil) then
    io.stderr:write("mock_upstream: --tls-cert and --tls-key go together\n")
    os.exit(2)
  end
end

-- LuaSec's server context (HTTPS mode)
local ssl, tls_ctx
if opts.tls_cert then
  ssl = require "ssl"
  local err
  tls_ctx, err = ssl.newcontext{
    mode = "server", protocol = "any", key = opts.tls_key, certificate = opts.tls_cert,
    options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
    cafile = opts.tls_ca,
    verify = opts.tls_ca and { "peer", "fail_if_no_peer_cert" } or "none",
  }
  if not tls_ctx then
    io.stderr:write("mock_upstream: TLS: ", tostring(err), "\n")
    os.exit(2)
  end
end

-- Socket errors that mean "try again when ready" (LuaSec says wantread /
-- wantwrite where LuaSocket says timeout); returns "r"/"w" or nil.
local function again(err, default)
  if err == "timeout" then return default end
  if err == "wantread" then return "r" end
  if err == "wantwrite" then return "w" end
end

local function log(...)
  if opts.verbose then
    io.stderr:write(fmt("[mock %s %.3f] ", opts.name or "-", now()), fmt(...), "\n")
    io.stderr:flush()
  end
end

local function always_log(...)
  io.stderr:write(fmt("[mock %s %.3f] ", opts.name or "-", now()), fmt(...), "\n")
  io.stderr:flush()
end

---------------------------------------------------------------------------
-- scheduler: coroutines wait for a readable/writable socket and/or a time

local readers = {}   -- socket -> coroutine
local writers = {}   -- socket -> coroutine
local timers = {}    -- sorted array of { at = t, co = co, cancelled = bool }
local waits = {}     -- coroutine -> { set = readers|writers|nil, sock, timer }
local conns = {}     -- coroutine -> connection (for clean-up after a crash)

local function add_timer(at, co)
  local entry = { at = at, co = co }
  local lo, hi = 1, #timers
  while lo <= hi do
    local mid = floor((lo + hi) / 2)
    if timers[mid].at <= at then lo = mid + 1 else hi = mid - 1 end
  end
  insert(timers, lo, entry)
  return entry
end

local resume

-- Called with what a coroutine yielded: ("r"|"w", sock [, deadline]) or
-- ("t", at).
local function park(co, kind, a, b)
  local w = {}
  if kind == "r" then
    readers[a] = co; w.set = readers; w.sock = a
    if b then w.timer = add_timer(b, co) end
  elseif kind == "w" then
    writers[a] = co; w.set = writers; w.sock = a
    if b then w.timer = add_timer(b, co) end
  elseif kind == "t" then
    w.timer = add_timer(a, co)
  else
    error("bad yield " .. tostring(kind))
  end
  waits[co] = w
end

local function wake(co, why)
  local w = waits[co]
  if not w then return end
  waits[co] = nil
  if w.set then w.set[w.sock] = nil end
  if w.timer then w.timer.cancelled = true end
  resume(co, why)
end

local function drop(co)
  local c = conns[co]
  conns[co] = nil
  if c and not c.closed then
    c.closed = true
    c.sock:close()
  end
end

resume = function(co, ...)
  local ok, kind, a, b = coroutine.resume(co, ...)
  if not ok then
    always_log("connection handler error: %s", tostring(kind))
    drop(co)
  elseif coroutine.status(co) == "dead" then
    drop(co)
  else
    park(co, kind, a, b)
  end
end

-- Inside a coroutine: wait for `sock` readable ("r") or writable ("w"),
-- optionally until `deadline`; returns "ready" or "timeout".
local function wait_io(kind, sock, deadline)
  return yield(kind, sock, deadline)
end

local function sleep_until(at)
  return yield("t", at)
end

---------------------------------------------------------------------------
-- connection I/O helpers (run inside the connection coroutine)

local stats = { requests = 0, connections = 0, rejected = 0, websockets = 0, completed = 0 }
local server_port

local Conn = {}
Conn.__index = Conn

-- Reads whatever is available into self.buf; waits when nothing is.
-- Returns true, or nil and "closed" / a socket error.
function Conn:fill()
  while true do
    local data, err, partial = self.sock:receive(CHUNK_SIZE)
    data = data or partial
    if data and #data > 0 then
      self.buf = self.buf .. data
      return true
    end
    local kind = again(err, "r")
    if not kind then return nil, err end
    wait_io(kind, self.sock)
  end
end

-- Returns the next line (without CRLF/LF) or nil, err.
function Conn:read_line(limit)
  limit = limit or 8192
  local from = 1
  while true do
    local pos = self.buf:find("\n", from, true)
    if pos then
      local line = self.buf:sub(1, pos - 1)
      self.buf = self.buf:sub(pos + 1)
      if line:sub(-1) == "\r" then line = line:sub(1, -2) end
      return line
    end
    if #self.buf > limit then return nil, "line too long" end
    from = #self.buf + 1
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Reads exactly n bytes, handing pieces to sink(piece).
function Conn:read_n(n, sink)
  local remaining = n
  if #self.buf > 0 then
    local take = min(#self.buf, remaining)
    sink(self.buf:sub(1, take))
    self.buf = self.buf:sub(take + 1)
    remaining = remaining - take
  end
  while remaining > 0 do
    local data, err, partial = self.sock:receive(min(remaining, CHUNK_SIZE))
    data = data or partial
    if data and #data > 0 then
      sink(data)
      remaining = remaining - #data
    elseif again(err, "r") then
      wait_io(again(err, "r"), self.sock)
    else
      return nil, err
    end
  end
  return true
end

function Conn:send_all(data)
  local i, n = 1, #data
  while i <= n do
    local last, err, partial = self.sock:send(data, i)
    if last then
      i = last + 1
    elseif again(err, "w") then
      i = partial + 1
      if i <= n then wait_io(again(err, "w"), self.sock) end
    else
      return nil, err
    end
  end
  return true
end

-- Send RST instead of FIN.
function Conn:reset()
  if self.closed then return end
  if self.tls then
    local l = ffi.new("int[2]", 1, 0) -- struct linger { l_onoff = 1, l_linger = 0 }
    ffi.C.setsockopt(self.sock:getfd(), SOL_SOCKET, SO_LINGER, l, 8)
  else
    self.sock:setoption("linger", { on = true, timeout = 0 })
  end
  self.sock:close()
  self.closed = true
  log("conn %d: reset", self.id)
end

-- Waits (bounded) until the kernel has no unacknowledged output left, so a
-- following RST does not discard data that was already "sent".
function Conn:wait_output_drained(timeout)
  local fd = self.sock:getfd()
  local outq = ffi.new("int[1]")
  local deadline = now() + timeout
  while now() < deadline do
    if ffi.C.ioctl(fd, TIOCOUTQ, outq) ~= 0 or outq[0] == 0 then return end
    sleep_until(now() + 0.001)
  end
end

-- Graceful close: FIN, then discard input until the peer closes (bounded),
-- so unread pipelined requests do not turn our close into a RST.
function Conn:graceful_close()
  if self.closed then return end
  if self.tls then
    -- LuaSec has no half-close: a FIN without close_notify (an EOF to the peer)
    ffi.C.shutdown(self.sock:getfd(), SHUT_WR)
  else
    self.sock:shutdown("send")
  end
  local deadline = now() + LINGER_TIMEOUT
  self.buf = ""
  while true do
    local data, err, partial = self.sock:receive(CHUNK_SIZE)
    data = data or partial
    if not (data and #data > 0) then
      local kind = again(err, "r")
      if not kind then break end
      if wait_io(kind, self.sock, deadline) == "timeout" then break end
    end
  end
  self.sock:close()
  self.closed = true
  log("conn %d: closed", self.id)
end

-- Keep the connection open without answering: discard input until the peer
-- closes.
function Conn:idle_until_peer_closes()
  self.buf = ""
  while true do
    local data, err, partial = self.sock:receive(CHUNK_SIZE)
    data = data or partial
    if not (data and #data > 0) then
      local kind = again(err, "r")
      if not kind then break end
      wait_io(kind, self.sock)
    end
  end
  self.sock:close()
  self.closed = true
  log("conn %d: peer closed idle connection", self.id)
end

---------------------------------------------------------------------------
-- HTTP helpers

local function url_decode(s)
  s = s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
  return s
end

local function parse_query(q)
  local list = {}
  if not q then return list end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    list[#list + 1] = { url_decode((k:gsub("%+", " "))), url_decode((v:gsub("%+", " "))) }
  end
  return list
end

local function query_get(q, name)
  for _, kv in ipairs(parse_query(q)) do
    if kv[1] == name then return kv[2] end
  end
end

local function trim(s)
  return (s:gsub("^[ \t]+", ""):gsub("[ \t]+$", ""))
end

-- Reads one request head.  Returns req, or nil and "closed" (clean EOF before
-- a request), or nil, "bad", status (answer with status and close).
local function read_head(conn)
  -- skip empty lines between requests (RFC 9112 2.2)
  local line, err
  repeat
    line, err = conn:read_line(MAX_HEAD)
    if not line then
      if err == "line too long" then return nil, "bad", 414 end
      return nil, "closed"
    end
  until line ~= ""
  local method, target, major, minor = line:match("^(%u+) (%S+) HTTP/(%d)%.(%d)$")
  if not method then return nil, "bad", 400 end
  local req = {
    method = method, target = target, version = major .. "." .. minor,
    headers = {}, header_list = {},
  }
  local size = #line
  while true do
    line, err = conn:read_line(MAX_HEAD)
    if not line then
      if err == "line too long" then return nil, "bad", 431 end
      return nil, "closed"
    end
    size = size + #line + 2
    if size > MAX_HEAD then return nil, "bad", 431 end
    if line == "" then break end
    if line:find("^[ \t]") then
      -- obsolete line folding: append to the previous field
      local last = req.header_list[#req.header_list]
      if not last then return nil, "bad", 400 end
      last[2] = last[2] .. " " .. trim(line)
    else
      local name, value = line:match("^([^:%s]+):(.*)$")
      if not name then return nil, "bad", 400 end
      req.header_list[#req.header_list + 1] = { name, trim(value) }
    end
  end
  for _, h in ipairs(req.header_list) do
    local k = h[1]:lower()
    if req.headers[k] then
      req.headers[k] = req.headers[k] .. ", " .. h[2]
    else
      req.headers[k] = h[2]
    end
  end
  -- routing path: strip absolute-form scheme://authority and the query
  local path = target:gsub("^%a[%w+.-]*://[^/]*", "")
  if path == "" then path = "/" end
  req.path, req.query = path:match("^([^?]*)%??(.*)$")
  if req.query == "" then req.query = nil end
  return req
end

local function header_has_token(value, token)
  if not value then return false end
  for t in value:gmatch("[^,]+") do
    if trim(t):lower() == token then return true end
  end
  return false
end

-- Reads the request body into sink; returns true or nil, err|"bad", status.
local function read_body(conn, req, sink)
  local te = req.headers["transfer-encoding"]
  local cl = req.headers["content-length"]
  if te then
    local last
    for t in te:gmatch("[^,]+") do last = trim(t):lower() end
    if last ~= "chunked" then return nil, "bad", 400 end
    req.chunked = true
    req.close = req.close or cl ~= nil
    while true do
      local line, err = conn:read_line(4096)
      if not line then return nil, err end
      local hex = line:match("^%s*(%x+)%s*[;]?")
      if not hex or #hex > 15 then return nil, "bad", 400 end
      local size = tonumber(hex, 16)
      if size == 0 then
        -- trailer section
        while true do
          line, err = conn:read_line(MAX_HEAD)
          if not line then return nil, err end
          if line == "" then break end
        end
        return true
      end
      local ok
      ok, err = conn:read_n(size, sink)
      if not ok then return nil, err end
      line, err = conn:read_line(16)
      if not line then return nil, err end
      if line ~= "" then return nil, "bad", 400 end
    end
  elseif cl then
    local n
    for v in cl:gmatch("[^,]+") do
      local this = trim(v)
      if not this:match("^%d+$") or (n and tonumber(this) ~= n) then
        return nil, "bad", 400
      end
      n = tonumber(this)
    end
    if not n then return nil, "bad", 400 end
    return conn:read_n(n, sink)
  end
  return true
end

local function wants_close(req)
  local c = req.headers and req.headers["connection"]
  if header_has_token(c, "close") then return true end
  if req.version == "1.0" and not header_has_token(c, "keep-alive") then return true end
  if req.query and query_get(req.query, "close") == "1" then return true end
  return req.close or false
end

-- Builds a response head.  `headers` is a list of {name, value} set by the
-- behaviour; `auto` a list of {name, value} added unless `headers` already
-- has that name.  Returns head, keep_alive.
local function build_head(req, status, headers, auto, version)
  local lines = { fmt("HTTP/%s %d %s", version or "1.1", status, REASONS[status] or "Unknown") }
  local seen = {}
  local close = req and wants_close(req) or false
  for _, h in ipairs(headers or {}) do
    lines[#lines + 1] = h[1] .. ": " .. h[2]
    local k = h[1]:lower()
    seen[k] = true
    if k == "connection" and header_has_token(h[2], "close") then close = true end
  end
  if opts.name and not seen["x-upstream"] then
    lines[#lines + 1] = "X-Upstream: " .. opts.name
  end
  for _, h in ipairs(auto or {}) do
    if not seen[h[1]:lower()] then lines[#lines + 1] = h[1] .. ": " .. h[2] end
  end
  if not seen["connection"] then
    if close then
      lines[#lines + 1] = "Connection: close"
    elseif req and req.version == "1.0" then
      lines[#lines + 1] = "Connection: keep-alive"
    end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ""
  return concat(lines, "\r\n"), not close
end

local function no_body_status(status)
  return status < 200 or status == 204 or status == 304
end

-- Sends a complete response with a Content-Length body.  Returns keep_alive.
local function respond(conn, req, status, body, headers, content_type)
  body = body or ""
  local auto = {}
  if not no_body_status(status) then
    auto[#auto + 1] = { "Content-Type", content_type or "text/plain" }
    auto[#auto + 1] = { "Content-Length", tostring(#body) }
  end
  local head, keep = build_head(req, status, headers, auto)
  if req.method == "HEAD" or no_body_status(status) then body = "" end
  if not conn:send_all(head .. body) then return false end
  return keep
end

local function fmt_int(n)
  return fmt("%.0f", n)
end

---------------------------------------------------------------------------
-- behaviours: each returns true to keep the connection alive

local handlers = {}

function handlers.echo(conn, req)
  local obj = {
    method = req.method,
    path = req.target,
    headers = req.headers,
    body = req.body,
    body_length = #req.body,
    http_version = req.version,
    server_port = server_port,
    upstream = opts.name,
    connection_id = conn.id,
    connection_request = conn.requests,
  }
  if conn.tls then
    obj.tls_sni = conn.sock:getsniname() or cjson.null
    obj.tls_client = cjson.null
    local peer = conn.sock:getpeercertificate()
    if peer then
      for _, e in ipairs(peer:subject()) do
        if e.name == "commonName" then obj.tls_client = e.value end
      end
    end
  end
  return respond(conn, req, 200, cjson.encode(obj), nil, "application/json")
end

function handlers.status(conn, req, code)
  code = tonumber(code)
  if code < 100 or code > 999 then return handlers.echo(conn, req) end
  if code < 200 then
    local interim = fmt("HTTP/1.1 %d %s\r\n\r\n", code, REASONS[code] or "Unknown")
    if not conn:send_all(interim) then return false end
    return respond(conn, req, 200, "status " .. code)
  end
  return respond(conn, req, code, "status " .. code)
end

function handlers.slow(conn, req, ms)
  sleep_until(now() + tonumber(ms) / 1000)
  return respond(conn, req, 200, "slow")
end

function handlers.bytes(conn, req, n)
  n = tonumber(n)
  local head, keep = build_head(req, 200, nil, {
    { "Content-Type", "application/octet-stream" },
    { "Content-Length", fmt_int(n) },
  })
  if not conn:send_all(head) then return false end
  if req.method == "HEAD" then return keep end
  local remaining = n
  while remaining > 0 do
    local piece = remaining >= CHUNK_SIZE and BYTES_CHUNK or BYTES_CHUNK:sub(1, remaining)
    if not conn:send_all(piece) then return false end
    remaining = remaining - #piece
  end
  return keep
end

function handlers.chunked(conn, req, n)
  n = tonumber(n)
  local delay = tonumber(req.query and query_get(req.query, "delay") or nil)
  local head, keep = build_head(req, 200, nil, {
    { "Content-Type", "text/plain" },
    { "Transfer-Encoding", "chunked" },
  })
  if not conn:send_all(head) then return false end
  if req.method == "HEAD" then return keep end
  local pending, size = {}, 0
  for k = 1, n do
    if delay then sleep_until(now() + delay / 1000) end
    local data = "chunk" .. k .. "\n"
    pending[#pending + 1] = fmt("%x\r\n%s\r\n", #data, data)
    size = size + #data + 8
    if delay or size >= CHUNK_SIZE then
      if not conn:send_all(concat(pending)) then return false end
      pending, size = {}, 0
    end
  end
  pending[#pending + 1] = "0\r\n\r\n"
  if not conn:send_all(concat(pending)) then return false end
  return keep
end

function handlers.close_delimited(conn, req)
  local lines = { "HTTP/1.0 200 OK", "Content-Type: text/plain" }
  if opts.name then lines[#lines + 1] = "X-Upstream: " .. opts.name end
  lines[#lines + 1] = "Connection: close"
  local head = concat(lines, "\r\n") .. "\r\n\r\n"
  local body = req.method == "HEAD" and "" or "close-delimited body\n"
  conn:send_all(head .. body)
  conn:graceful_close()
  return false
end

function handlers.reset_before_head(conn)
  conn:reset()
  return false
end

function handlers.reset_mid_body(conn, req)
  local head = build_head(req, 200, nil, {
    { "Content-Type", "application/octet-stream" },
    { "Content-Length", "100000" },
  })
  if conn:send_all(head .. BYTES_CHUNK:sub(1, 1000)) then
    conn:wait_output_drained(2)
  end
  conn:reset()
  return false
end

function handlers.never_answer(conn)
  conn:idle_until_peer_closes()
  return false
end

function handlers.partial_head(conn)
  if conn:send_all("HTTP/1.1 200 OK\r\nX-A: b\r\n") then
    conn:idle_until_peer_closes()
  end
  return false
end

function handlers.invalid_response(conn)
  conn:send_all("garbage\r\n\r\n")
  conn:graceful_close()
  return false
end

function handlers.close_before_head(conn)
  conn:graceful_close()
  return false
end

function handlers.close_mid_body(conn, req)
  local head = build_head(req, 200, nil, {
    { "Content-Type", "application/octet-stream" },
    { "Content-Length", "100000" },
  })
  conn:send_all(head .. BYTES_CHUNK:sub(1, 1000))
  conn:graceful_close()
  return false
end

function handlers.bad_chunked(conn, req)
  local head = build_head(req, 200, nil, {
    { "Content-Type", "text/plain" },
    { "Transfer-Encoding", "chunked" },
  })
  if conn:send_all(head .. "5\r\nhello\r\nzz\r\n") then
    conn:idle_until_peer_closes()
  end
  return false
end

function handlers.endless_head(conn)
  if not conn:send_all("HTTP/1.1 200 OK\r\n") then return false end
  local pad = string.rep("x", 1000)
  local k = 0
  while true do
    k = k + 1
    if not conn:send_all(fmt("X-Pad-%d: %s\r\n", k, pad)) then break end
  end
  conn.sock:close()
  conn.closed = true
  return false
end

pcall(ffi.cdef, "struct mock_pollfd { int fd; short events; short revents; };")
pcall(ffi.cdef, "int poll(struct mock_pollfd *fds, unsigned long n, int timeout);")
local POLLERR, POLLHUP, POLLRDHUP = 0x8, 0x10, 0x2000

-- Called before the body is read: the body stays unread (in the socket
-- buffers) until the peer gives up.
function handlers.never_read(conn)
  local pfd = ffi.new("struct mock_pollfd[1]")
  pfd[0].fd = conn.sock:getfd()
  pfd[0].events = POLLRDHUP
  while true do
    pfd[0].revents = 0
    if ffi.C.poll(pfd, 1, 0) ~= 0 and
       bit.band(pfd[0].revents, POLLRDHUP + POLLHUP + POLLERR) ~= 0 then
      break
    end
    sleep_until(now() + 0.02)
  end
  conn.sock:close()
  conn.closed = true
  log("conn %d: peer closed a never-read connection", conn.id)
  return false
end

function handlers.upload(conn, req)
  return respond(conn, req, 200, cjson.encode({ received = req.body_length }), nil,
                 "application/json")
end

function handlers.count(conn, req)
  return respond(conn, req, 200, cjson.encode({
    requests = stats.requests, connections = stats.connections,
    rejected = stats.rejected, websockets = stats.websockets, completed = stats.completed,
  }), nil, "application/json")
end

-- WebSocket echo (see the top of this file).
local function read_bytes(conn, n)
  local pieces = {}
  local ok, err = conn:read_n(n, function(p) pieces[#pieces + 1] = p end)
  if not ok then return nil, err end
  return concat(pieces)
end

local function ws_echo(conn)
  while true do
    local h = read_bytes(conn, 2)
    if not h then return end
    local fin, opcode, masked, len = ws.decode_head(byte(h, 1), byte(h, 2))
    if len >= 126 then
      local ext = read_bytes(conn, len == 126 and 2 or 8)
      if not ext then return end
      len = ws.be_number(ext)
    end
    local key
    if masked then
      key = read_bytes(conn, 4)
      if not key then return end
    end
    local payload = len > 0 and read_bytes(conn, len) or ""
    if not payload then return end
    if not masked then
      log("conn %d: websocket: unmasked frame", conn.id)
      conn:send_all(ws.encode_frame(8, ws.close_payload(1002, "frame not masked")))
      return
    end
    payload = ws.apply_mask(payload, key)
    log("conn %d: websocket: opcode %d, %d bytes", conn.id, opcode, #payload)
    if opcode == 8 then
      conn:send_all(ws.encode_frame(8, payload))
      return
    elseif opcode == 9 then
      if not conn:send_all(ws.encode_frame(10, payload)) then return end
    elseif opcode == 1 and payload == "__close__" then
      conn:send_all(ws.encode_frame(8, ws.close_payload(1000, "bye")))
      return
    elseif opcode <= 2 then
      if not conn:send_all(ws.encode_frame(opcode, payload, { fin = fin })) then return end
    end
  end
end

function handlers.ws(conn, req)
  local key = req.headers["sec-websocket-key"]
  if not (key and header_has_token(req.headers["upgrade"], "websocket")) then
    return handlers.echo(conn, req)
  end
  stats.websockets = stats.websockets + 1
  local head = build_head(nil, 101, {
    { "Upgrade", "websocket" },
    { "Connection", "Upgrade" },
    { "Sec-WebSocket-Accept", ws.accept_key(key) },
  })
  local hello = ""
  if req.query and query_get(req.query, "hello") == "1" then
    hello = ws.encode_frame(1, cjson.encode({
      path = req.target, headers = req.headers, upstream = opts.name,
      connection_id = conn.id,
    }))
  end
  if not conn:send_all(head .. hello) then return false end
  ws_echo(conn)
  if not conn.closed then conn:graceful_close() end
  return false
end

function handlers.header(conn, req, name, value)
  return respond(conn, req, 200, "ok", { { url_decode(name), url_decode(value) } })
end

function handlers.headers(conn, req)
  return respond(conn, req, 200, "ok", parse_query(req.query))
end

local routes = {
  { "^/status/(%d%d%d)$", handlers.status },
  { "^/slow/(%d+)$", handlers.slow },
  { "^/bytes/(%d+)$", handlers.bytes },
  { "^/chunked/(%d+)$", handlers.chunked },
  { "^/close%-delimited$", handlers.close_delimited },
  { "^/reset%-before%-head$", handlers.reset_before_head },
  { "^/reset%-mid%-body$", handlers.reset_mid_body },
  { "^/never%-answer$", handlers.never_answer },
  { "^/partial%-head$", handlers.partial_head },
  { "^/invalid%-response$", handlers.invalid_response },
  { "^/close%-before%-head$", handlers.close_before_head },
  { "^/close%-mid%-body$", handlers.close_mid_body },
  { "^/bad%-chunked$", handlers.bad_chunked },
  { "^/endless%-head$", handlers.endless_head },
  { "^/never%-read$", handlers.never_read },
  { "^/upload$", handlers.upload },
  { "^/count$", handlers.count },
  { "^/header/([^/]+)/(.*)$", handlers.header },
  { "^/headers$", handlers.headers },
  { "^/ws$", handlers.ws },
}

local function route(path)
  for _, r in ipairs(routes) do
    local c1, c2 = path:match(r[1])
    if c1 then return r[2], c1, c2 end
  end
  return handlers.echo
end

---------------------------------------------------------------------------
-- connection loop

-- TLS: the server handshake, without blocking the other connections.
local function tls_handshake(conn)
  while true do
    local ok, err = conn.sock:dohandshake()
    if ok then return true end
    local kind = again(err, "r")
    if not kind then
      log("conn %d: TLS handshake failed: %s", conn.id, tostring(err))
      conn.sock:close(); conn.closed = true
      return false
    end
    wait_io(kind, conn.sock)
  end
end

local function serve(conn)
  if conn.tls and not tls_handshake(conn) then return end
  while not conn.closed do
    local req, err, status = read_head(conn)
    if not req then
      if err == "bad" then
        stats.rejected = stats.rejected + 1
        respond(conn, { method = "GET", headers = {}, close = true }, status, "bad request")
        conn:graceful_close()
      else
        conn.sock:close(); conn.closed = true
        log("conn %d: closed by peer", conn.id)
      end
      return
    end
    stats.requests = stats.requests + 1
    conn.requests = conn.requests + 1
    log("conn %d: %s %s HTTP/%s", conn.id, req.method, req.target, req.version)
    local handler, c1, c2 = route(req.path)
    if handler == handlers.never_read then
      handler(conn, req)
      return
    end

    if req.headers["expect"] and req.headers["expect"]:lower() == "100-continue"
       and (req.headers["content-length"] or req.headers["transfer-encoding"]) then
      if not conn:send_all("HTTP/1.1 100 Continue\r\n\r\n") then return end
    end

    local pieces, count = {}, 0
    local sink
    if handler == handlers.upload then
      sink = function(p) count = count + #p end
    else
      sink = function(p) count = count + #p; pieces[#pieces + 1] = p end
    end
    local ok, berr, bstatus = read_body(conn, req, sink)
    if not ok then
      if berr == "bad" then
        stats.rejected = stats.rejected + 1
        req.close = true
        respond(conn, req, bstatus, "bad request")
        conn:graceful_close()
      else
        conn.sock:close(); conn.closed = true
      end
      return
    end
    req.body = concat(pieces)
    req.body_length = count
    stats.completed = stats.completed + 1

    local keep = handler(conn, req, c1, c2)
    if not keep then
      if not conn.closed then conn:graceful_close() end
      return
    end
  end
end

---------------------------------------------------------------------------
-- main

-- socket.bind() sets SO_REUSEADDR, binds and listens
local server, err = socket.bind("127.0.0.1", opts.port, 1024)
if not server then
  io.stderr:write("mock_upstream: bind failed: ", tostring(err), "\n")
  os.exit(1)
end
server:settimeout(0)
server_port = select(2, server:getsockname())
server_port = tonumber(server_port)

if opts.portfile then
  local tmp = opts.portfile .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(tostring(server_port), "\n")
  f:close()
  assert(os.rename(tmp, opts.portfile))
else
  io.stdout:write(tostring(server_port), "\n")
  io.stdout:flush()
end
log("listening on %s://127.0.0.1:%d", tls_ctx and "https" or "http", server_port)

local next_id = 0

local function accept_all()
  while true do
    local client = server:accept()
    if not client then return end
    stats.connections = stats.connections + 1
    if client:getfd() >= MAX_FD then
      always_log("too many connections (fd %d), closing", client:getfd())
      client:close()
    else
      client:settimeout(0)
      client:setoption("tcp-nodelay", true)
      next_id = next_id + 1
      local conn = setmetatable({ sock = client, buf = "", id = next_id, requests = 0 }, Conn)
      local ok = true
      if tls_ctx then
        local wrapped, werr = ssl.wrap(client, tls_ctx)
        if wrapped then
          wrapped:settimeout(0)
          conn.sock, conn.tls = wrapped, true
        else
          always_log("conn %d: ssl.wrap failed: %s", conn.id, tostring(werr))
          client:close()
          ok = false
        end
      end
      if ok then
        log("conn %d: accepted", conn.id)
        local co = coroutine.create(serve)
        conns[co] = conn
        resume(co, conn)
      end
    end
  end
end

while true do
  local rl, wl = { server }, {}
  for s in pairs(readers) do rl[#rl + 1] = s end
  for s in pairs(writers) do wl[#wl + 1] = s end
  local timeout
  while timers[1] and timers[1].cancelled do remove(timers, 1) end
  if timers[1] then timeout = math.max(0, timers[1].at - now()) end
  local r, w = socket.select(rl, wl, timeout)
  for _, s in ipairs(r or {}) do
    if s == server then
      accept_all()
    else
      local co = readers[s]
      if co then wake(co, "ready") end
    end
  end
  for _, s in ipairs(w or {}) do
    local co = writers[s]
    if co then wake(co, "ready") end
  end
  local t = now()
  while timers[1] and (timers[1].cancelled or timers[1].at <= t) do
    local e = remove(timers, 1)
    if not e.cancelled then wake(e.co, "timeout") end
  end
end
