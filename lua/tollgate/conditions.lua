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

-- a condition: a mapping with a name, or (Lua configs) a function of req
local CONDITION_REF = { type = { "object", "function" }, additional = true,
    description = "a condition" }

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
        schema = { properties = { condition = { type = { "object", "function" }, required = true,
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

-- ---- expression: Lua instead of Express Gateway's JavaScript -----------------------

-- A Lua rendering of a simple JavaScript snippet, for error messages: string
-- literals, numbers, paths from req / egContext / consumer, comparisons,
-- && || ! + and assignments to req.url or a request header. nil when the
-- snippet is anything else.
local JS_OPS = {
    ["==="] = "==", ["=="] = "==", ["!=="] = "~=", ["!="] = "~=", ["&&"] = "and",
    ["||"] = "or", ["<="] = "<=", [">="] = ">=", ["<"] = "<", [">"] = ">", ["("] = "(",
    [")"] = ")", ["!"] = "not", ["+"] = "+", ["="] = "=",
}

local function js_tokens(js)
    local toks, pos, n = {}, 1, #js
    while true do
        pos = find(js, "[^%s]", pos)
        if not pos then return toks end
        local c = sub(js, pos, pos)
        if c == "'" or c == '"' then
            local e = pos + 1
            while true do
                local q = find(js, "[\\" .. c .. "]", e)
                if not q then return nil end
                if sub(js, q, q) == "\\" then e = q + 2 else e = q break end
            end
            toks[#toks + 1] = { k = "str", v = sub(js, pos, e) }
            pos = e + 1
        elseif find(c, "%d") then
            local num = js:match("^%d+%.?%d*", pos)
            toks[#toks + 1] = { k = "num", v = num }
            pos = pos + #num
        elseif find(c, "[%a_$]") then
            local root = js:match("^[%a_$][%w_$]*", pos)
            pos = pos + #root
            local keys = {}
            while pos <= n do
                local name = js:match("^%.([%a_$][%w_$]*)", pos)
                if name then
                    keys[#keys + 1] = name
                    pos = pos + 1 + #name
                else
                    local q, key = js:match("^%[%s*(['\"])(.-)%1%s*%]", pos)
                    if not q then break end
                    keys[#keys + 1] = key
                    pos = pos + #js:match("^%b[]", pos)
                end
            end
            toks[#toks + 1] = { k = "path", root = root, keys = keys }
        elseif c == ";" then
            toks[#toks + 1] = { k = ";" }
            pos = pos + 1
        else
            local op = js:match("^[=!]==", pos) or js:match("^[=!<>]=", pos) or
                js:match("^&&", pos) or js:match("^||", pos) or js:match("^[()!+<>=]", pos)
            if not op then return nil end
            toks[#toks + 1] = { k = "op", v = op }
            pos = pos + #op
        end
    end
end

local REQ_FIELDS = { method = "req.method", url = "req.url", originalUrl = "req.url",
    path = "req.path", ip = "req.ip", hostname = "req.host" }

-- Lua for a JavaScript path, and the header name when it names a request header.
local function js_path(t)
    local root, keys = t.root, t.keys
    if #keys == 0 then
        if root == "true" or root == "false" then return root end
        if root == "null" or root == "undefined" then return "nil" end
        if root == "requestID" then return "req.id" end
        if root == "consumer" then return "req.user" end
        return nil
    end
    if root == "egContext" then
        local first = table.remove(keys, 1)
        if first == "requestID" and #keys == 0 then return "req.id" end
        if first == "consumer" then root = "consumer"
        elseif first == "req" then root = "req"
        else return nil end
    end
    if root == "consumer" then
        return "req.user" .. (#keys > 0 and ("." .. table.concat(keys, ".")) or "")
    end
    if root ~= "req" then return nil end
    if keys[1] == "headers" and #keys == 2 then
        local name = string.lower(keys[2])
        return "req:header('" .. name .. "')", name
    end
    if keys[1] == "user" then return "req." .. table.concat(keys, ".") end
    if #keys == 1 then return REQ_FIELDS[keys[1]] end
    return nil
end

local function lua_expr(toks, i, j)
    local out = {}
    for k = i, j do
        local t = toks[k]
        if t.k == "str" or t.k == "num" then
            out[#out + 1] = t.v
        elseif t.k == "path" then
            local lua = js_path({ root = t.root, keys = { unpack(t.keys) } })
            if not lua then return nil end
            out[#out + 1] = lua
        elseif t.k == "op" and t.v ~= "=" then
            local op = JS_OPS[t.v]
            if op == "+" then
                local a, b = toks[k - 1], toks[k + 1]
                if not (a and b and a.k == "num" and b.k == "num") then op = ".." end
            end
            out[#out + 1] = op
        else
            return nil
        end
    end
    if #out == 0 then return nil end
    return (table.concat(out, " "):gsub("%( ", "("):gsub(" %)", ")"):gsub("not %(", "not ("))
end

function _M.lua_hint(js)
    if type(js) ~= "string" then return nil end
    local toks = js_tokens(js)
    if not toks then return nil end
    local stmts, start = {}, 1
    for k = 1, #toks + 1 do
        local t = toks[k]
        if t == nil or t.k == ";" then
            if k > start then
                local eq
                for m = start, k - 1 do
                    if toks[m].k == "op" and toks[m].v == "=" then eq = m break end
                end
                local lua
                if eq then
                    local lhs = toks[start]
                    local rhs = lua_expr(toks, eq + 1, k - 1)
                    if eq ~= start + 1 or lhs.k ~= "path" or not rhs then return nil end
                    local target, header = js_path({ root = lhs.root, keys = { unpack(lhs.keys) } })
                    if header then
                        lua = "req:set_header('" .. header .. "', " .. rhs .. ")"
                    elseif target == "req.url" then
                        lua = "req.url = " .. rhs
                    else
                        return nil
                    end
                else
                    lua = lua_expr(toks, start, k - 1)
                    if not lua then return nil end
                end
                stmts[#stmts + 1] = lua
            end
            start = k + 1
        end
    end
    if #stmts == 0 then return nil end
    return table.concat(stmts, "; ")
end

-- `lua: ...` as YAML, quoted so it can be pasted.
local function yaml_lua(code)
    if not find(code, '"', 1, true) then return 'lua: "' .. code .. '"' end
    return "lua: '" .. gsub(code, "'", "''") .. "'"
end

-- The refusal for JavaScript: what to write instead.
function _M.javascript_refusal(option, js, example)
    local hint = _M.lua_hint(js)
    local msg = option .. ": Express Gateway's JavaScript cannot run in tollgate; write Lua " ..
        "with req in scope instead"
    if hint then return msg .. ": " .. yaml_lua(hint) end
    return msg .. ", for example " .. yaml_lua(example) ..
        " (req.method, req.url, req:header(name), req.user, req.ip, req.id)"
end

defs.expression = {
    schema = {
        properties = {
            lua = { type = "string",
                description = "Lua expression with req in scope; holds unless nil or false" },
            expression = { type = "string",
                description = "Express Gateway's JavaScript: refused, with the Lua to write" },
        },
        check = function(c)
            if c.expression ~= nil then
                return nil, _M.javascript_refusal("expression", c.expression,
                    "req:header('x-debug') == 'yes'")
            end
            if c.lua == nil then return nil, "lua: is required (a Lua expression with req in scope)" end
            return true
        end,
    },
    build = function(cfg, path)
        local fn, err = template.compile_lua(cfg.lua, path .. ".lua")
        if not fn then
            -- the error of the code read as an expression, which it is meant to be
            local _, experr = loadstring("return " .. cfg.lua, "=" .. path .. ".lua")
            return nil, path .. ".lua: " .. (experr or err)
        end
        return function(req)
            local v = fn(req)
            return v ~= nil and v ~= false
        end
    end,
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
