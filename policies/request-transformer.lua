-- request-transformer: adds and removes request headers and top-level
-- fields of the request body before it goes upstream. Express Gateway's
-- options, same names:
--
--   - request-transformer:
--       - action:
--           headers:
--             add:
--               X-Client-Ip: req.ip
--               X-Api-Version: "'2'"
--             remove: [x-debug]
--           body:
--             add:
--               source: "'gateway'"
--               requestId: egContext.requestID
--             remove: [password]
--
-- Values to add are JavaScript expressions in Express Gateway: a quoted
-- literal "'text'", a number, or a path (req.method, req.headers['x-a'],
-- req.user.sub, egContext.requestID), joined with ||; anything else is
-- refused at load, and { lua: "..." } takes Lua with `req` in scope. A value
-- that evaluates to nothing is not added (Express Gateway's JSON.stringify
-- drops it too). Adding is done first, then removing.
--
-- Headers: an added header replaces one of the same name; names to remove
-- match whatever their case (Express Gateway's `delete` only matches
-- lower-case names).
--
-- Body: a body whose Content-Type is JSON (application/json, or +json) and
-- which is a JSON object has top-level fields added (replacing, in place, a
-- field of that name; new fields go last, in name order) and removed; an
-- empty JSON body counts as {}. The other
-- fields are kept byte for byte, in their order. Names are used as written:
-- "a.b" is one field, not a nested one. A form body
-- (application/x-www-form-urlencoded) with plain names is edited the same way;
-- a form with bracketed names (a[b]=1, which Express Gateway parses into
-- nested objects) is left alone. Any other body (another type, invalid JSON,
-- a JSON array, no Content-Type) is left alone: Express Gateway would replace
-- it with a JSON object of the added fields, or answer 400 for invalid JSON.
-- Content-Length follows the new body; Content-Type is kept. The body is read
-- whole, up to tollgate.client.maxBufferedBody (413 above).

local cjson = require "cjson.safe"
local template = require "tollgate.template"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local find, sub, lower, gsub, format, byte, char, match = string.find, string.sub, string.lower,
    string.gsub, string.format, string.byte, string.char, string.match
local concat = table.concat
local floor, huge = math.floor, math.huge
local js_string = template.js_string

local _M = {}

-- ---- schema ------------------------------------------------------------------------------

local function add_remove(what)
    return {
        type = "object",
        description = "what to add to and remove from the " .. what,
        properties = {
            add = { type = "object", additional = true,
                description = "name: value, an expression (\"'literal'\", req.ip, ...) or { lua: ... }" },
            remove = { type = "array", items = { type = "string" },
                description = "names to remove" },
        },
        check = function(c)
            if c.add == nil and c.remove == nil then return nil, "needs add or remove" end
            if c.add ~= nil and next(c.add) == nil then return nil, "add: needs at least one field" end
            return true
        end,
    }
end

function _M.schema(what, description)
    return {
        description = description,
        properties = {
            headers = add_remove(what .. " headers"),
            body = add_remove(what .. " body (top-level JSON or form fields)"),
        },
        check = function(c)
            if c.headers == nil and c.body == nil then return nil, "needs headers or body" end
            return true
        end,
    }
end

-- Compiles { add = {...}, remove = {...} } into { add = { {name, fn} }, remove = {...} }.
function _M.compile_spec(spec, path)
    if spec == nil then return nil end
    local out = { add = {}, remove = spec.remove or {} }
    if spec.add then
        local names = {}
        for k in pairs(spec.add) do names[#names + 1] = tostring(k) end
        table.sort(names)
        for _, k in ipairs(names) do
            local v = spec.add[k]
            if type(v) == "table" and v.lua == nil then
                return nil, path .. ".add." .. k .. ": expected a string, a number or { lua: ... }"
            end
            local fn, err = template.compile_value(v, "expression", path .. ".add." .. k)
            if not fn then return nil, path .. ".add." .. k .. ": " .. err end
            out.add[#out.add + 1] = { name = k, fn = fn }
        end
    end
    return out
end

-- ---- headers -----------------------------------------------------------------------------

-- Applies a compiled spec to the headers of `target` (the request, or
-- req.response), evaluating values on req.
function _M.edit_headers(spec, req, target)
    for _, a in ipairs(spec.add) do
        local v = a.fn(req)
        if v ~= nil then
            target:set_header(a.name, type(v) == "string" and v or js_string(v))
        end
    end
    for _, name in ipairs(spec.remove) do target:remove_header(name) end
end

-- ---- JSON --------------------------------------------------------------------------------

-- JSON.stringify of a value an expression gave, or nil for undefined.
local function json_value(v)
    local t = type(v)
    if t == "string" then
        return (gsub(cjson.encode(v), "\\/", "/"))
    elseif t == "number" then
        if v ~= v or v == huge or v == -huge then return "null" end
        if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
        for digits = 15, 17 do
            local s = format("%." .. digits .. "g", v)
            if tonumber(s) == v then return s end
        end
    elseif t == "boolean" then
        return tostring(v)
    elseif t == "table" then
        local s = cjson.encode(v)
        return s and (gsub(s, "\\/", "/")) or nil
    end
    return nil
end
_M.json_value = json_value

-- The end of the JSON string starting at i (the closing quote).
local function string_end(s, i)
    local j = i + 1
    while true do
        local q = find(s, '["\\]', j)
        if not q then return nil end
        if byte(s, q) == 92 then j = q + 2 else return q end
    end
end

-- The position after the JSON value starting at i.
local function value_end(s, i)
    local depth = 0
    local j = i
    while true do
        local k = find(s, '[%[%]{}",]', j)
        if not k then return #s + 1 end
        local c = byte(s, k)
        if c == 34 then
            k = string_end(s, k)
        elseif c == 91 or c == 123 then
            depth = depth + 1
        elseif c == 93 or c == 125 then
            if depth == 0 then return k end
            depth = depth - 1
            if depth == 0 then return k + 1 end
        elseif depth == 0 then
            return k -- ","
        end
        j = k + 1
    end
end

-- The members of a JSON object text as { key = decoded, raw = "\"key\":value" },
-- or nil when s is not a JSON object.
local function split_object(s)
    local start = find(s, "[^ \t\r\n]")
    if start == nil or byte(s, start) ~= 123 then return nil end
    if type(cjson.decode(s)) ~= "table" then return nil end
    local members = {}
    local i = find(s, "[^ \t\r\n]", start + 1)
    if byte(s, i) == 125 then return members end
    while true do
        local ke = string_end(s, i)
        local rawkey = sub(s, i, ke)
        local key = cjson.decode(rawkey)
        local vs = find(s, "[^ \t\r\n:]", ke + 1)
        local ve = value_end(s, vs)
        local value = match(sub(s, vs, ve - 1), "^(.-)[ \t\r\n]*$")
        members[#members + 1] = { key = key, raw = rawkey .. ":" .. value }
        local sep = find(s, "[,}]", ve)
        if byte(s, sep) == 125 then return members end
        i = find(s, "[^ \t\r\n]", sep + 1)
    end
end
_M.split_object = split_object

-- Adds and removes top-level members; `encode(name, value)` gives a member's
-- text, or nil to skip it.
local function edit_members(members, spec, req, encode)
    for _, a in ipairs(spec.add) do
        local text = encode(a.name, a.fn(req))
        if text then
            local placed = false
            local kept = {}
            for _, m in ipairs(members) do
                if m.key == a.name then
                    if not placed then
                        kept[#kept + 1] = { key = a.name, raw = text }
                        placed = true
                    end
                else
                    kept[#kept + 1] = m
                end
            end
            if not placed then kept[#kept + 1] = { key = a.name, raw = text } end
            members = kept
        end
    end
    if #spec.remove > 0 then
        local drop = {}
        for _, name in ipairs(spec.remove) do drop[name] = true end
        local kept = {}
        for _, m in ipairs(members) do
            if not drop[m.key] then kept[#kept + 1] = m end
        end
        members = kept
    end
    return members
end

local function json_member(name, v)
    local text = json_value(v)
    if text == nil then return nil end
    return json_value(name) .. ":" .. text
end

-- The JSON object text s with spec applied, or nil when s is not a JSON object
-- (an empty s is {} when empty_is_object).
function _M.transform_json(spec, req, s, empty_is_object)
    local members
    if empty_is_object and match(s, "^[ \t\r\n]*$") then
        members = {}
    else
        members = split_object(s)
        if not members then return nil end
    end
    members = edit_members(members, spec, req, json_member)
    local parts = {}
    for i, m in ipairs(members) do parts[i] = m.raw end
    return "{" .. concat(parts, ",") .. "}"
end

-- ---- forms -------------------------------------------------------------------------------

local function form_decode(s)
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- encodeURIComponent
local function uri_encode(s)
    return (gsub(s, "[^%w%-_%.!~%*'%(%)]", function(c) return format("%%%02X", byte(c)) end))
end
_M.uri_encode = uri_encode

local function form_member(name, v)
    if v == nil then return nil end
    return uri_encode(name) .. "=" .. uri_encode(type(v) == "string" and v or js_string(v))
end

-- The form text s with spec applied, or nil when it has bracketed names.
function _M.transform_form(spec, req, s)
    local members = {}
    for pair in s:gmatch("[^&]+") do
        local k = match(pair, "^([^=]*)")
        local key = form_decode(k)
        if find(key, "[%[%]]") then return nil end
        members[#members + 1] = { key = key, raw = pair }
    end
    members = edit_members(members, spec, req, form_member)
    local parts = {}
    for i, m in ipairs(members) do parts[i] = m.raw end
    return concat(parts, "&")
end

-- ---- the policy --------------------------------------------------------------------------

local function is_json(ct)
    local mt = match(ct, "^%s*([^;%s]+)")
    return mt == "application/json" or (mt ~= nil and find(mt, "^application/[^/]*%+json$") ~= nil)
end
_M.is_json = is_json

function _M.new(conf)
    local headers, err = _M.compile_spec(conf.headers, "headers")
    if err then return nil, err end
    local body, berr = _M.compile_spec(conf.body, "body")
    if berr then return nil, berr end
    return { headers = headers, body = body }
end

function _M.access(self, req)
    if self.headers then _M.edit_headers(self.headers, req, req) end
    local spec = self.body
    if not spec then return end
    local ct = lower(req:header("content-type") or "")
    local json = is_json(ct)
    local form = not json and match(ct, "^%s*([^;%s]+)") == "application/x-www-form-urlencoded"
    if not (json or form) then return end
    local body, err = req:body()
    if not body then
        req:log_error("request-transformer: " .. tostring(err))
        return
    end
    local out
    if json then out = _M.transform_json(spec, req, body, true)
    else out = _M.transform_form(spec, req, body) end
    if out and out ~= body then req:set_body(out) end
end

return {
    name = "request-transformer",
    schema = _M.schema("request", "Adds and removes request headers and body fields."),
    new = _M.new,
    access = _M.access,
    lib = _M,
}
