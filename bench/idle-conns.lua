#!/usr/bin/env luajit
-- bench/idle-conns.lua: memory cost of idle keep-alive client connections.
--
-- Opens N keep-alive connections to a running gateway; on each one it sends
-- one complete GET request and reads the whole response, then leaves the
-- connection open and idle. Reads the gateway worker's VmRSS (and its open
-- fd count) before and after, and prints KB per connection.
--
-- usage: luajit bench/idle-conns.lua -p PORT -P WORKER_PID [-n N] [-H HOST] [--path /]
--   -n N        connections (default 10000)
--   -H HOST     default 127.0.0.1
--   --hold S    keep the connections open S more seconds before closing (default 0)
--
-- The process needs N + a few file descriptors: raise `ulimit -n` first
-- (bench/run.sh does). Requires luasocket.
--
-- Last lines of output are machine-readable `key=value` pairs (see run.sh).

local socket = require("socket")

local opts = { n = 10000, host = "127.0.0.1", path = "/", hold = 0 }
do
    local i = 1
    while i <= #arg do
        local a, v = arg[i], arg[i + 1]
        if a == "-n" then opts.n = tonumber(v); i = i + 2
        elseif a == "-p" then opts.port = tonumber(v); i = i + 2
        elseif a == "-P" then opts.pid = tonumber(v); i = i + 2
        elseif a == "-H" then opts.host = v; i = i + 2
        elseif a == "--path" then opts.path = v; i = i + 2
        elseif a == "--hold" then opts.hold = tonumber(v); i = i + 2
        else
            io.stderr:write("idle-conns: unknown argument ", tostring(a), "\n")
            os.exit(2)
        end
    end
    if not (opts.n and opts.port and opts.pid) then
        io.stderr:write("usage: luajit bench/idle-conns.lua -p PORT -P WORKER_PID [-n N] [-H HOST]\n")
        os.exit(2)
    end
end

local function rss_kb(pid)
    local f = io.open("/proc/" .. pid .. "/status")
    if not f then return nil end
    local s = f:read("*a"); f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function fd_count(pid)
    local p = io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l")
    local n = tonumber(p:read("*a")); p:close()
    return n
end

local function die(msg)
    io.stderr:write("idle-conns: ", msg, "\n")
    os.exit(1)
end

local request = "GET " .. opts.path .. " HTTP/1.1\r\nHost: " .. opts.host .. ":" .. opts.port ..
    "\r\nUser-Agent: tollgate-bench-idle\r\nAccept: */*\r\n\r\n"

-- Read one HTTP/1.1 response (status line, headers, Content-Length or chunked body).
local function read_response(c)
    local line, err = c:receive("*l")
    if not line then return nil, "status line: " .. tostring(err) end
    local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
    if not status then return nil, "bad status line: " .. line end
    local clen, chunked, close
    while true do
        local h, e = c:receive("*l")
        if not h then return nil, "headers: " .. tostring(e) end
        if h == "" then break end
        local k, v = h:match("^([^:]+):%s*(.-)%s*$")
        if k then
            k = k:lower()
            if k == "content-length" then clen = tonumber(v)
            elseif k == "transfer-encoding" and v:lower():find("chunked") then chunked = true
            elseif k == "connection" and v:lower():find("close") then close = true end
        end
    end
    if chunked then
        while true do
            local sz, e = c:receive("*l")
            if not sz then return nil, "chunk size: " .. tostring(e) end
            local n = tonumber(sz:match("^%x+"), 16)
            if not n then return nil, "bad chunk size: " .. sz end
            if n == 0 then
                repeat local t = c:receive("*l") until t == nil or t == ""
                break
            end
            local _, e2 = c:receive(n); if e2 then return nil, "chunk: " .. e2 end
            c:receive("*l")
        end
    elseif clen and clen > 0 then
        local _, e = c:receive(clen)
        if e then return nil, "body: " .. e end
    end
    return status, close
end

local pid = opts.pid
local rss0 = rss_kb(pid) or die("no such process " .. pid)
local fd0 = fd_count(pid)

local conns = {}
local non2xx, closed_by_server = 0, 0
local t0 = socket.gettime()
local BATCH = 200
local i = 0
while i < opts.n do
    local batch = {}
    for _ = 1, math.min(BATCH, opts.n - i) do
        local c = socket.tcp()
        c:settimeout(10)
        local ok, err = c:connect(opts.host, opts.port)
        if not ok then die(("connect #%d failed: %s"):format(i + #batch + 1, tostring(err))) end
        local sent, serr = c:send(request)
        if not sent then die(("send #%d failed: %s"):format(i + #batch + 1, tostring(serr))) end
        batch[#batch + 1] = c
    end
    for j, c in ipairs(batch) do
        local status, close_or_err = read_response(c)
        if not status then die(("response #%d: %s"):format(i + j, close_or_err)) end
        if status < 200 or status > 299 then non2xx = non2xx + 1 end
        if close_or_err then closed_by_server = closed_by_server + 1 end
        conns[#conns + 1] = c
    end
    i = i + #batch
end
local t_open = socket.gettime() - t0

socket.sleep(1) -- let the worker settle (it has nothing left to do)
local rss1 = rss_kb(pid) or die("gateway worker " .. pid .. " is gone")
local fd1 = fd_count(pid)

-- Check the connections are still open and usable: one more request on a sample.
local alive, sample = 0, 0
for k = 1, #conns, math.max(1, math.floor(#conns / 50)) do
    sample = sample + 1
    local c = conns[k]
    if c:send(request) then
        local status = read_response(c)
        if status then alive = alive + 1 end
    end
end

if opts.hold > 0 then socket.sleep(opts.hold) end
for _, c in ipairs(conns) do c:close() end
socket.sleep(1)
local rss2 = rss_kb(pid)

local n = #conns
local kb_per_conn = (rss1 - rss0) / n
print(("connections opened: %d in %.2f s (non-2xx: %d, server said close: %d)")
    :format(n, t_open, non2xx, closed_by_server))
print(("worker %d fds: %d before, %d with connections open (+%d)"):format(pid, fd0, fd1, fd1 - fd0))
print(("worker %d VmRSS: %d KB before, %d KB with %d idle connections, %s KB after closing them")
    :format(pid, rss0, rss1, n, tostring(rss2)))
print(("still usable after idling (sample): %d/%d"):format(alive, sample))
print(("KB per idle connection: %.2f"):format(kb_per_conn))
print(("RESULT rss_before_kb=%d rss_loaded_kb=%d rss_after_close_kb=%s conns=%d fds_added=%d " ..
       "kb_per_conn=%.2f non2xx=%d alive_sample=%d/%d")
    :format(rss0, rss1, tostring(rss2), n, fd1 - fd0, kb_per_conn, non2xx, alive, sample))
if non2xx > 0 or closed_by_server > 0 or alive < sample or fd1 - fd0 < n * 0.99 then
    print("WARNING: some connections failed, were closed, or are not held by the worker")
end
