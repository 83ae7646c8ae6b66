-- tollgate.conditions: Express Gateway's step conditions, compiled once at
-- load into functions of the request.
--
--   always, never
--   allOf { conditions = [...] }        every one holds
--   oneOf { conditions = [...] }        any one holds (Express Gateway's meaning)
--   not { condition = {...} }
--   pathExact { path }                  req.url == path (the query is part of it)
--   pathMatch { pattern }               regex search in req.url (unanchored)
--   method { methods = "GET" | [...] }  exact, upper case
--   hostMatch { pattern }               glob on the Host header, port included
--   authenticated, anonymous            an auth policy set req.user, or not
--   tlsClientAuthenticated              a verified client certificate (HTTPS)
--   expression { lua }                  Lua with `req` in scope; holds unless nil/false
--                                       (Express Gateway's JavaScript `expression` is
--                                       refused at load, with the Lua to write instead)
--
-- A condition may also be a Lua function of the request (Lua configs).
-- compile(cfg, path) returns fn, or nil, message, at (see tollgate.schema).

local regex = require "tollgate.regex"
local schema = require "tollgate.schema"
local template = require "tollgate.template"

local type, ipairs, pairs = type, ipairs, pairs
local find, gsub, sub = string.find, string.gsub, string.sub
local tonumber, tostring = tonumber, tostring

local _M = {}

local compile

local function always() return true end
local function never() return false end

-- minimatch's glob for hostMatch: "*" any run without "/", "?" one
-- character, "[...]" a class; case-sensitive, as in Express Gateway.
local function glob_to_pattern(g)
    local out = { "^" }
    local i, n = 1, #g
    while i <= n do
        local c = sub(g, i, i)
        if c == "*" then
            out[#out + 1] = "[^/]*"
        elseif c == "?" then
            out[#out + 1] = "[^/]"
        elseif c == "[" then
            local close = find(g, "]", i + 1, true)
            if close then
                local class = sub(g, i + 1, close - 1)
                class = gsub(class, "^!", "^")
                class = gsub(class, "%%", "%%%%")
                out[#out + 1] = "[" .. class .. "]"
                i = close
            else
                out[#out + 1] = "%["
            end
        elseif find(c, "[%^%$%(%)%%%.%]%+%-]") then
            out[#out + 1] = "%" .. c
        else
            out[#out + 1] = c
        end
        i = i + 1
    end
    out[#out + 1] = "$"
    return table.concat(out)
end
_M.glob_to_pattern = glob_to_pattern

-- minimatch's brace expansion: "{a,b}.x" -> "a.x", "b.x"; "{1..3}" -> 1, 2, 3.
local function expand_braces(p)
    local s, e = find(p, "%b{}")
    if not s then return { p } end
    local head, body, tail = sub(p, 1, s - 1), sub(p, s + 1, e - 1), sub(p, e + 1)
    local alts = {}
    local a, b = body:match("^(%-?%d+)%.%.(%-?%d+)$")
    if a then
        local step = tonumber(a) <= tonumber(b) and 1 or -1
        for i = tonumber(a), tonumber(b), step do alts[#alts + 1] = tostring(i) end
    elseif find(body, ",", 1, true) then
        local depth, start = 0, 1
        for i = 1, #body do
            local c = sub(body, i, i)
            if c == "{" then depth = depth + 1
            elseif c == "}" then depth = depth - 1
            elseif c == "," and depth == 0 then
                alts[#alts + 1] = sub(body, start, i - 1)
                start = i + 1
            end
        end
        alts[#alts + 1] = sub(body, start)
    else
        -- "{x}" is not a set: literal braces
        local rest = expand_braces(tail)
        local out = {}
        for _, r in ipairs(rest) do out[#out + 1] = head .. "{" .. body .. "}" .. r end
        return out
    end
    local out = {}
    for _, alt in ipairs(alts) do
        for _, x in ipairs(expand_braces(head .. alt .. tail)) do out[#out + 1] = x end
    end
    return out
end
_M.expand_braces = expand_braces

local CONDITION_REF = { type = "object", additional = true, description = "a condition" }

local defs = {
    always = { schema = {}, build = function() return always end },
    never = { schema = {}, build = function() return never end },

    allOf = {
        schema = { properties = { conditions = { type = "array", required = true,
            items = CONDITION_REF, description = "conditions that must all hold" } } },
        build = function(cfg, path)
            local fns = {}
            for i, c in ipairs(cfg.conditions) do
                local fn, err, at = compile(c, path .. ".conditions[" .. i .. "]")
                if not fn then return nil, err, at end
                fns[i] = fn
            end
            local n = #fns
            return function(req)
                for i = 1, n do
                    if not fns[i](req) then return false end
                end
                return true
            end
        end,
    },

    oneOf = {
        schema = { properties = { conditions = { type = "array", required = true,
            items = CONDITION_REF, description = "conditions of which one must hold" } } },
        build = function(cfg, path)
            local fns = {}
            for i, c in ipairs(cfg.conditions) do
                local fn, err, at = compile(c, path .. ".conditions[" .. i .. "]")
                if not fn then return nil, err, at end
                fns[i] = fn
            end
            local n = #fns
            return function(req)
                for i = 1, n do
                    if fns[i](req) then return true end
                end
                return false
            end
        end,
    },

    ["not"] = {
        schema = { properties = { condition = { type = "object", required = true,
            additional = true, description = "the condition to negate" } } },
        build = function(cfg, path)
            local fn, err, at = compile(cfg.condition, path .. ".condition")
            if not fn then return nil, err, at end
            return function(req) return not fn(req) end
        end,
    },

    pathExact = {
        schema = { properties = { path = { type = "string", required = true,
            description = "the request URL, query included" } } },
        build = function(cfg)
            local want = cfg.path
            return function(req) return req.url == want end
        end,
    },

    pathMatch = {
        schema = { properties = { pattern = { type = "string", required = true,
            description = "a regular expression searched in the request URL" } } },
        build = function(cfg, path)
            local re, err = regex.compile(cfg.pattern)
            if not re then return nil, path .. ".pattern: " .. err end
            return function(req) return re:test(req.url) end
        end,
    },

    method = {
        schema = { properties = { methods = { type = { "string", "array" }, required = true,
            items = { type = "string" }, description = "an HTTP method or a list of them" } } },
        build = function(cfg)
            local set = {}
            if type(cfg.methods) == "string" then
                set[cfg.methods] = true
            else
                for _, m in ipairs(cfg.methods) do set[m] = true end
            end
            return function(req) return set[req.method] == true end
        end,
    },

    hostMatch = {
        schema = { properties = { pattern = { type = "string", required = true,
            description = "a glob matched against the Host header" } } },
        build = function(cfg)
            local pats = {}
            for i, p in ipairs(expand_braces(cfg.pattern)) do pats[i] = glob_to_pattern(p) end
            local n = #pats
            return function(req)
                local h = req:header("host")
                if h == nil then return false end
                for i = 1, n do
                    if find(h, pats[i]) then return true end
                end
                return false
            end
        end,
    },

    authenticated = { schema = {}, build = function()
        return function(req) return req.user ~= nil end
    end },

    anonymous = { schema = {}, build = function()
        return function(req) return req.user == nil end
    end },

    tlsClientAuthenticated = { schema = {}, build = function()
        return function(req) return req.tls_client_verified == true end
    end },
}

-- Registers a condition (name, schema, build(cfg, path) -> fn).
function _M.register(name, def)
    defs[name] = def
end

compile = function(cfg, path)
    path = path or "condition"
    if type(cfg) == "function" then return cfg end
    if type(cfg) ~= "table" or type(cfg.name) ~= "string" then
        return nil, path .. ": a condition needs a name (one of " .. _M.names() .. ")", { cfg }
    end
    local def = defs[cfg.name]
    if not def then
        return nil, path .. ".name: unknown condition \"" .. cfg.name .. "\" (known: " ..
            _M.names() .. ")", { cfg, "name" }
    end
    local params = {}
    for k, v in pairs(cfg) do
        if k ~= "name" then params[k] = v end
    end
    local s = def.schema
    if not s.properties then s = { properties = {} } end
    local conf, err, at = schema.validate(s, params, path)
    if not conf then
        if at and at[1] == params then at = { cfg, at[2] } end
        return nil, err, at
    end
    local fn, berr, bat = def.build(conf, path)
    if not fn then return nil, berr, bat or { cfg, "pattern" } end
    return fn
end
_M.compile = compile

function _M.names()
    local names = {}
    for k in pairs(defs) do names[#names + 1] = k end
    table.sort(names)
    return table.concat(names, ", ")
end

return _M
