-- tollgate.http: HTTP calls to other services from Lua, without blocking
-- the worker: the calling request (or timer run) yields until the whole
-- response is in, and other requests go on meanwhile. Calls go through the
-- same upstream code as the proxy: keep-alive pools, TLS, timeouts.
--
--   local http = require "tollgate.http"
--   local res, err = http.request{
--       url = "https://auth.internal/check?token=abc",   -- http:// or https://
--       method = "POST",                                 -- default GET
--       headers = { ["Content-Type"] = "application/json" },
--       body = '{"a":1}',
--       timeout = 5,            -- seconds of inactivity (default 10)
--       verify = true,          -- https: check the certificate (default true)
--       ca_file = "/etc/ssl/private-ca.pem",            -- https: trusted CAs
--   }
--   -- res.status, res.headers (lower-case names), res.body; or nil, err
--
-- Use it inside a policy phase or a timer callback. At load time (in a
-- constructor) there is no request to suspend: start a timer instead.
-- The response body is read whole, up to tollgate.client.maxBufferedBody.
-- (LuaSocket and os.execute block the whole worker: never use them in a
-- request; this is the replacement.)

local ffi = require "ffi"
local core = require "tollgate.core"
local config = require "tollgate.config"

local C = core.C
local ffi_string = ffi.string
local yield = coroutine.yield
local type, tostring, pairs, concat = type, tostring, pairs, table.concat
local lower, find = string.lower, string.find

-- RFC 9110 token: what a method and a header name may be
local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

local RESPONSE = core.RESPONSE

local _M = {}

local peers = {}
local errbuf = ffi.new("char[256]")
local lenp = ffi.new("size_t[1]")
local vlenp = ffi.new("size_t[1]")
local namep = ffi.new("const char *[1]")
local valp = ffi.new("const char *[1]")
local reasonp = ffi.new("const char *[1]")

local function peer_for(u, opts)
    local verify = opts.verify ~= false
    local key = u.scheme .. "://" .. u.host .. ":" .. u.port .. "|" .. tostring(verify) .. "|" ..
        tostring(opts.ca_file)
    local p = peers[key]
    if p then return p end
    local tls = nil
    if u.scheme == "https" then
        tls = C.tg_tls_client_get(verify and 1 or 0, opts.ca_file, nil, nil, errbuf, 256)
        if tls == nil then return nil, "TLS: " .. ffi_string(errbuf) end
    end
    p = C.tg_peer_get(u.host, #u.host, u.port, tls)
    if p == nil then return nil, "invalid upstream " .. u.host end
    peers[key] = p
    return p
end

function _M.request(opts)
    if type(opts) ~= "table" or type(opts.url) ~= "string" then
        error("http.request: expected { url = ... }", 2)
    end
    local r = core.context()
    if r == nil then
        error("http.request: call it inside a request or a timer callback", 2)
    end
    local u, err = config.parse_url(opts.url)
    if not u then return nil, err end
    local peer, perr = peer_for(u, opts)
    if not peer then return nil, perr end

    local body = opts.body
    -- the same rules as req:set_header: a token method and token names,
    -- values without CR, LF or NUL (else they would start new header lines)
    local method = opts.method or "GET"
    if type(method) ~= "string" or not find(method, TOKEN) then
        return nil, "invalid method " .. tostring(method)
    end
    local lines = { method .. " " .. u.path .. " HTTP/1.1" }
    local has_host = false
    for k, v in pairs(opts.headers or {}) do
        if type(k) ~= "string" or not find(k, TOKEN) then
            return nil, "invalid header name " .. tostring(k)
        end
        v = tostring(v)
        if find(v, "[\r\n%z]") then
            return nil, "invalid header value for " .. k .. " (CR, LF or NUL)"
        end
        if lower(k) == "host" then has_host = true end
        if lower(k) ~= "content-length" then lines[#lines + 1] = k .. ": " .. v end
    end
    if not has_host then
        local default = u.scheme == "https" and 443 or 80
        lines[#lines + 1] = "Host: " .. u.host .. (u.port ~= default and (":" .. u.port) or "")
    end
    if body then
        body = tostring(body)
        lines[#lines + 1] = "Content-Length: " .. #body
    end
    local raw = concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")

    local call = C.tg_call_new(r, peer, raw, #raw, opts.timeout or 10, errbuf, 256)
    if call == nil then return nil, ffi_string(errbuf) end
    local status = yield(core.YIELD_WAIT)
    if status ~= 0 then
        C.tg_call_status(call, reasonp)
        local reason = ffi_string(reasonp[0])
        C.tg_call_free(call)
        return nil, reason
    end
    local res = { status = C.tg_resp_status(call), headers = {} }
    local i = 0
    while true do
        i = C.tg_hdr_next(call, RESPONSE, i, namep, lenp, valp, vlenp)
        if i < 0 then break end
        local n = lower(ffi_string(namep[0], lenp[0]))
        local v = ffi_string(valp[0], vlenp[0])
        res.headers[n] = res.headers[n] and (res.headers[n] .. ", " .. v) or v
    end
    local p = C.tg_resp_body(call, lenp)
    res.body = ffi_string(p, lenp[0])
    C.tg_call_free(call)
    return res
end

return _M
