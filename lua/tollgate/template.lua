-- tollgate.template: the JavaScript that Express Gateway configs put in
-- option values, compiled once at load into Lua functions of the request.
--
-- There is no JavaScript here, so this covers what configs in the wild use:
--
--   templates     "${req.ip}", "user-${req.user.sub}", "${req.headers['x-api-key']}"
--   expressions   "'literal'", "req.method", "req.headers.host", "egContext.requestID",
--                 "req.headers['x-key'] || req.ip", "`${req.method} ${req.url}`"
--
-- Paths start at req (ip, method, url, originalUrl, path, hostname, protocol,
-- headers, query, params, user), egContext (requestID, consumer, req,
-- apiEndpoint), requestID or consumer. Anything else is refused at load,
-- saying what to write instead: any such option also takes Lua,
--
--   rateLimitBy: { lua: "req:header('x-api-key') or req.ip" }
--
-- where the code is an expression (or a chunk with `return`) with `req` in
-- scope.
--
--   local fn, err = template.compile_template(str)   -- fn(req) -> string
--   local fn, err = template.compile_expression(str) -- fn(req) -> value
--   local fn, err = template.compile_value(v, kind)  -- a string, or { lua = ... }

local schema = require "tollgate.schema"

local type, tostring, tonumber, setmetatable, loadstring, setfenv =
    type, tostring, tonumber, setmetatable, loadstring, setfenv
local sub, find, match, lower, gsub, char = string.sub, string.find, string.match,
    string.lower, string.gsub, string.char
local concat = table.concat

local _M = {}

local HINT = "supported: quoted strings, and paths such as req.ip, req.method, req.url, " ..
    "req.headers['x-name'], req.query.name, req.user.sub, egContext.requestID (joined with ||); " ..
    "for anything else write Lua: { lua: \"...\" }"

-- ---- values of paths -----------------------------------------------------------------

local function decode(s)
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

local function query_param(req, name)
    local q = req.query
    if not q then return nil end
    for pair in q:gmatch("[^&]+") do
        local k, v = match(pair, "^([^=]*)=?(.*)$")
        if decode(k) == name then return decode(v) end
    end
    return nil
end

local function dig(t, keys, i)
    for k = i, #keys do
        if type(t) ~= "table" then return nil end
        t = t[keys[k]]
    end
    return t
end

-- A getter for a path (list of keys after the root), or nil, error.
local function getter(root, keys, text)
    if root == "requestID" then
        if #keys > 0 then return nil end
        return function(req) return req.id end
    end
    if root == "consumer" then
        return function(req) return dig(req.user, keys, 1) end
    end
    if root == "egContext" then
        local first = keys[1]
        local rest = { select(2, unpack(keys)) }
        if first == "requestID" and #rest == 0 then return function(req) return req.id end end
        if first == "consumer" then return function(req) return dig(req.user, rest, 1) end end
        if first == "apiEndpoint" then return function(req) return dig(req.endpoint, rest, 1) end end
        if first == "req" then return getter("req", rest, text) end
        return nil
    end
    if root ~= "req" then return nil end
    local first, second = keys[1], keys[2]
    if first == nil then return nil end
    if first == "headers" then
        if second == nil or #keys > 2 then return nil end
        local name = lower(tostring(second))
        return function(req) return req:header(name) end
    elseif first == "query" then
        if second == nil or #keys > 2 then return nil end
        local name = tostring(second)
        return function(req) return query_param(req, name) end
    elseif first == "params" then
        return function(req) return dig(req.params, keys, 2) end
    elseif first == "user" then
        return function(req) return dig(req.user, keys, 2) end
    elseif #keys == 1 then
        if first == "ip" or first == "method" or first == "url" or first == "path" or first == "id" then
            return function(req) return req[first] end
        elseif first == "originalUrl" then
            return function(req) return req.original_url or req.url end
        elseif first == "hostname" then
            return function(req) return req.host and match(req.host, "^([^:]*)") end
        elseif first == "protocol" then
            return function(req) return req.protocol end
        elseif first == "secure" then
            return function(req) return req.protocol == "https" end
        end
    end
    return nil
end

-- ---- parsing -----------------------------------------------------------------------------

-- A tiny scanner over one JavaScript expression.
local function parse_expression(s, pos, stop)
    local function skip()
        pos = find(s, "[^ \t]", pos) or (#s + 1)
    end
    local function string_lit()
        local q = sub(s, pos, pos)
        local out = {}
        local i = pos + 1
        while i <= #s do
            local c = sub(s, i, i)
            if c == q then
                pos = i + 1
                return concat(out)
            elseif c == "\\" then
                local n = sub(s, i + 1, i + 1)
                out[#out + 1] = ({ n = "\n", t = "\t", r = "\r" })[n] or n
                i = i + 2
            else
                out[#out + 1] = c
                i = i + 1
            end
        end
        return nil
    end

    local function operand()
        skip()
        local c = sub(s, pos, pos)
        if c == "'" or c == '"' then
            local lit = string_lit()
            if not lit then return nil end
            return function() return lit end
        end
        local num = match(s, "^%-?%d+%.?%d*", pos)
        if num then
            pos = pos + #num
            local v = tonumber(num)
            return function() return v end
        end
        local root = match(s, "^[%a_$][%w_$]*", pos)
        if not root then return nil end
        pos = pos + #root
        local keys = {}
        while true do
            c = sub(s, pos, pos)
            if c == "." then
                local name = match(s, "^[%a_$][%w_$]*", pos + 1)
                if not name then return nil end
                keys[#keys + 1] = name
                pos = pos + 1 + #name
            elseif c == "[" then
                pos = pos + 1
                skip()
                local q = sub(s, pos, pos)
                local key
                if q == "'" or q == '"' then
                    key = string_lit()
                else
                    local n = match(s, "^%d+", pos)
                    if n then key = tonumber(n); pos = pos + #n end
                end
                skip()
                if key == nil or sub(s, pos, pos) ~= "]" then return nil end
                pos = pos + 1
                keys[#keys + 1] = key
            else
                break
            end
        end
        return getter(root, keys)
    end

    local parts = {}
    while true do
        local fn = operand()
        if not fn then return nil end
        parts[#parts + 1] = fn
        skip()
        if sub(s, pos, pos + 1) == "||" then
            pos = pos + 2
        else
            break
        end
    end
    skip()
    if pos ~= stop then return nil end
    if #parts == 1 then return parts[1] end
    return function(req)
        for i = 1, #parts do
            local v = parts[i](req)
            if v ~= nil and v ~= false and v ~= "" then return v end
        end
        return nil
    end
end

-- JavaScript's String(value) for what paths yield.
local function js_string(v)
    if v == nil then return "undefined" end
    if type(v) == "table" then return "[object Object]" end
    return tostring(v)
end

-- Compiles "text ${expr} text" into fn(req) -> string.
function _M.compile_template(str)
    if type(str) ~= "string" then return nil, "expected a string template" end
    local parts = {}
    local i = 1
    while true do
        local s = find(str, "${", i, true)
        if not s then break end
        local e = find(str, "}", s + 2, true)
        if not e then return nil, "unterminated ${ in \"" .. str .. "\"" end
        if s > i then
            local lit = sub(str, i, s - 1)
            parts[#parts + 1] = function() return lit end
        end
        local inner = sub(str, s + 2, e - 1)
        local fn = parse_expression(inner, 1, #inner + 1)
        if not fn then
            return nil, "cannot evaluate ${" .. inner .. "} (" .. HINT .. ")"
        end
        parts[#parts + 1] = function(req) return js_string(fn(req)) end
        i = e + 1
    end
    if i <= #str or #parts == 0 then
        local lit = sub(str, i)
        parts[#parts + 1] = function() return lit end
    end
    if #parts == 1 then return parts[1] end
    local n = #parts
    return function(req)
        local out = {}
        for k = 1, n do out[k] = parts[k](req) end
        return concat(out)
    end
end

-- Compiles a JavaScript expression into fn(req) -> value.
function _M.compile_expression(str)
    if type(str) == "number" or type(str) == "boolean" then
        return function() return str end
    end
    if type(str) ~= "string" then return nil, "expected an expression string" end
    local trimmed = match(str, "^%s*(.-)%s*$")
    if sub(trimmed, 1, 1) == "`" and sub(trimmed, -1) == "`" and #trimmed >= 2 then
        return _M.compile_template(sub(trimmed, 2, -2))
    end
    local fn = parse_expression(trimmed, 1, #trimmed + 1)
    if not fn then
        return nil, "cannot evaluate \"" .. str .. "\" (" .. HINT .. ")"
    end
    return fn
end

-- Lua code: an expression, or a chunk with an explicit return; `req` in scope.
function _M.compile_lua(code, name)
    if type(code) ~= "string" then return nil, "lua: expected a string of Lua code" end
    local chunk, err = loadstring("local req = ...; return " .. code, "=" .. (name or "lua"))
    if not chunk then
        chunk, err = loadstring("local req = ...; " .. code, "=" .. (name or "lua"))
    end
    if not chunk then return nil, "lua: " .. err end
    setfenv(chunk, setmetatable({}, { __index = _G }))
    return chunk
end

-- An option value that is a template/expression string, or { lua = "..." }.
-- kind: "template" or "expression".
function _M.compile_value(v, kind, name)
    if type(v) == "table" and not schema.is_array(v) then
        if v.lua == nil or next(v, next(v)) ~= nil then
            return nil, "expected a string or { lua: \"...\" }"
        end
        return _M.compile_lua(v.lua, name)
    end
    if kind == "template" then return _M.compile_template(v) end
    return _M.compile_expression(v)
end

_M.js_string = js_string

return _M
