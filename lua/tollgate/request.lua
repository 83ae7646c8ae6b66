-- tollgate.request: the request object policies and conditions see.
--
--   req.method        "GET"
--   req.path          raw path, no query ("/a/b%20c")
--   req.url           path and query, as Express Gateway's req.url; a policy
--                     may change it (proxy's stripPath, rewrite)
--   req.query         raw query string, or nil
--   req.host          the Host header as the client sent it (any port included), or nil
--   req.ip            client address
--   req.protocol      "http" or "https"
--   req.tls_client_verified  the client presented a certificate that was verified
--   req.id            request id (also sent upstream as eg-request-id)
--   req.params        route parameters: [0] for "*", then :names in order
--   req.endpoint      the matched apiEndpoint (name, host, paths, ...)
--   req.pipeline      the pipeline's name
--   req.ctx           a table the pipeline's policies share for this request
--   req.user          set by an authentication policy (authenticated holds)
--
--   req:header(name) / req:set_header(name, v) / req:add_header(name, v)
--   req:remove_header(name) / req:headers()   -- request, as sent upstream
--   req.response:status() / :set_status(n) / :header(name) / :set_header(n, v)
--   req.response:add_header(n, v) / :remove_header(n) / :headers()
--   req:body() / req:set_body(s)              -- the whole request body (yields while it
--                                             -- arrives; up to tollgate.client.maxBufferedBody)
--   req.response:body() / :set_body(s)        -- the whole response body (response phase)
--   req:sleep(seconds)                        -- yields; other requests go on
--
-- Values cross from C through the FFI; strings are copied when read.

local ffi = require "ffi"
local core = require "tollgate.core"

local C = core.C
local ffi_string = ffi.string
local yield = coroutine.yield
local type, tostring, setmetatable, rawset, pairs = type, tostring, setmetatable, rawset, pairs
local lower = string.lower

local REQUEST, RESPONSE = core.REQUEST, core.RESPONSE
local HDR_SET, HDR_ADD, HDR_DEL = core.HDR_SET, core.HDR_ADD, core.HDR_DEL
local PROXY_LAST = core.PROXY_LAST

local lenp = ffi.new("size_t[1]")
local vlenp = ffi.new("size_t[1]")
local namep = ffi.new("const char *[1]")
local valp = ffi.new("const char *[1]")

local _M = {}

local function get_header(r, which, name)
    local p = C.tg_hdr_get(r, which, name, #name, vlenp)
    if p == nil then return nil end
    return ffi_string(p, vlenp[0])
end

local function edit_header(r, which, op, name, value)
    if type(name) ~= "string" then
        error("header name must be a string", 3)
    end
    local rc
    if type(value) == "number" and value >= 0 and value < 1e14 and value % 1 == 0 and
            (value > 0 or 1 / value > 0) then
        -- an integer (rate-limit counts, times): written by C as tostring
        -- would, without a Lua string made and formatted for it
        rc = C.tg_hdr_edit_int(r, which, op, name, #name, value)
    else
        if op ~= HDR_DEL then
            value = tostring(value)
        end
        rc = C.tg_hdr_edit(r, which, op, name, #name, value, value and #value or 0)
    end
    if rc ~= 0 then
        error("invalid header " .. name .. ": names are tokens and values have no CR, LF or NUL", 3)
    end
end

local function all_headers(r, which)
    local out = {}
    local i = 0
    while true do
        i = C.tg_hdr_next(r, which, i, namep, lenp, valp, vlenp)
        if i < 0 then break end
        local n = lower(ffi_string(namep[0], lenp[0]))
        local v = ffi_string(valp[0], vlenp[0])
        local prev = out[n]
        out[n] = prev and (prev .. ", " .. v) or v
    end
    return out
end

-- ---- response view ------------------------------------------------------------

local Response = {}
Response.__index = Response

function Response:status() return C.tg_resp_status(self._r) end
function Response:set_status(n) C.tg_resp_set_status(self._r, n) end
function Response:header(name) return get_header(self._r, RESPONSE, name) end
function Response:set_header(name, v) edit_header(self._r, RESPONSE, HDR_SET, name, v) end
function Response:add_header(name, v) edit_header(self._r, RESPONSE, HDR_ADD, name, v) end
function Response:remove_header(name) edit_header(self._r, RESPONSE, HDR_DEL, name) end
function Response:headers() return all_headers(self._r, RESPONSE) end

-- The whole response body (in the response phase, the upstream's is read
-- first; the client gets it afterwards, with its length). nil, err when it
-- cannot be read.
function Response:body()
    local r = self._r
    local rc = C.tg_resp_read_body(r)
    if rc == core.AGAIN then
        if yield(core.YIELD_WAIT) ~= 0 then
            return nil, "the upstream response is larger than maxBufferedBody"
        end
    elseif rc ~= 0 then
        return nil, "the response body can only be read in the response phase"
    end
    local p = C.tg_resp_body(r, lenp)
    return ffi_string(p, lenp[0])
end

-- Replaces the response body (Content-Length follows).
function Response:set_body(s)
    s = tostring(s)
    C.tg_resp_set_body(self._r, s, #s)
end

-- ---- request ----------------------------------------------------------------------

local Request = {}

local lazy = {
    url = function(self)
        local p = C.tg_req_target(self._r, lenp)
        return ffi_string(p, lenp[0])
    end,
    query = function(self)
        local p = C.tg_req_query(self._r, lenp)
        if p == nil then return nil end
        return ffi_string(p, lenp[0])
    end,
    ip = function(self)
        local p = C.tg_req_client_ip(self._r, lenp)
        return ffi_string(p, lenp[0])
    end,
    id = function(self)
        local p = C.tg_req_id(self._r, lenp)
        return ffi_string(p, lenp[0])
    end,
    http_version = function(self)
        local v = C.tg_req_http_version(self._r)
        return (v - v % 10) / 10 + (v % 10) / 10
    end,
    ctx = function() return {} end,
    protocol = function(self) return ffi_string(C.tg_req_scheme(self._r)) end,
    tls_client_verified = function(self) return C.tg_req_tls_verified(self._r) ~= 0 end,
    response = function(self) return setmetatable({ _r = self._r }, Response) end,
}

local Request_mt = {
    __index = function(self, k)
        local m = Request[k]
        if m ~= nil then return m end
        local f = lazy[k]
        if f then
            local v = f(self)
            rawset(self, k, v)
            return v
        end
        return nil
    end,
}

-- Every field the runtime and the stock policies set is in the constructor,
-- even when nil: the table is then made with room for all of them, instead
-- of growing (a rehash) as they are set during the request.
function _M.new(r, method, path, host, params, endpoint, pipeline)
    return setmetatable({ _r = r, method = method, path = path, host = host, params = params,
        endpoint = endpoint, pipeline = pipeline, responded = nil, sent = nil, user = nil,
        url = nil, query = nil, tail = nil }, Request_mt)
end

function Request:header(name) return get_header(self._r, REQUEST, name) end
function Request:set_header(name, v) edit_header(self._r, REQUEST, HDR_SET, name, v) end
function Request:add_header(name, v) edit_header(self._r, REQUEST, HDR_ADD, name, v) end
function Request:remove_header(name) edit_header(self._r, REQUEST, HDR_DEL, name) end
function Request:headers() return all_headers(self._r, REQUEST) end

-- Ends the request with a response made here (access phase).
function Request:respond(status, body, headers)
    local r = self._r
    C.tg_resp_set_status(r, status)
    body = body ~= nil and tostring(body) or ""
    C.tg_resp_set_body(r, body, #body)
    if headers then
        for k, v in pairs(headers) do
            edit_header(r, RESPONSE, HDR_SET, k, v)
        end
    end
    self.responded = true
end

-- Proxies to peer; yields until the upstream answered. Returns 0 on
-- success, or 502/504 with a reason when the upstream failed.
--
-- last: the caller does nothing after this but let a failure be answered
-- with the gateway's own 502 "Bad gateway." / 504 "Gateway timeout." (as the
-- proxy policy does), which is then made here. And when no policy of the
-- pipeline has a response or log phase (req.tail), Lua is not resumed at
-- all: this returns 0 at once, and C starts the exchange when the request's
-- coroutine is done and finishes the request itself (TG_PROXY_LAST).
function Request:proxy(peer, target, flags, timeout, last)
    local r = self._r
    local tail = last and self.tail
    if C.tg_req_proxy(r, peer, target, target and #target or 0,
            tail and flags + PROXY_LAST or flags, timeout or 0) ~= 0 then
        error("proxy: no upstream peer", 2)
    end
    if tail then
        self.responded = true
        return 0
    end
    local err = yield(core.YIELD_PROXY)
    self.responded = true
    if err ~= 0 then
        if last then C.tg_req_proxy_failed(r) end
        local reason = C.tg_req_proxy_error(r)
        return err, reason ~= nil and ffi_string(reason) or "upstream failed"
    end
    return 0
end

-- The whole request body, read on demand (yields while it arrives). nil,
-- err when it is already streaming upstream.
function Request:body()
    local r = self._r
    local rc = C.tg_req_read_body(r)
    if rc == core.AGAIN then
        yield(core.YIELD_WAIT) -- a body that cannot be read ends the request in C
    elseif rc ~= 0 then
        return nil, "the request body is already on its way upstream"
    end
    local p = C.tg_req_body(r, lenp)
    return ffi_string(p, lenp[0])
end

-- Replaces the request body sent upstream (Content-Length follows).
function Request:set_body(s)
    local _, err = self:body()
    if err then error("set_body: " .. err, 2) end
    s = tostring(s)
    if C.tg_req_set_body(self._r, s, #s) ~= 0 then
        error("set_body: the request is already proxied", 2)
    end
end

-- Records why the request was refused or failed: the access log's "error".
function Request:log_error(msg)
    self.error = msg
    C.tg_req_set_error(self._r, msg, #msg)
end

-- Suspends this request for `seconds`; the worker serves others meanwhile.
function Request:sleep(seconds)
    if core.sleep_hook then
        -- outside the gateway (tollgate.testing): the test clock moves instead
        return core.sleep_hook(seconds)
    end
    C.tg_req_sleep(self._r, seconds)
    yield(core.YIELD_WAIT)
end

_M.Request = Request
_M.lazy = lazy

return _M
