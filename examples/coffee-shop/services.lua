#!/usr/bin/env luajit
-- The coffee shop's two demo services, behind the gateway in
-- gateway.config.yml.  One process, both services:
--
--   luajit examples/coffee-shop/services.lua --customers-port 8081 --orders-port 8082
--
-- customers service            orders service
--   GET /                        GET /
--   GET /customers               GET /orders
--   GET /customers/:id           GET /orders/:id
--                                POST /orders   {"customerId": 1, "item": "..."}
--
-- Every answer is JSON and carries `service` (which service answered) and
-- `requestId` (the eg-request-id header the gateway sent, null without one).
-- Port 0 picks a free port; the ports in use are printed on stdout:
--   customers service listening on http://127.0.0.1:8081
-- Requests are logged on stderr.
--
-- A small HTTP/1.1 server on 127.0.0.1: LuaSocket, one socket.select() loop,
-- keep-alive, Content-Length request bodies (chunked ones get 411).

local socket = require "socket"
local cjson = require "cjson.safe"

-- ---- data and routes ---------------------------------------------------------

local customers = {
  { id = 1, name = "Ada Lovelace", email = "ada@company.com" },
  { id = 2, name = "Alan Turing", email = "alan@company.com" },
  { id = 3, name = "Grace Hopper", email = "grace@company.com" },
}

local orders = {
  { id = 1, customerId = 1, item = "flat white", quantity = 1 },
  { id = 2, customerId = 3, item = "espresso", quantity = 2 },
}

local function find(list, id)
  for _, x in ipairs(list) do
    if x.id == tonumber(id) then return x end
  end
end

-- Each handler returns status, body table.
local routes = {
  customers = {
    { "GET", "^/$", function() return 200, { customers = customers } end },
    { "GET", "^/customers/?$", function() return 200, { customers = customers } end },
    { "GET", "^/customers/(%d+)$", function(_, id)
        local c = find(customers, id)
        if c then return 200, { customer = c } end
        return 404, { error = "customer " .. id .. " not found" }
      end },
  },
  orders = {
    { "GET", "^/$", function() return 200, { orders = orders } end },
    { "GET", "^/orders/?$", function() return 200, { orders = orders } end },
    { "GET", "^/orders/(%d+)$", function(_, id)
        local o = find(orders, id)
        if o then return 200, { order = o } end
        return 404, { error = "order " .. id .. " not found" }
      end },
    { "POST", "^/orders/?$", function(req)
        local o = cjson.decode(req.body)
        if type(o) ~= "table" or type(o.item) ~= "string" then
          return 400, { error = 'expected a JSON object like {"customerId": 1, "item": "latte"}' }
        end
        o.id = #orders + 1
        o.quantity = o.quantity or 1
        orders[#orders + 1] = o
        return 201, { order = o }
      end },
  },
}

local REASONS = { [200] = "OK", [201] = "Created", [400] = "Bad Request", [404] = "Not Found",
                  [405] = "Method Not Allowed", [411] = "Length Required" }

local function handle(service, req)
  local path = req.target:match("^[^?]*")
  local status, body = 404, { error = "no route for " .. req.method .. " " .. path }
  for _, r in ipairs(routes[service]) do
    local caps = { path:match(r[2]) }
    if caps[1] then
      if r[1] == req.method or (r[1] == "GET" and req.method == "HEAD") then
        status, body = r[3](req, unpack(caps))
        break
      end
      status, body = 405, { error = req.method .. " not allowed on " .. path }
    end
  end
  local id = req.headers["eg-request-id"]
  io.stderr:write(("%s service: %s %s -> %d (eg-request-id %s)\n"):format(
    service, req.method, req.target, status, tostring(id)))
  -- {"service": ..., "requestId": ..., <the rest>}: these two first
  return status, ('{"service":%s,"requestId":%s,%s\n'):format(
    cjson.encode(service), cjson.encode(id or cjson.null), cjson.encode(body):sub(2))
end

-- ---- HTTP/1.1 ----------------------------------------------------------------

local servers = {}   -- listening socket -> service name
local conns = {}     -- client socket -> { service, inbuf, outbuf, close }

-- Parses one request from c.inbuf.  Returns req, or nil (need more input),
-- or false and a status for a request we refuse.
local function parse(c)
  local head_end = c.inbuf:find("\r\n\r\n", 1, true)
  if not head_end then
    if #c.inbuf > 16384 then return false, 400 end
    return nil
  end
  local head = c.inbuf:sub(1, head_end - 1)
  local method, target, version = head:match("^(%u+) (%S+) HTTP/1%.(%d)")
  if not method then return false, 400 end
  local headers = {}
  for line in head:gmatch("\n([^\r\n]*)") do
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  if headers["transfer-encoding"] then return false, 411 end
  local len = tonumber(headers["content-length"] or 0)
  if not len then return false, 400 end
  if #c.inbuf < head_end + 3 + len then return nil end
  local body = c.inbuf:sub(head_end + 4, head_end + 3 + len)
  c.inbuf = c.inbuf:sub(head_end + 4 + len)
  local conn_hdr = (headers.connection or ""):lower()
  local keep = (version == "1" and not conn_hdr:find("close"))
               or (version == "0" and conn_hdr:find("keep%-alive") ~= nil)
  return { method = method, target = target, headers = headers, body = body, keep = keep }
end

local function respond(c, status, body, keep, head_only)
  c.outbuf = c.outbuf .. ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n" ..
      "Content-Length: %d\r\nConnection: %s\r\n\r\n%s"):format(
      status, REASONS[status], #body, keep and "keep-alive" or "close",
      head_only and "" or body)
  if not keep then c.close = true end
end

local function on_readable(sock, c)
  local data, err, partial = sock:receive(65536)
  c.inbuf = c.inbuf .. (data or partial or "")
  while not c.close do
    local req, status = parse(c)
    if req == nil then break end
    if req then
      local code, body = handle(c.service, req)
      respond(c, code, body, req.keep, req.method == "HEAD")
    else
      respond(c, status, cjson.encode({ error = REASONS[status] }) .. "\n", false)
    end
  end
  if err == "closed" then
    c.close = true                    -- answer what was read, then close
  elseif err and err ~= "timeout" then
    c.close, c.outbuf = true, ""      -- reset: nobody to answer
  end
end

local function on_writable(sock, c)
  local sent, err, last = sock:send(c.outbuf)
  sent = sent or last
  if err and err ~= "timeout" then c.close, c.outbuf = true, "" return end
  c.outbuf = c.outbuf:sub(sent + 1)
end

local function listen(service, port)
  local server, err = socket.bind("127.0.0.1", port, 128)
  if not server then
    io.stderr:write(("%s service: cannot listen on 127.0.0.1:%d: %s\n"):format(service, port, err))
    os.exit(1)
  end
  server:settimeout(0)
  servers[server] = service
  local _, actual = server:getsockname()
  io.stdout:write(("%s service listening on http://127.0.0.1:%d\n"):format(service, actual))
  io.stdout:flush()
end

local function main(args)
  local ports = { customers = 8081, orders = 8082 }
  local i = 1
  while args[i] do
    local service = args[i]:match("^%-%-(%a+)%-port$")
    if not (service and ports[service] and tonumber(args[i + 1])) then
      io.stderr:write("usage: luajit services.lua [--customers-port N] [--orders-port N]\n")
      os.exit(2)
    end
    ports[service] = tonumber(args[i + 1])
    i = i + 2
  end
  listen("customers", ports.customers)
  listen("orders", ports.orders)

  while true do
    local readers, writers = {}, {}
    for server in pairs(servers) do readers[#readers + 1] = server end
    for sock, c in pairs(conns) do
      if #c.outbuf > 0 then writers[#writers + 1] = sock
      elseif c.close then sock:close(); conns[sock] = nil
      else readers[#readers + 1] = sock end
    end
    local readable, writable = socket.select(readers, writers)
    for _, sock in ipairs(readable) do
      local service = servers[sock]
      if service then
        local client = sock:accept()
        if client then
          client:settimeout(0)
          client:setoption("tcp-nodelay", true)
          conns[client] = { service = service, inbuf = "", outbuf = "" }
        end
      elseif conns[sock] then
        on_readable(sock, conns[sock])
      end
    end
    for _, sock in ipairs(writable) do
      if conns[sock] then on_writable(sock, conns[sock]) end
    end
  end
end

local ok, err = pcall(main, arg)
if not ok then
  if tostring(err):find("interrupted!$") then os.exit(0) end   -- Ctrl-C
  io.stderr:write("services.lua: ", tostring(err), "\n")
  os.exit(1)
end
