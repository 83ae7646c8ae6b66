#!/usr/bin/env luajit
-- Clients sending requests continuously, for the graceful shutdown spec:
-- keep-alive connections sending requests back to back, and connections
-- opened for one request each, all in one process (non-blocking sockets,
-- poll(2)), recording what became of every request.
--
--   luajit spec/07-hardening/load_client.lua --port P --keepalive K
--       --fresh F --stopfile FILE --out FILE [--progress FILE]
--       [--timeout 10] [--max-seconds 60]
--
-- Requests rotate over three kinds, each with a unique id:
--   GET /echo/<id>                  the echo must name that path
--   GET /slow/200?id=<id>           body "slow"
--   GET /bytes/200000?id=<id>       200000 bytes
-- A client slot whose connect is refused tries again 10 ms later.  It runs
-- until --stopfile exists (or --max-seconds pass), lets what is in flight
-- end, and writes JSON to --out:
--   { requests = { { id, path, conn, t_sent, t_done, outcome, status, err,
--                    got } ... }, refused = { times of refused connects },
--     accepted_after_refused = n }
-- outcome: "complete" (a whole, correct response), "bad" (whole, but wrong
-- status or body), "cut" (some of a response, then the connection ended),
-- "unanswered" (the connection ended before any byte of a response),
-- "timeout".  accepted_after_refused counts connects that succeeded after
-- one was refused (the gateway accepted again after it stopped accepting).
-- --progress is rewritten every 100 ms with the count of complete
-- responses.

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
local EINTR, EAGAIN, ECONNREFUSED = rawsock.EINTR, rawsock.EAGAIN, rawsock.ECONNREFUSED
local strerror, exists, write_atomic = rawsock.strerror, rawsock.exists, rawsock.write_atomic

local args = rawsock.args(arg, "load_client.lua")
local PORT = assert(tonumber(args.port), "--port N")
local NKEEP = tonumber(args.keepalive or 4)
local NFRESH = tonumber(args.fresh or 2)
local STOPFILE = assert(args.stopfile, "--stopfile FILE")
local OUT = assert(args.out, "--out FILE")
local PROGRESS = args.progress
local TIMEOUT = tonumber(args.timeout or 10)
local MAX_SECONDS = tonumber(args["max-seconds"] or 60)

local now = socket.gettime
local BYTES = 200000

local addr = rawsock.address("127.0.0.1", PORT)

local requests = {}
local refused = {}
local accepted_after_refused = 0
local complete = 0
local next_id = 0
local nconn = 0

local rbuf = ffi.new("char[65536]")

local Slot = {}
Slot.__index = Slot

function Slot:close()
  if self.fd >= 0 then C.close(self.fd) end
  self.fd = -1
  self.state = "idle"
end

-- the request in flight ends with `outcome`
function Slot:finish(outcome, err)
  local r = self.req
  r.outcome, r.t_done, r.err = outcome, now(), err
  r.status = self.res and self.res.status
  r.got = self.got
  if outcome == "complete" then complete = complete + 1 end
  self.req = nil
end

function Slot:open()
  local fd, connected, step = rawsock.connect(addr)
  if not fd then
    assert(step == "connect", "socket: " .. strerror(connected))
    return nil, connected
  end
  self.fd = fd
  nconn = nconn + 1
  self.conn = nconn
  if connected and #refused > 0 then accepted_after_refused = accepted_after_refused + 1 end
  self.state = connected and "sending" or "connecting"
  return true
end

function Slot:connect_failed(e)
  self:close()
  if e == ECONNREFUSED then
    refused[#refused + 1] = now()
  end
  self.retry_at = now() + 0.01
end

function Slot:start()
  if self.fd < 0 then
    local ok, e = self:open()
    if not ok then return self:connect_failed(e) end
  end
  next_id = next_id + 1
  local id = self.kind .. self.index .. "-" .. next_id
  local k = next_id % 3
  local path
  if k == 0 then path = "/echo/" .. id
  elseif k == 1 then path = "/slow/200?id=" .. id
  else path = "/bytes/" .. BYTES .. "?id=" .. id end
  self.req = { id = id, path = path, conn = self.conn, t_sent = now() }
  requests[#requests + 1] = self.req
  self.out = "GET " .. path .. " HTTP/1.1\r\nHost: load\r\n"
             .. (self.kind == "fresh" and "Connection: close\r\n" or "") .. "\r\n"
  self.inbuf, self.res, self.got = "", nil, 0
  self.deadline = now() + TIMEOUT
  if self.state ~= "connecting" then self.state = "sending" end
end

function Slot:send()
  while #self.out > 0 do
    local n = tonumber(C.send(self.fd, self.out, #self.out, MSG_NOSIGNAL))
    if n < 0 then
      local e = ffi.errno()
      if e == EAGAIN then return end
      if e ~= EINTR then
        self:finish("unanswered", "send: " .. strerror(e))
        return self:close()
      end
    else
      self.out = self.out:sub(n + 1)
    end
  end
  self.state = "reading"
end

local function check_body(path, status, body)
  if status ~= 200 then return false end
  if path:find("^/echo/") then
    local ok, e = pcall(cjson.decode, body)
    return ok and e.path == path
  elseif path:find("^/slow/") then
    return body == "slow"
  else
    return #body == BYTES and not body:find("[^x]")
  end
end

-- Parses self.inbuf; returns true once the response is whole.
function Slot:parse()
  local res = self.res
  if not res then
    local e = self.inbuf:find("\r\n\r\n", 1, true)
    if not e then return false end
    local head = self.inbuf:sub(1, e - 1)
    self.inbuf = self.inbuf:sub(e + 4)
    res = { status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)")), headers = {}, body = {} }
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
      res.headers[name:lower()] = value
    end
    local te = res.headers["transfer-encoding"]
    res.chunked = te and te:lower():find("chunked") and true
    res.left = tonumber(res.headers["content-length"] or "")
    self.res = res
  end
  if res.chunked then
    while true do
      if res.chunk_left then
        if #self.inbuf < res.chunk_left + 2 then return false end
        res.body[#res.body + 1] = self.inbuf:sub(1, res.chunk_left)
        self.inbuf = self.inbuf:sub(res.chunk_left + 3)
        res.chunk_left = nil
      end
      local e = self.inbuf:find("\r\n", 1, true)
      if not e then return false end
      local size = tonumber(self.inbuf:match("^(%x+)"), 16)
      if size == 0 then
        local t = self.inbuf:find("\r\n\r\n", 1, true)
        if not t then return false end
        self.inbuf = self.inbuf:sub(t + 4)
        return true
      end
      self.inbuf = self.inbuf:sub(e + 2)
      res.chunk_left = size
    end
  end
  local take = math.min(res.left or #self.inbuf, #self.inbuf)
  res.body[#res.body + 1] = self.inbuf:sub(1, take)
  self.inbuf = self.inbuf:sub(take + 1)
  if res.left then
    res.left = res.left - take
    return res.left == 0
  end
  return false
end

function Slot:recv()
  while true do
    local n = tonumber(C.recv(self.fd, rbuf, 65536, MSG_DONTWAIT))
    if n > 0 then
      self.got = self.got + n
      self.inbuf = self.inbuf .. ffi.string(rbuf, n)
      if self.req and self:parse() then
        local res = self.res
        local body = table.concat(res.body)
        self:finish(check_body(self.req.path, res.status, body) and "complete" or "bad",
                    res.status ~= 200 and ("status " .. res.status) or nil)
        local close = self.kind == "fresh" or (res.headers.connection or ""):lower():find("close")
        if close then return self:close() end
        self.state = "idle-open"
        return
      end
    elseif n == 0 or (n < 0 and ffi.errno() ~= EAGAIN and ffi.errno() ~= EINTR) then
      local err = n == 0 and "closed" or strerror(ffi.errno())
      if self.req then
        self:finish(self.got > 0 and "cut" or "unanswered", err)
      end
      return self:close()
    else
      return
    end
  end
end

local slots = {}
for i = 1, NKEEP do slots[#slots + 1] = setmetatable({ kind = "ka", index = i, fd = -1 }, Slot) end
for i = 1, NFRESH do
  slots[#slots + 1] = setmetatable({ kind = "fresh", index = i, fd = -1 }, Slot)
end

local started = now()
local stopping = false
local last_progress = 0
local pfds = rawsock.pollfds(#slots)

while true do
  local t = now()
  if not stopping and (exists(STOPFILE) or t - started > MAX_SECONDS) then stopping = true end
  local busy = 0
  for _, s in ipairs(slots) do
    if not s.req then
      if stopping then
        if s.fd >= 0 then s:close() end
      elseif not s.retry_at or t >= s.retry_at then
        s.retry_at = nil
        if s.state == "idle-open" then s.state = "sending" end
        s:start()
      end
    end
    if s.req then busy = busy + 1 end
  end
  if stopping and busy == 0 then break end

  local n, map = 0, {}
  for _, s in ipairs(slots) do
    if s.fd >= 0 then
      pfds[n].fd = s.fd
      pfds[n].events = (s.state == "connecting" or s.state == "sending") and POLLOUT or POLLIN
      pfds[n].revents = 0
      map[n] = s
      n = n + 1
    end
  end
  C.poll(pfds, n, 10)
  t = now()
  for i = 0, n - 1 do
    local s, re = map[i], pfds[i].revents
    if re ~= 0 and s.fd >= 0 then
      if s.state == "connecting" then
        local e = ffi.new("int[1]")
        local len = ffi.new("unsigned int[1]", 4)
        C.getsockopt(s.fd, SOL_SOCKET, SO_ERROR, e, len)
        if e[0] ~= 0 then
          -- the request was never sent: not a request the gateway saw
          local r = s.req
          for k = #requests, 1, -1 do
            if requests[k] == r then table.remove(requests, k) break end
          end
          s.req = nil
          s:connect_failed(e[0])
        else
          if #refused > 0 then accepted_after_refused = accepted_after_refused + 1 end
          s.state = "sending"
        end
      end
      if s.fd >= 0 and s.state == "sending" and bit.band(re, bit.bor(POLLOUT, POLLERR)) ~= 0 then
        s:send()
      end
      if s.fd >= 0 and (s.state == "reading" or s.state == "idle-open")
         and bit.band(re, bit.bor(POLLIN, POLLERR, POLLHUP)) ~= 0 then
        s:recv()
      end
    end
    if s.req and t > s.deadline then
      s:finish("timeout", "in state " .. s.state)
      s:close()
    end
  end
  if PROGRESS and t - last_progress > 0.1 then
    last_progress = t
    write_atomic(PROGRESS, complete .. "\n")
  end
end

if PROGRESS then write_atomic(PROGRESS, complete .. "\n") end
write_atomic(OUT, cjson.encode({ requests = requests, refused = refused,
                                 accepted_after_refused = accepted_after_refused }) .. "\n")
