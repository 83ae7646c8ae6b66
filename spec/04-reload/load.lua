#!/usr/bin/env luajit
-- A steady HTTP load for the reload specs and bench/reload.sh: keep-alive
-- connections each sending requests back to back, plus connections opened
-- for one request each, all at once in one process (non-blocking sockets,
-- poll(2) through the FFI), counting every way a request can be lost.
--
--   luajit spec/04-reload/load.lua --port P [--host 127.0.0.1]
--       [--keepalive 4] [--fresh 2] [--path /echo] [--timeout 5]
--       --stopfile FILE --out FILE [--progress FILE] [--max-seconds 120]
--
-- It runs until FILE named by --stopfile exists (or --max-seconds passes,
-- a safety bound), lets the requests in flight finish (each within
-- --timeout), then writes a JSON summary to --out:
--   { requests, ok, non2xx, failed, resets, reconnects, keepalive_requests,
--     fresh_requests, statuses = { ["200"] = n, ... }, errors = { first 20 } }
--   requests  requests sent
--   ok        complete 2xx responses
--   non2xx    complete responses with another status
--   failed    requests without a complete response (reset, closed early,
--             timeout, connect or send error)
--   resets    of those, the ones ended by a connection reset (ECONNRESET,
--             EPIPE) or a refused connection
-- --progress FILE is rewritten about every 100 ms with "responses failed\n",
-- so a caller can wait for the load to be flowing.
--
-- Keep-alive connections send `GET PATH/ka` and reconnect only when the
-- gateway says Connection: close (maxKeepaliveRequests); the others send
-- `GET PATH/new` with Connection: close and read until the gateway closes.

local ffi = require "ffi"
local bit = require "bit"
local socket = require "socket"
local cjson = require "cjson"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../support/?.lua;" .. package.path
local rawsock = require "rawsock"

local C = rawsock.C
local SOL_SOCKET, SO_ERROR = rawsock.SOL_SOCKET, rawsock.SO_ERROR
local MSG_NOSIGNAL, MSG_DONTWAIT = rawsock.MSG_NOSIGNAL, rawsock.MSG_DONTWAIT
local POLLIN, POLLOUT, POLLERR, POLLHUP = rawsock.POLLIN, rawsock.POLLOUT, rawsock.POLLERR,
  rawsock.POLLHUP
local EINTR, EAGAIN = rawsock.EINTR, rawsock.EAGAIN
local ECONNRESET, EPIPE, ECONNREFUSED = rawsock.ECONNRESET, rawsock.EPIPE, rawsock.ECONNREFUSED
local strerror, exists, write_atomic = rawsock.strerror, rawsock.exists, rawsock.write_atomic

local args = rawsock.args(arg, "load.lua")
local PORT = assert(tonumber(args.port), "--port N required")
local HOST = args.host or "127.0.0.1"
local NKEEP = tonumber(args.keepalive or 4)
local NFRESH = tonumber(args.fresh or 2)
local PATH = args.path or "/echo"
local TIMEOUT = tonumber(args.timeout or 5)
local STOPFILE = assert(args.stopfile, "--stopfile FILE required")
local OUT = assert(args.out, "--out FILE required")
local PROGRESS = args.progress
local MAX_SECONDS = tonumber(args["max-seconds"] or 120)

local now = socket.gettime

local addr = rawsock.address(HOST, PORT)

local stats = { requests = 0, ok = 0, non2xx = 0, failed = 0, resets = 0, reconnects = 0,
  keepalive_requests = 0, fresh_requests = 0, statuses = {}, errors = {} }

local function note_error(kind, msg)
  if #stats.errors < 20 then
    stats.errors[#stats.errors + 1] = ("%.3f %s: %s"):format(now(), kind, msg)
  end
end

local BUF_SIZE = 65536
local rbuf = ffi.new("char[?]", BUF_SIZE)

-- A client slot: one connection at a time, one request at a time.
--   state: "connecting", "sending", "reading", "idle" (no socket)
local Slot = {}
Slot.__index = Slot

local function new_slot(kind)
  return setmetatable({ kind = kind, fd = -1, state = "idle" }, Slot)
end

function Slot:close()
  if self.fd >= 0 then C.close(self.fd) end
  self.fd = -1
  self.state = "idle"
end

function Slot:fail(err, reset)
  if self.in_flight then
    stats.failed = stats.failed + 1
    if reset then stats.resets = stats.resets + 1 end
    note_error(self.kind, err)
  end
  self.in_flight = false
  self:close()
end

function Slot:open()
  local fd, connected, step = rawsock.connect(addr)
  if not fd then
    local e = connected
    self.in_flight = true
    return self:fail(step .. ": " .. strerror(e), e == ECONNREFUSED or e == ECONNRESET)
  end
  self.fd = fd
  self.state = connected and "sending" or "connecting"
end

function Slot:start_request()
  if self.fd < 0 then
    self:open()
    if self.fd < 0 then return end
    if self.kind == "ka" and self.used then stats.reconnects = stats.reconnects + 1 end
  end
  self.used = true
  if self.kind == "ka" then
    self.out = "GET " .. PATH .. "/ka HTTP/1.1\r\nHost: load\r\n\r\n"
    stats.keepalive_requests = stats.keepalive_requests + 1
  else
    self.out = "GET " .. PATH .. "/new HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n"
    stats.fresh_requests = stats.fresh_requests + 1
  end
  stats.requests = stats.requests + 1
  self.in_flight = true
  self.deadline = now() + TIMEOUT
  self.inbuf = ""
  self.res = nil
  if self.state ~= "connecting" then self.state = "sending" end
end

function Slot:do_send()
  while #self.out > 0 do
    local n = tonumber(C.send(self.fd, self.out, #self.out, MSG_NOSIGNAL))
    if n < 0 then
      local e = ffi.errno()
      if e == EAGAIN then return end
      if e ~= EINTR then
        return self:fail("send: " .. strerror(e), e == EPIPE or e == ECONNRESET)
      end
    else
      self.out = self.out:sub(n + 1)
    end
  end
  self.state = "reading"
end

-- Parses what has arrived; returns true when the response is complete.
function Slot:parse(eof)
  local res = self.res
  if not res then
    local head_end = self.inbuf:find("\r\n\r\n", 1, true)
    if not head_end then return false end
    local head = self.inbuf:sub(1, head_end - 1)
    self.inbuf = self.inbuf:sub(head_end + 4)
    local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
    if not status then return nil, "invalid response head: " .. head:sub(1, 80) end
    res = { status = status, headers = {} }
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
      res.headers[name:lower()] = value
    end
    local te = res.headers["transfer-encoding"]
    if te and te:lower():find("chunked") then
      res.framing = "chunked"
    elseif res.headers["content-length"] then
      res.framing, res.left = "length", tonumber(res.headers["content-length"])
    else
      res.framing = "close"
    end
    self.res = res
  end
  if res.framing == "length" then
    local take = math.min(res.left, #self.inbuf)
    res.left = res.left - take
    self.inbuf = self.inbuf:sub(take + 1)
    return res.left == 0
  elseif res.framing == "chunked" then
    while true do
      if res.chunk_left and res.chunk_left > 0 then
        local take = math.min(res.chunk_left, #self.inbuf)
        res.chunk_left = res.chunk_left - take
        self.inbuf = self.inbuf:sub(take + 1)
        if res.chunk_left > 0 then return false end
      end
      if res.chunk_left == 0 then -- CRLF after the data
        if #self.inbuf < 2 then return false end
        self.inbuf = self.inbuf:sub(3)
        res.chunk_left = nil
      end
      if res.trailers then
        local e = self.inbuf:find("\r\n", 1, true)
        if not e then return false end
        local line = self.inbuf:sub(1, e - 1)
        self.inbuf = self.inbuf:sub(e + 2)
        if line == "" then return true end
      else
        local e = self.inbuf:find("\r\n", 1, true)
        if not e then return false end
        local size = tonumber(self.inbuf:match("^(%x+)"), 16)
        if not size then return nil, "bad chunk size" end
        self.inbuf = self.inbuf:sub(e + 2)
        if size == 0 then res.trailers = true else res.chunk_left = size end
      end
    end
  else
    return eof
  end
end

function Slot:finish()
  local res = self.res
  self.in_flight = false
  local st = tostring(res.status)
  stats.statuses[st] = (stats.statuses[st] or 0) + 1
  if res.status >= 200 and res.status < 300 then
    stats.ok = stats.ok + 1
  else
    stats.non2xx = stats.non2xx + 1
    note_error(self.kind, "status " .. st)
  end
  local conn = (res.headers.connection or ""):lower()
  if self.kind ~= "ka" or conn:find("close") or res.framing == "close" then
    self:close()
  else
    self.state = "idle-open"
  end
end

function Slot:do_recv()
  while true do
    local n = tonumber(C.recv(self.fd, rbuf, BUF_SIZE, MSG_DONTWAIT))
    if n > 0 then
      self.inbuf = self.inbuf .. ffi.string(rbuf, n)
    elseif n == 0 then
      if self.kind == "fresh" and self.res and not self.in_flight then
        return self:close() -- the gateway closed after answering: expected
      end
      local done, err = self:parse(true)
      if done then self:finish(); return self:close() end
      return self:fail(err or ("closed by the gateway before the response was complete" ..
        (self.res and " (status " .. self.res.status .. ")" or " (no response)")))
    else
      local e = ffi.errno()
      if e == EAGAIN then break end
      if e ~= EINTR then
        return self:fail("recv: " .. strerror(e), e == ECONNRESET)
      end
    end
  end
  if self.in_flight then
    local done, err = self:parse(false)
    if done == nil then return self:fail(err) end
    if done then
      self:finish()
      -- fresh: wait for the gateway to close (it said Connection: close)
      if self.kind == "fresh" and self.fd >= 0 then self.state = "draining" end
    end
  end
end

local slots = {}
for _ = 1, NKEEP do slots[#slots + 1] = new_slot("ka") end
for _ = 1, NFRESH do slots[#slots + 1] = new_slot("fresh") end

local started = now()
local stopping = false
local last_progress, last_check = 0, 0
local pfds = rawsock.pollfds(#slots)

while true do
  local t = now()
  if not stopping and (t - last_check > 0.01) then
    last_check = t
    if exists(STOPFILE) or t - started > MAX_SECONDS then stopping = true end
  end
  -- start new requests
  local busy = 0
  for _, s in ipairs(slots) do
    if not s.in_flight and s.state ~= "draining" then
      if stopping then
        if s.fd >= 0 then s:close() end
      else
        if s.state == "idle-open" then s.state = "sending" end
        s:start_request()
      end
    end
    if s.in_flight or s.state == "draining" then busy = busy + 1 end
  end
  if stopping and busy == 0 then break end
  -- poll
  local n = 0
  local map = {}
  for _, s in ipairs(slots) do
    if s.fd >= 0 then
      pfds[n].fd = s.fd
      pfds[n].events = (s.state == "connecting" or s.state == "sending") and POLLOUT or POLLIN
      pfds[n].revents = 0
      map[n] = s
      n = n + 1
    end
  end
  if n > 0 then C.poll(pfds, n, 10) end
  t = now()
  for i = 0, n - 1 do
    local s, re = map[i], pfds[i].revents
    if re ~= 0 then
      if s.state == "connecting" then
        local errv = ffi.new("int[1]")
        local len = ffi.new("unsigned int[1]", 4)
        C.getsockopt(s.fd, SOL_SOCKET, SO_ERROR, errv, len)
        if errv[0] ~= 0 then
          s:fail("connect: " .. strerror(errv[0]),
            errv[0] == ECONNREFUSED or errv[0] == ECONNRESET)
        else
          s.state = "sending"
        end
      end
      if s.fd >= 0 and s.state == "sending" and bit.band(re, bit.bor(POLLOUT, POLLERR)) ~= 0 then
        s:do_send()
      end
      if s.fd >= 0 and (s.state == "reading" or s.state == "draining") and
         bit.band(re, bit.bor(POLLIN, POLLERR, POLLHUP)) ~= 0 then
        s:do_recv()
      end
    end
    if s.fd >= 0 and s.in_flight and t > s.deadline then
      s:fail("timeout after " .. TIMEOUT .. " s in state " .. s.state)
    elseif s.fd >= 0 and s.state == "draining" and t > s.deadline then
      s:close() -- answered, but the gateway did not close: not a lost request
    end
  end
  if PROGRESS and t - last_progress > 0.1 then
    last_progress = t
    write_atomic(PROGRESS, (stats.ok + stats.non2xx) .. " " .. stats.failed .. "\n")
  end
end

stats.seconds = now() - started
if PROGRESS then write_atomic(PROGRESS, (stats.ok + stats.non2xx) .. " " .. stats.failed .. "\n") end
write_atomic(OUT, cjson.encode(stats) .. "\n")
