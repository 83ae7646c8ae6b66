-- proxy: forwards the request to a service endpoint and streams the
-- response back. Express Gateway's options, same names and defaults:
--
--   serviceEndpoints:
--     backend:
--       urls: [http://10.0.0.1:3000, http://10.0.0.2:3000]   # round robin
--   ...
--       - proxy:
--           - action:
--               serviceEndpoint: backend
--               changeOrigin: true     # Host becomes the upstream's (default)
--               stripPath: false       # send only what "*" matched
--               xfwd: false            # add X-Forwarded-For/-Port/-Proto/-Host
--               proxyTimeout: 30000    # ms of upstream inactivity (504 after)
--
-- WebSocket upgrades go through (ws: false stops them): the access phase
-- runs on the handshake, then bytes are relayed both ways until either side
-- closes (tollgate.client.tunnelTimeout of silence ends it).
-- The upstream path is the service URL's path joined with the request URL
-- (runs of "/" collapsed), as http-proxy does. The request id goes
-- upstream as eg-request-id. A refused or reset upstream gives 502
-- "Bad gateway."; a timeout gives 504 (Express Gateway answers 502).

local ffi = require "ffi"
local core = require "tollgate.core"

local C = core.C
local find, sub, gsub = string.find, string.sub, string.gsub
local rawget = rawget

local CHANGE_ORIGIN, XFWD, WS = core.PROXY_CHANGE_ORIGIN, core.PROXY_XFWD, core.PROXY_WS

local OPTIONS = {
    serviceEndpoint = { type = "string", description = "name of the service endpoint" },
    changeOrigin = { type = "boolean", default = true,
        description = "send the upstream's host as Host" },
    stripPath = { type = "boolean", default = false,
        description = "forward only the part of the path that the endpoint's * matched" },
    strategy = { type = "string", enum = { "round-robin" }, default = "round-robin",
        description = "how to pick one of several urls" },
    ignorePath = { type = "boolean", default = false,
        description = "send only the service URL's path" },
    prependPath = { type = "boolean", default = true,
        description = "put the service URL's path before the request's" },
    xfwd = { type = "boolean", default = false, description = "add X-Forwarded-* headers" },
    proxyTimeout = { type = "number", minimum = 0,
        description = "ms of upstream inactivity before a 504" },
    headers = { type = "object", additional = true,
        description = "extra request headers for the upstream" },
    auth = { type = "string", description = "user:password sent upstream as basic auth" },
    secure = { type = "boolean", default = true,
        description = "verify the certificate (chain and host name) of https upstreams" },
    caFile = { type = "string",
        description = "https upstreams: trusted CAs (PEM) instead of the system's" },
    certFile = { type = "string", description = "https upstreams: a client certificate (mTLS)" },
    keyFile = { type = "string", description = "https upstreams: the client certificate's key" },
    target = { type = "object", additional = true,
        description = "Express Gateway's proxyOptions.target: caFile, certFile, keyFile" },
    preserveHeaderKeyCase = { type = "boolean", default = false,
        description = "accepted for compatibility: header case is always preserved" },
    ws = { type = "boolean", default = true,
        description = "let WebSocket upgrades through (the access phase runs on the handshake)" },
    -- Express Gateway options tollgate does not implement: refused when set
    followRedirects = { type = "boolean", default = false, description = "not supported" },
    toProxy = { type = "boolean", default = false, description = "not supported" },
    proxyUrl = { type = "string", description = "not supported" },
    autoRewrite = { type = "boolean", default = false, description = "not supported" },
    hostRewrite = { type = "string", description = "not supported" },
    protocolRewrite = { type = "string", description = "not supported" },
    timeout = { type = "number", description = "not supported (see tollgate.client)" },
    proxyOptions = { type = "object", additional = true,
        description = "deprecated: options merged over these" },
}

local UNSUPPORTED = {
    followRedirects = true, toProxy = true, proxyUrl = true, autoRewrite = true,
    hostRewrite = true, protocolRewrite = true, timeout = true,
}

local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$" -- RFC 9110 field names

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
    return ((s:gsub(".", function(x)
        local r, b = "", x:byte()
        for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
        return r
    end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
        if #x < 6 then return "" end
        local c = 0
        for i = 1, 6 do c = c + (sub(x, i, i) == "1" and 2 ^ (6 - i) or 0) end
        return sub(B64, c + 1, c + 1)
    end) .. ({ "", "==", "=" })[#s % 3 + 1])
end

local function merge(conf, opts, where)
    if type(opts) ~= "table" then return true end
    for k, v in pairs(opts) do
        if OPTIONS[k] == nil or k == "proxyOptions" then
            return nil, where .. "." .. k .. ": unknown proxy option"
        end
        conf[k] = v
    end
    return true
end

-- http-proxy's urlJoin: the parts joined with "/", runs of "/" collapsed,
-- the query kept as it was.
local function join(base, url)
    local q = find(url, "?", 1, true)
    local path, query = url, nil
    if q then path, query = sub(url, 1, q - 1), sub(url, q) end
    local joined
    if base == "" then joined = path
    elseif path == "" then joined = base
    else joined = base .. "/" .. path end
    joined = gsub(joined, "/+", "/")
    -- as urlJoin: a URL inside the path keeps its "//" (first one only)
    local h = find(joined, "http:/", 1, true)
    if h then joined = sub(joined, 1, h + 5) .. "/" .. sub(joined, h + 6) end
    h = find(joined, "https:/", 1, true)
    if h then joined = sub(joined, 1, h + 6) .. "/" .. sub(joined, h + 7) end
    if sub(joined, 1, 1) ~= "/" then joined = "/" .. joined end
    return query and (joined .. query) or joined
end

local function new(conf, env)
    local ok, err = merge(conf, conf.proxyOptions, "proxyOptions")
    if not ok then return nil, err end
    if not conf.serviceEndpoint then
        return { missing = true }
    end
    local svc = env.services[conf.serviceEndpoint]
    if not svc then
        return nil, "service endpoint " .. conf.serviceEndpoint ..
            " (referenced in proxy policy configuration) does not exist", "serviceEndpoint"
    end
    ok, err = merge(conf, svc.proxyOptions, "serviceEndpoints." .. svc.name .. ".proxyOptions")
    if not ok then return nil, err end
    if type(conf.target) == "table" then
        for _, k in ipairs { "caFile", "certFile", "keyFile" } do
            if conf.target[k] ~= nil and conf[k] == nil then conf[k] = conf.target[k] end
        end
    end
    for k in pairs(UNSUPPORTED) do
        local v = conf[k]
        if v ~= nil and v ~= false then
            return nil, k .. ": not supported by tollgate"
        end
    end

    local function path_of(f)
        if f == nil then return nil end
        if sub(f, 1, 1) ~= "/" then f = env.dir .. "/" .. f end
        if env.watch then env.watch(f) end -- a renewed certificate reloads the config
        return f
    end
    local ca, cert, key = path_of(conf.caFile), path_of(conf.certFile), path_of(conf.keyFile)
    local urls = {}
    for i, u in ipairs(svc.urls) do
        local tls = nil
        if u.scheme == "https" and core.has_c then
            local errbuf = ffi.new("char[256]")
            tls = C.tg_tls_client_get(conf.secure and 1 or 0, ca, cert, key, errbuf, 256)
            if tls == nil then
                return nil, "serviceEndpoints." .. svc.name .. ": TLS: " .. ffi.string(errbuf)
            end
            if not conf.secure and env.warn then
                env.warn("serviceEndpoints." .. svc.name .. ": secure: false: the certificate of " ..
                    u.url .. " is not verified")
            end
        end
        local peer = core.has_c and C.tg_peer_get(u.host, #u.host, u.port, tls) or nil
        urls[i] = { peer = peer, path = conf.prependPath and u.path or "", url = u.url }
    end

    -- checked here, as req:set_header would check them on every request
    for k, v in pairs(conf.headers or {}) do
        if type(k) ~= "string" or #k > 255 or not find(k, TOKEN) then
            return nil, "invalid header name " .. tostring(k), "headers"
        end
        if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
            return nil, "expected a string value", "headers." .. k
        end
        if find(tostring(v), "[\r\n%z]") then
            return nil, "a header value cannot have CR, LF or NUL", "headers." .. k
        end
    end

    local self = {
        urls = urls,
        n = #urls,
        next = 0,
        strip = conf.stripPath,
        ignore = conf.ignorePath,
        flags = (conf.changeOrigin and CHANGE_ORIGIN or 0) + (conf.xfwd and XFWD or 0) +
            (conf.ws and WS or 0),
        timeout = conf.proxyTimeout and conf.proxyTimeout / 1000 or 0,
        headers = conf.headers,
    }
    if conf.auth then
        self.headers = self.headers or {}
        self.headers.Authorization = "Basic " .. base64(conf.auth)
    end
    return self
end

local function access(self, req)
    if self.missing then
        -- Express Gateway: res.sendStatus(502)
        return 502, "Bad Gateway", { ["Content-Type"] = "text/plain; charset=utf-8" }
    end
    local u = self.urls[self.next % self.n + 1]
    self.next = self.next + 1

    local target
    local url = rawget(req, "url")
    if self.ignore then
        target = join(u.path, "")
    elseif self.strip then
        local rest = req.params and req.params.raw0 or ""
        local q = req.query
        target = join(u.path, q and (rest .. "?" .. q) or rest)
    elseif u.path ~= "/" or url ~= nil or find(req.path, "//", 1, true) then
        target = join(u.path, url or req.url)
    end
    -- target nil: the client's own request-target goes upstream untouched

    if self.headers then
        for k, v in pairs(self.headers) do req:set_header(k, v) end
    end
    -- last = true: an upstream failure is answered with the gateway's 502
    -- "Bad gateway." or 504 "Gateway timeout." (text/html), as Express
    -- Gateway's proxy policy does
    req:proxy(u.peer, target, self.flags, self.timeout, true)
end

return {
    name = "proxy",
    schema = {
        description = "Forwards the request to a service endpoint.",
        properties = OPTIONS,
    },
    new = new,
    access = access,
    join = join,
}
