-- A JSON Web Key Set server for specs of the jwt policy's jwksUri: a
-- separate luajit process (LuaSocket, LuaSec for HTTPS) serving a JWKS that
-- the spec changes while it runs, and counting the fetches.
--
--   local jwks = require "tollgate.testing.jwks"
--   local idp = jwks.start{ body = jwt.jwks{ jwt.jwk(keys.rsa, { kid = "r1" }) },
--                           tls = { cert = c.upstream.cert, key = c.upstream.key } }
--   finally(function() idp:stop() end)             -- or teardown(jwks.stop_all)
--   idp:url()                 https://127.0.0.1:PORT/jwks.json (http:// without tls)
--   idp:set(body)             what the next fetches get (written atomically)
--   idp:set_status(500)       answer that status instead (nil: 200 and the body again)
--   idp:set_delay(0.5)        wait that many seconds before answering (nil: none)
--   idp:fetches()             requests for /jwks.json so far (answered or not)
--   idp:wait_fetches(n, t)    waits (t seconds, default 5) until there were n
--   idp:stop()                SIGTERM, by its pid; idempotent
--   jwks.start{ port = p }    a given port (e.g. the one of a stopped server)
--
-- Every request gets its answer and `Connection: close`; a TLS handshake
-- that fails (a client that does not trust the certificate) just closes
-- the connection. One connection at a time, each with a 5 s timeout: this
-- serves a gateway's few fetches, nothing more.

local process = require "tollgate.testing.process"

local assert, error, pairs, ipairs, pcall, setmetatable, tonumber, tostring =
    assert, error, pairs, ipairs, pcall, setmetatable, tonumber, tostring

local _M = {}

local started = {}

local Server = {}
Server.__index = Server

local function write_atomic(path, data)
  assert(process.write_file(path .. ".tmp", data))
  assert(os.rename(path .. ".tmp", path))
end

-- Starts the server and waits (opts.timeout, default 5 s) until it listens.
--   opts.body     the JWKS text (default: {"keys":[]})
--   opts.status   answer this status instead of 200
--   opts.tls      { cert = PEM file, key = PEM file }: HTTPS
--   opts.port     default 0: a free one
--   opts.path     the key set's path (default /jwks.json; others get 404)
function _M.start(opts)
  opts = opts or {}
  local dir = process.tmpdir("tollgate-jwks")
  local self = setmetatable({ dir = dir, tls = opts.tls and true or false,
                              path = opts.path or "/jwks.json" }, Server)
  write_atomic(dir .. "/body", opts.body or '{"keys":[]}')
  if opts.status then write_atomic(dir .. "/status", tostring(opts.status)) end
  local boot = ("package.path = %q .. package.path; require('tollgate.testing.jwks').serve()")
      :format(process.repo_root() .. "/lua/?.lua;")
  -- the server's arguments, by the environment (`luajit -e` gives the chunk none)
  local args = { dir, tostring(opts.port or 0), self.path, opts.tls and opts.tls.cert or "",
                 opts.tls and opts.tls.key or "" }
  local env = { TG_JWKS_ARGS = table.concat(args, "\n") }
  local cmd = { os.getenv("LUAJIT") or "luajit", "-e", boot }
  self.log = dir .. "/output.log"
  local pid, err = process.start{ cmd = cmd, env = env, stdout = self.log, stderr = self.log }
  if not pid then
    process.rm_rf(dir)
    error("jwks server did not start: " .. tostring(err), 2)
  end
  self.pid = pid
  started[self] = true
  local ok, port = pcall(process.wait_for, function()
    local text = process.read_file(dir .. "/port")
    local p = text and tonumber(text:match("^(%d+)\n"))
    if p then return p end
    if not process.alive(pid) then
      error("jwks server exited; output:\n" .. (process.read_file(self.log) or ""), 0)
    end
  end, opts.timeout or 5, "the jwks server to write its port file")
  if not ok then
    self:stop()
    error(tostring(port), 2)
  end
  self.port = port
  return self
end

function Server:url(path)
  return (self.tls and "https" or "http") .. "://127.0.0.1:" .. self.port .. (path or self.path)
end

function Server:set(body)
  write_atomic(self.dir .. "/body", body)
end

function Server:set_status(status)
  if status then
    write_atomic(self.dir .. "/status", tostring(status))
  else
    os.remove(self.dir .. "/status")
  end
end

function Server:set_delay(seconds)
  if seconds then
    write_atomic(self.dir .. "/delay", tostring(seconds))
  else
    os.remove(self.dir .. "/delay")
  end
end

function Server:fetches()
  return tonumber(process.read_file(self.dir .. "/count") or "0") or 0
end

function Server:wait_fetches(n, timeout)
  return process.wait_for(function() return self:fetches() >= n end, timeout or 5,
                          n .. " fetches of the key set (" .. self:fetches() .. " so far)")
end

function Server:output()
  return process.read_file(self.log) or ""
end

function Server:stop()
  if not started[self] then return end
  started[self] = nil
  process.stop(self.pid, "TERM", 5)
  if not os.getenv("TOLLGATE_SPEC_KEEP") then process.rm_rf(self.dir) end
end

function _M.stop_all()
  local list = {}
  for s in pairs(started) do list[#list + 1] = s end
  for _, s in ipairs(list) do s:stop() end
end

-- ---- the server process ---------------------------------------------------------------

local function read_head(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.%d$")
  if not method then return nil, "bad request line" end
  while true do
    local h, herr = c:receive("*l")
    if not h then return nil, herr end
    if h == "" then break end
  end
  return method, target
end

function _M.serve()
  local socket = require "socket"
  local args = {}
  for a in ((os.getenv("TG_JWKS_ARGS") or "") .. "\n"):gmatch("([^\n]*)\n") do
    args[#args + 1] = a
  end
  local dir, port, path, cert, key = args[1], tonumber(args[2]) or 0, args[3], args[4], args[5]
  local ctx
  if cert ~= "" then
    local ssl = require "ssl"
    local err
    ctx, err = ssl.newcontext{ mode = "server", protocol = "any", key = key, certificate = cert,
                               options = { "all", "no_sslv2", "no_sslv3" }, verify = "none" }
    if not ctx then
      io.stderr:write("jwks server: TLS: ", tostring(err), "\n")
      os.exit(2)
    end
  end
  local server = assert(socket.bind("127.0.0.1", port))
  local _, actual = server:getsockname()
  write_atomic(dir .. "/port", tostring(actual) .. "\n")
  local count = 0
  while true do
    local c = server:accept()
    if c then
      c:settimeout(5)
      local ok = true
      if ctx then
        local ssl = require "ssl"
        local w = ssl.wrap(c, ctx)
        ok = w and w:dohandshake()
        if ok then c = w end
      end
      local method, target
      if ok then method, target = read_head(c) end
      if method then
        local status, body
        if target:match("^[^?]*") == path then
          count = count + 1
          write_atomic(dir .. "/count", tostring(count))
          local delay = tonumber(process.read_file(dir .. "/delay") or "")
          if delay then socket.sleep(delay) end
          status = tonumber(process.read_file(dir .. "/status") or "") or 200
          body = status == 200 and (process.read_file(dir .. "/body") or "") or
              ("status " .. status)
        else
          status, body = 404, "not found"
        end
        c:send(("HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" ..
                "Connection: close\r\n\r\n%s"):format(status, #body, method == "HEAD" and "" or body))
      end
      c:close()
    end
  end
end

return _M
