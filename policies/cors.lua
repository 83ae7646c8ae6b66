-- cors: Cross-Origin Resource Sharing headers, and preflight requests
-- answered by the gateway. Express Gateway's policy is the `cors` npm module;
-- same options, defaults and headers:
--
--   - cors:
--       - action:
--           origin: [https://app.example.com, '/^https:\/\/.*\.example\.com$/']
--           methods: [GET, POST]
--           allowedHeaders: [Content-Type, Authorization]
--           exposedHeaders: [X-Request-Id]
--           credentials: true
--           maxAge: 600
--
-- origin:
--   "*" (default)       Access-Control-Allow-Origin: *
--   "https://a.com"     always that value, with Vary: Origin
--   true                the request's Origin reflected, with Vary: Origin
--   false               the policy does nothing (as the cors module)
--   a list              the request's Origin when it is in the list (exact
--                       strings, or regexes), nothing otherwise; Vary: Origin
--   "/pattern/flags"    a regular expression (PCRE; flags i, m, s, u; g and y
--                       are ignored), tested against the Origin like a list item
-- Express Gateway writes a regex with the YAML tag `!!js/regexp /pattern/`;
-- tollgate's YAML loader refuses that tag, so write the same "/pattern/" as a
-- plain (quoted) string instead.
--
-- Every OPTIONS request is a preflight (the cors module does not look at
-- Access-Control-Request-Method): it gets Allow-Origin, -Credentials,
-- -Methods, -Headers (allowedHeaders, or the request's
-- Access-Control-Request-Headers reflected when unset, with Vary), -Max-Age
-- and -Expose-Headers, and is answered at once with optionsSuccessStatus (204)
-- and an empty body, unless preflightContinue passes it down the pipeline.
-- Other requests go on; their response, from the upstream or from a later
-- policy (a 401, a 429), gets Allow-Origin, -Credentials and -Expose-Headers.
-- The OPTIONS request must reach the pipeline: an apiEndpoint that lists
-- `methods` needs OPTIONS among them (as in Express Gateway).
--
-- Unlike Express Gateway (where the upstream's headers overwrite the
-- policy's), these headers replace any the upstream sent, and Origin is added
-- to the upstream's Vary rather than replacing it.

local regex = require "tollgate.regex"

local type, ipairs, concat, tostring = type, ipairs, table.concat, tostring
local lower, match = string.lower, string.match

local DEFAULT_METHODS = { "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE" }

local LIST = { type = { "string", "array" }, items = { type = "string" } }

-- "/pattern/flags" as a regex, or nil, err; false when s is not one.
local function compile_regex(s)
    local pattern, flags = match(s, "^/(.+)/(%a*)$")
    if not pattern then return false end
    local prefix, pass = "", ""
    for f in flags:gmatch(".") do
        if f == "m" or f == "s" then prefix = prefix .. "(?" .. f .. ")"
        elseif f == "i" or f == "u" then pass = pass .. f
        elseif f ~= "g" and f ~= "y" then
            return nil, "unknown regular expression flag \"" .. f .. "\" in " .. s
        end
    end
    return regex.compile(prefix .. pattern, pass)
end

local function list_value(v)
    if type(v) == "table" then return concat(v, ",") end
    return v
end

-- Adds fields to a Vary value, as the vary module does.
local function vary(current, fields)
    if current == nil or current == "" then return fields end
    if current == "*" then return current end
    local have = {}
    for f in current:gmatch("[^,%s]+") do have[lower(f)] = true end
    local out = current
    for f in fields:gmatch("[^,%s]+") do
        if f == "*" then return "*" end
        if not have[lower(f)] then
            out = out .. ", " .. f
            have[lower(f)] = true
        end
    end
    return out
end

local function new(conf)
    local self = {
        credentials = conf.credentials == true,
        preflight_continue = conf.preflightContinue,
        status = conf.optionsSuccessStatus,
        methods = list_value(conf.methods),
        allowed = conf.allowedHeaders ~= nil and list_value(conf.allowedHeaders) or nil,
        exposed = conf.exposedHeaders ~= nil and list_value(conf.exposedHeaders) or nil,
        max_age = conf.maxAge ~= nil and tostring(conf.maxAge) or nil,
    }
    if self.exposed == "" then self.exposed = nil end
    local origin = conf.origin
    if origin == false or origin == "" then
        self.disabled = true
    elseif origin == "*" then
        self.fixed = "*"
    elseif origin == true then
        self.reflect_any = true
    else
        local items = origin
        if type(origin) == "string" then
            local re, err = compile_regex(origin)
            if re == nil then return nil, "origin: " .. err end
            if re == false then
                self.fixed, self.vary = origin, true
            end
            items = { origin }
        end
        if not self.fixed then
            local exact, res = {}, {}
            for i, item in ipairs(items) do
                local re, err = compile_regex(item)
                if re == nil then return nil, "origin[" .. i .. "]: " .. err end
                if re then res[#res + 1] = re else exact[item] = true end
            end
            self.exact, self.regexes = exact, res
        end
    end
    return self
end

-- The Access-Control-Allow-Origin value for this request (or nil), and
-- whether Vary: Origin goes with it.
local function allow_origin(self, origin)
    if self.fixed then return self.fixed, self.vary end
    if origin == nil then return nil, true end
    if self.reflect_any or self.exact[origin] then return origin, true end
    local res = self.regexes
    for i = 1, #res do
        if res[i]:test(origin) then return origin, true end
    end
    return nil, true
end

local function access(self, req)
    if self.disabled then return end
    local allowed, vary_origin = allow_origin(self, req:header("origin"))
    local h, nh = {}, 0
    local vary_fields
    if allowed then nh = nh + 1; h[nh] = { "Access-Control-Allow-Origin", allowed } end
    if vary_origin then vary_fields = "Origin" end
    if self.credentials then nh = nh + 1; h[nh] = { "Access-Control-Allow-Credentials", "true" } end

    local preflight = req.method == "OPTIONS"
    if preflight then
        nh = nh + 1; h[nh] = { "Access-Control-Allow-Methods", self.methods }
        local allowed_headers = self.allowed
        if allowed_headers == nil then
            allowed_headers = req:header("access-control-request-headers")
            vary_fields = vary(vary_fields, "Access-Control-Request-Headers")
        end
        if allowed_headers and allowed_headers ~= "" then
            nh = nh + 1; h[nh] = { "Access-Control-Allow-Headers", allowed_headers }
        end
        if self.max_age then nh = nh + 1; h[nh] = { "Access-Control-Max-Age", self.max_age } end
    end
    if self.exposed then nh = nh + 1; h[nh] = { "Access-Control-Expose-Headers", self.exposed } end

    if preflight and not self.preflight_continue then
        local headers = {}
        for i = 1, nh do headers[h[i][1]] = h[i][2] end
        if vary_fields then headers.Vary = vary_fields end
        return self.status, "", headers
    end
    if vary_fields then nh = nh + 1; h[nh] = { "Vary", vary_fields } end
    local ctx = req.ctx
    local mine = ctx.cors
    if not mine then
        mine = {}
        ctx.cors = mine
    end
    mine[self] = h
end

local function response(self, req)
    local mine = req.ctx.cors
    local h = mine and mine[self]
    if not h then return end
    local res = req.response
    for i = 1, #h do
        local name, value = h[i][1], h[i][2]
        if name == "Vary" then
            res:set_header("Vary", vary(res:header("vary"), value))
        else
            res:set_header(name, value)
        end
    end
end

return {
    name = "cors",
    schema = {
        description = "Adds CORS headers and answers preflight (OPTIONS) requests.",
        properties = {
            -- boolean first: tollgate.schema coerces with the first type that takes the
            -- value (true would become "true" with string first)
            origin = { type = { "boolean", "array", "string" }, items = { type = "string" },
                default = "*",
                description = "allowed origins: \"*\", one origin, true (reflect), false (off), " ..
                    "or a list of origins and \"/regex/flags\" strings" },
            methods = { type = LIST.type, items = LIST.items, default = DEFAULT_METHODS,
                description = "Access-Control-Allow-Methods of a preflight (list or string)" },
            allowedHeaders = { type = LIST.type, items = LIST.items,
                description = "Access-Control-Allow-Headers of a preflight; unset: the " ..
                    "request's Access-Control-Request-Headers are reflected" },
            exposedHeaders = { type = LIST.type, items = LIST.items,
                description = "Access-Control-Expose-Headers (list or string)" },
            credentials = { type = "boolean", default = false,
                description = "send Access-Control-Allow-Credentials: true" },
            maxAge = { type = "integer", minimum = 0,
                description = "Access-Control-Max-Age of a preflight, in seconds" },
            preflightContinue = { type = "boolean", default = false,
                description = "pass preflight requests down the pipeline instead of answering them" },
            optionsSuccessStatus = { type = "integer", default = 204, minimum = 200, maximum = 299,
                description = "status of the gateway's answer to a preflight" },
        },
    },
    new = new,
    access = access,
    response = response,
    vary = vary,
}
