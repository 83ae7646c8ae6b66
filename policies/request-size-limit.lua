-- request-size-limit: refuses request bodies larger than a limit (not in
-- Express Gateway):
--
--   - request-size-limit:
--       - action:
--           maxSize: 1mb            # bytes, or a number with b, kb, mb or gb (1024-based)
--
-- A body announced by Content-Length is judged by it: over maxSize, the
-- request is answered at once with statusCode (413) and message (text/plain),
-- without reading the body (and without 100 Continue, for a client that
-- asked for it). A chunked body has no length up front: it is read whole
-- (buffered in the gateway) and refused if it turns out larger, otherwise it
-- goes upstream as read, with a Content-Length. Buffering is bounded by
-- tollgate.client.maxBufferedBody (8 MiB by default; the gateway answers 413
-- itself above it), so maxSize may not exceed maxBufferedBody unless chunked
-- bodies are refused outright with requireContentLength: true (411 Length
-- Required). For a limit on every route, tollgate.client.maxBodySize does the
-- same in the gateway's core, while streaming.

local tonumber, tostring, type = tonumber, tostring, type
local lower, match, find = string.lower, string.match, string.find

local DEFAULT_MAX_BUFFERED = 8 * 1024 * 1024
local UNITS = { [""] = 1, b = 1, kb = 1024, mb = 1024 ^ 2, gb = 1024 ^ 3 }
local TEXT = { ["Content-Type"] = "text/plain; charset=utf-8" }

-- A size in bytes from a number or "10kb"-style text, or nil, err.
local function parse_size(v)
    if type(v) == "number" then return v end
    local n, unit = match(lower(v), "^%s*(%d+%.?%d*)%s*(%a*)%s*$")
    local mult = unit and UNITS[unit]
    if not n or not mult then
        return nil, "expected a number of bytes or a size such as 512kb or 10mb, got \"" .. v .. "\""
    end
    return math.floor(tonumber(n) * mult)
end

local function new(conf, env)
    local max, err = parse_size(conf.maxSize)
    if not max then return nil, "maxSize: " .. err end
    if max < 0 then return nil, "maxSize: must be at least 0" end
    local settings = env and env.settings
    local buffered = settings and settings.max_buffered_body or DEFAULT_MAX_BUFFERED
    if max > buffered and not conf.requireContentLength then
        return nil, "maxSize: " .. max .. " bytes is more than tollgate.client.maxBufferedBody (" ..
            buffered .. "), the most a chunked body can be read to measure it; raise " ..
            "maxBufferedBody, or set requireContentLength: true to refuse chunked bodies"
    end
    return {
        max = max,
        require_length = conf.requireContentLength,
        status = conf.statusCode,
        message = conf.message,
    }
end

local function too_large(self, req, size)
    req:log_error("request-size-limit: body of " .. size .. " bytes, more than " .. self.max)
    return self.status, self.message, TEXT
end

local function access(self, req)
    local cl = req:header("content-length")
    if cl then
        local n = tonumber(cl)
        if n and n > self.max then return too_large(self, req, cl) end
        return
    end
    local te = req:header("transfer-encoding")
    if not te or not find(lower(te), "chunked", 1, true) then return end
    if self.require_length then
        req:log_error("request-size-limit: chunked body refused (requireContentLength)")
        return 411, "Length Required", TEXT
    end
    local body, err = req:body()
    if not body then
        req:log_error("request-size-limit: " .. tostring(err))
        return
    end
    if #body > self.max then return too_large(self, req, #body) end
end

return {
    name = "request-size-limit",
    schema = {
        description = "Refuses request bodies larger than maxSize.",
        properties = {
            maxSize = { type = { "integer", "string" }, required = true,
                description = "the largest body allowed: bytes, or a size such as 512kb or 10mb" },
            requireContentLength = { type = "boolean", default = false,
                description = "refuse chunked bodies (no Content-Length) with 411 instead of reading them" },
            statusCode = { type = "integer", default = 413, minimum = 400, maximum = 599,
                description = "status of a refused request" },
            message = { type = "string", default = "Payload Too Large",
                description = "body of a refused request (text/plain)" },
        },
    },
    new = new,
    access = access,
    parse_size = parse_size,
}
