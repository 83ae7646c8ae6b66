-- Shared bits for the spec/02-http specs: config text builders on top of
-- spec.support.gateway (which starts/stops the binary).
--
--   local h = require "spec.02-http.helpers"
--   local g = h.proxy_gateway(up, { client = { maxHeadSize = 1024 } })
--   finally(function() g:cleanup() end)

local gateway = require "spec.support.gateway"
local process = require "spec.support.process"
local cjson = require "cjson"

local _M = {}

-- "key: value" lines for a flat table, sorted, indented.
local function flat_yaml(t, indent)
  local keys = {}
  for k in pairs(t or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "string" then v = cjson.encode(v) end
    out[#out + 1] = indent .. k .. ": " .. tostring(v)
  end
  return table.concat(out, "\n")
end
_M.flat_yaml = flat_yaml

-- The `http:` and `tollgate:` sections.  opts.client / opts.upstream: flat
-- tables of tollgate.client / tollgate.upstream settings.
function _M.head(opts)
  opts = opts or {}
  local lines = {
    "http:",
    "  hostname: 127.0.0.1",
    "  port: 0",
    "tollgate:",
    "  accessLog: " .. (opts.accessLog or "stdout"),
    "  logLevel: " .. (opts.logLevel or "info"),
  }
  if opts.shutdownTimeout then lines[#lines + 1] = "  shutdownTimeout: " .. opts.shutdownTimeout end
  if opts.client then
    lines[#lines + 1] = "  client:"
    lines[#lines + 1] = flat_yaml(opts.client, "    ")
  end
  if opts.upstream then
    lines[#lines + 1] = "  upstream:"
    lines[#lines + 1] = flat_yaml(opts.upstream, "    ")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- A config proxying everything to `urls` (list of "http://..." strings).
--   opts.client, opts.upstream   tollgate settings (see head)
--   opts.action                  flat table of proxy action options
--   opts.paths                   paths of the single api endpoint (YAML text)
function _M.proxy_config(urls, opts)
  opts = opts or {}
  local service
  if #urls == 1 then
    service = "    url: " .. urls[1]
  else
    local l = { "    urls:" }
    for _, u in ipairs(urls) do l[#l + 1] = "      - " .. u end
    service = table.concat(l, "\n")
  end
  local action = { serviceEndpoint = "backend" }
  for k, v in pairs(opts.action or {}) do action[k] = v end
  return _M.head(opts) .. table.concat({
    "apiEndpoints:",
    "  api:",
    "    host: '*'",
    "    paths: " .. (opts.paths or "'*'"),
    "serviceEndpoints:",
    "  backend:",
    service,
    "policies: [proxy, terminate]",
    "pipelines:",
    "  main:",
    "    apiEndpoints: [api]",
    "    policies:",
    "      - proxy:",
    "          - action:",
    flat_yaml(action, "              "),
  }, "\n") .. "\n"
end

-- Starts a gateway proxying to one mock (or a list of mocks).
function _M.proxy_gateway(mocks, opts)
  if mocks.port then mocks = { mocks } end
  local urls = {}
  for i, m in ipairs(mocks) do urls[i] = "http://127.0.0.1:" .. m.port end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  return gateway.start{
    config = _M.proxy_config(urls, o),
    workers = o.workers,
    timeout = o.start_timeout,
  }
end

-- A raw upstream, for responses the mock would never send: each request
-- (its head read, any body ignored) gets answers[path] as it is, bytes
-- unchecked and nothing added, and then the connection is closed.
--   local up = h.raw_upstream{ ["/x"] = "HTTP/1.1 200 OK\r\n..." }
--   finally(up.stop)        -- up.port
local RAW_SERVER = [[
local socket = require "socket"
local answers = dofile(arg[1])
local srv = assert(socket.bind("127.0.0.1", 0))
local _, port = srv:getsockname()
local f = assert(io.open(arg[2] .. ".tmp", "w"))
f:write(port)
f:close()
assert(os.rename(arg[2] .. ".tmp", arg[2]))
while true do
  local c = srv:accept()
  c:settimeout(5)
  local line = c:receive("*l")
  local path = line and line:match("^%u+ (%S+)")
  repeat local l = c:receive("*l") until not l or l == ""
  c:send(answers[path] or "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
  c:close()
end
]]

function _M.raw_upstream(answers)
  local dir = process.tmpdir("tollgate-raw")
  local list = { "return {" }
  for path, raw in pairs(answers) do list[#list + 1] = ("[%q] = %q,"):format(path, raw) end
  list[#list + 1] = "}"
  process.write_file(dir .. "/answers.lua", table.concat(list, "\n"))
  process.write_file(dir .. "/server.lua", RAW_SERVER)
  local pid = assert(process.start{ cmd = { "luajit", dir .. "/server.lua", dir .. "/answers.lua",
                                            dir .. "/port" } })
  local port = process.wait_for(function()
    local text = process.read_file(dir .. "/port")
    return text and tonumber(text)
  end, 5, "the raw upstream's port")
  return { port = port, stop = function()
    process.stop(pid)
    process.rm_rf(dir)
  end }
end

-- Parses the gateway's access log (JSON lines on stdout).
function _M.access_log(g)
  local list = {}
  for line in g:stdout():gmatch("([^\n]*)\n") do
    local ok, entry = pcall(cjson.decode, line)
    if ok and type(entry) == "table" then list[#list + 1] = entry end
  end
  return list
end

-- Waits until the access log has at least n entries; returns them.
function _M.wait_access_log(g, n, timeout)
  return process.wait_for(function()
    local list = _M.access_log(g)
    if #list >= n then return list end
  end, timeout or 5, n .. " access log line(s)")
end

-- Pid of the single worker of gateway g (waits for it to exist).
function _M.workers(g, n, timeout)
  return process.wait_for(function()
    local list = process.children(g.pid)
    if #list == (n or 1) then return list end
  end, timeout or 5, tostring(n or 1) .. " worker process(es) of " .. g.pid)
end

-- Deterministic, varied text of n bytes (to catch reordered or lost data).
function _M.pattern_text(n, seed)
  local parts, size, i = {}, 0, seed or 0
  while size < n do
    local piece = ("%08x|"):format((i * 2654435761) % 4294967296)
    parts[#parts + 1] = piece
    size = size + #piece
    i = i + 1
  end
  return table.concat(parts):sub(1, n)
end

return _M
