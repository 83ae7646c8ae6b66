-- headers: adds request headers, sent upstream, whose values are computed
-- per request. Express Gateway's options, same names and defaults:
--
--   - headers:
--       - action:
--           headersPrefix: X-Gateway-
--           forwardHeaders:
--             Request-Id: requestID            # X-Gateway-Request-Id: <request id>
--             Client: req.ip
--             Source: "'tollgate'"             # a quoted string literal
--             Agent: { lua: "req:header('user-agent') or 'none'" }
--
-- Each value is a JavaScript expression in Express Gateway (not a template):
-- a quoted literal "'text'", a number, or a path such as req.method,
-- req.headers['x-a'], req.hostname, req.user.sub, egContext.requestID, joined
-- with ||; anything else is refused at load, and { lua: "..." } takes Lua
-- with `req` in scope. The header name is headersPrefix followed by the key,
-- as written; it replaces a header of that name the client sent. A value that
-- evaluates to nothing (a missing header, no user) adds no header (Express
-- Gateway would set the header to undefined).

local template = require "tollgate.template"

local pairs, type, tostring = pairs, type, tostring
local find = string.find
local js_string = template.js_string

local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"

local function new(conf)
    local list = {}
    local names = {}
    for k in pairs(conf.forwardHeaders) do names[#names + 1] = tostring(k) end
    table.sort(names)
    for _, k in ipairs(names) do
        local name = conf.headersPrefix .. k
        if not find(name, TOKEN) then
            return nil, "forwardHeaders." .. k .. ": \"" .. name .. "\" is not a valid header name"
        end
        local v = conf.forwardHeaders[k]
        local fn, err = template.compile_value(v, "expression", "forwardHeaders." .. k)
        if not fn then return nil, "forwardHeaders." .. k .. ": " .. err end
        list[#list + 1] = { name = name, fn = fn }
    end
    return { list = list, n = #list }
end

local function access(self, req)
    local list = self.list
    for i = 1, self.n do
        local h = list[i]
        local v = h.fn(req)
        if v ~= nil then
            req:set_header(h.name, type(v) == "string" and v or js_string(v))
        end
    end
end

return {
    name = "headers",
    schema = {
        description = "Adds request headers computed from the request, sent upstream.",
        properties = {
            headersPrefix = { type = "string", default = "",
                description = "put before every header name" },
            forwardHeaders = { type = "object", additional = true, required = true,
                description = "header name: value, an expression (\"'literal'\", req.ip, " ..
                    "req.headers['x-a'], ...) or { lua: ... }" },
        },
    },
    new = new,
    access = access,
}
