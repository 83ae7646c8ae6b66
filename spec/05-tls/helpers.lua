-- Shared bits for the spec/05-tls specs.
--
--   local H = require "spec.05-tls.helpers"
--   local c = certs.generate()
--   local g = H.start{ config = ..., files = H.tls_files(c), vars = {...} }
--   -- g.tls_port: the https listener's port (g.port: the http one)
--   local res, err, stage = H.exchange(g.tls_port, H.tls(c, { servername = "two.test" }),
--                                      { path = "/" })
--   -- res.cn: the CN of the gateway's certificate; res.tls_info, res.alpn
--   -- stage: "handshake" (connect/handshake failed) or "response"
--   H.access_log(g)   -- the access-log lines (stdout), decoded

local cjson = require "cjson"
local gateway = require "spec.support.gateway"
local certs = require "spec.support.certs"
local http = require "spec.support.http"
local process = require "spec.support.process"

local assert, ipairs, pairs, tonumber = assert, ipairs, pairs, tonumber

local _M = {}

-- The PEM files of the named certificates (default: every leaf and the CA),
-- as gateway.start's `files`, under tls/: tls/<name>.pem, tls/<name>.key,
-- and tls/ca.pem.  The config then names them relative to its directory.
function _M.tls_files(c, names)
  names = names or { "one", "two", "default", "client", "upstream", "wrong" }
  local files = { ["tls/ca.pem"] = assert(process.read_file(c.ca.cert)) }
  for _, n in ipairs(names) do
    files["tls/" .. n .. ".pem"] = assert(process.read_file(c[n].cert))
    files["tls/" .. n .. ".key"] = assert(process.read_file(c[n].key))
  end
  return files
end

-- gateway.start, then the https port from the master's log.
function _M.start(opts)
  local g = gateway.start(opts)
  g.tls_port = tonumber(g:wait_log("listening on https://127%.0%.0%.1:(%d+)"))
  return g
end

-- http.connect's tls table trusting the test CA, plus `extra`.
function _M.tls(c, extra)
  local t = { cafile = c.ca.cert }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- One request on a new TLS connection.  Returns res, with what the
-- handshake gave: res.certificate (LuaSec x509), res.cn (its subject CN),
-- res.tls_info (LuaSec info()), res.alpn; or nil, err, stage ("handshake"
-- when the connection could not be set up, "response" when the request got
-- no response).
function _M.exchange(port, tls, req)
  local conn, err = http.connect(port, "127.0.0.1", { tls = tls })
  if not conn then return nil, err, "handshake" end
  local cert, info, alpn = conn:peer_certificate(), conn:tls_info(), conn:alpn()
  local ok, serr = conn:request(req or {})
  if not ok then
    conn:close()
    return nil, serr, "response"
  end
  local res, rerr = conn:read_response()
  conn:close()
  if not res then return nil, rerr, "response" end
  res.certificate, res.cn, res.tls_info, res.alpn = cert, certs.subject_cn(cert), info, alpn
  return res
end

-- Access-log lines (stdout), decoded.
function _M.access_log(g)
  local out = {}
  for line in g:stdout():gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
  return out
end

-- Counts complete lines of the gateway's stderr matching a Lua pattern.
function _M.count_log(g, pattern)
  local n = 0
  for line in g:stderr():gmatch("([^\n]*)\n") do
    if line:find(pattern) then n = n + 1 end
  end
  return n
end

return _M
