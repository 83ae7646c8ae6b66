-- tollgate.schema: validation of policy and condition parameters, with
-- defaults applied. A schema is a plain table:
--
--   {
--     description = "what the policy does",
--     properties = {
--       statusCode = { type = "integer", default = 400, minimum = 100, maximum = 599,
--                      description = "status of the response" },
--       message = { type = "string", required = true, description = "..." },
--       methods = { type = { "string", "array" }, items = { type = "string" } },
--       mode = { type = "string", enum = { "a", "b" } },
--       nested = { type = "object", properties = { ... } },
--       anything = { type = "object", additional = true },  -- free-form map
--     },
--     check = function(conf) return true end,  -- cross-field rules:
--                                              -- return nil, "a sentence"
--   }
--
-- Types: string, number, integer, boolean, object, array, any. Unknown keys
-- are rejected unless `additional = true`. As Express Gateway's validator
-- (ajv with coerceTypes) does, a numeric string is accepted for a number
-- and a number or boolean for a string.
--
-- validate(schema, value, path) returns the value with defaults applied,
-- or nil, message, at where `at` = { tbl, key } names the offending spot
-- for line lookup and message starts with the dotted key path.

local cyaml_ok, cyaml = pcall(require, "tollgate.cyaml")
local NULL = cyaml_ok and cyaml.null or nil

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local concat, sort = table.concat, table.sort
local floor = math.floor

local _M = { NULL = NULL }

local function is_null(v)
    return v == nil or (NULL ~= nil and v == NULL)
end
_M.is_null = is_null

local function is_array(t)
    if type(t) ~= "table" then return false end
    local n = #t
    -- a mapping (or an empty table) is told without a loop: configs ask
    -- this of every mapping, and a loop left at once aborts the JIT's trace
    if n == 0 then return next(t) == nil end
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
            return false
        end
    end
    return true
end
_M.is_array = is_array

local function type_ok(want, v)
    if want == "any" then return true, v end
    local tv = type(v)
    if want == "string" then
        if tv == "string" then return true, v end
        if tv == "number" or tv == "boolean" then return true, tostring(v) end
    elseif want == "number" or want == "integer" then
        if tv == "string" then v = tonumber(v); tv = type(v) end
        -- finite numbers only ("nan" and "inf" are numbers to tonumber)
        if tv == "number" and v == v and v ~= math.huge and v ~= -math.huge and
            (want == "number" or v == floor(v)) then
            return true, v
        end
    elseif want == "boolean" then
        if tv == "boolean" then return true, v end
        if v == "true" then return true, true end
        if v == "false" then return true, false end
    elseif want == "object" then
        if tv == "table" and (next(v) == nil or not is_array(v)) then return true, v end
    elseif want == "array" then
        if tv == "table" and is_array(v) then return true, v end
    elseif want == "function" then
        -- Lua configs only: a condition or policy given as a function
        if tv == "function" then return true, v end
    end
    return false
end

local function same_kind(t, v)
    local tv = type(v)
    if t == "any" then return true end
    if t == "number" or t == "integer" then return tv == "number" end
    if t == "object" or t == "array" then return tv == "table" end
    return t == tv
end

local function type_name(t)
    if type(t) == "table" then return concat(t, " or ") end
    return t
end

local function join(path, key)
    if type(key) == "number" then return path .. "[" .. key .. "]" end
    if path == "" then return key end
    return path .. "." .. key
end

local function describe(v)
    if type(v) == "string" then return '"' .. v .. '"' end
    if is_null(v) then return "null" end
    if type(v) == "table" then return is_array(v) and "a list" or "a mapping" end
    return tostring(v)
end

local validate

-- v is the value at parent path `base`, key `key` of table tbl; its own
-- dotted path is only built when it is needed (an error, a nested value).
local function check_value(spec, v, base, tbl, key)
    local types = spec.type or "any"
    local ok, coerced, chosen
    if type(types) ~= "table" then -- one type (most): no list to walk
        ok, coerced = type_ok(types, v)
        if ok then chosen = types end
    else
        -- a value already of one of the listed kinds is taken as it is;
        -- only then is a coercion tried (as ajv's coerceTypes does)
        for pass = 1, 2 do
            for _, t in ipairs(types) do
                if pass == 2 or same_kind(t, v) then
                    ok, coerced = type_ok(t, v)
                    if ok then chosen = t break end
                end
            end
            if ok then break end
        end
    end
    if ok and (chosen == "object" or chosen == "array") then
        local sub, err, at = validate(spec, coerced, join(base, key), chosen)
        if not sub then return nil, err, at end
        coerced = sub
    end
    if not ok then
        return nil, join(base, key) .. ": expected " .. type_name(spec.type) .. ", got " ..
            describe(v), { tbl, key }
    end
    v = coerced
    if spec.enum then
        local found = false
        for _, e in ipairs(spec.enum) do
            if e == v then found = true break end
        end
        if not found then
            local names = {}
            for i, e in ipairs(spec.enum) do names[i] = tostring(e) end
            return nil, join(base, key) .. ": must be one of " .. concat(names, ", ") ..
                ", got " .. describe(v), { tbl, key }
        end
    end
    if type(v) == "number" then
        if spec.minimum and v < spec.minimum then
            return nil, join(base, key) .. ": must be at least " .. spec.minimum, { tbl, key }
        end
        if spec.maximum and v > spec.maximum then
            return nil, join(base, key) .. ": must be at most " .. spec.maximum, { tbl, key }
        end
    end
    if type(v) == "string" and spec.pattern and not v:find(spec.pattern) then
        return nil, join(base, key) .. ": " .. (spec.pattern_message or "has an invalid format"),
            { tbl, key }
    end
    return v
end

-- Validates the object or array `value` against `spec`.
validate = function(spec, value, path, as)
    path = path or ""
    if as == "array" then
        local out = {}
        if spec.items then
            for i, item in ipairs(value) do
                local v, err, at = check_value(spec.items, item, path, value, i)
                if err then return nil, err, at end
                out[i] = v
            end
        else
            for i, item in ipairs(value) do out[i] = item end
        end
        if spec.min_items and #out < spec.min_items then
            return nil, path .. ": needs at least " .. spec.min_items .. " item(s)", { value }
        end
        return out
    end

    local props = spec.properties
    if not props then
        if spec.additional == false then
            return nil, path .. ": takes no options", { value }
        end
        return value
    end
    local out = {}
    if not spec.additional then
        local unknown -- made only for a value that has an unknown key
        for k in pairs(value) do
            if props[k] == nil then
                unknown = unknown or {}
                unknown[#unknown + 1] = tostring(k)
            end
        end
        if unknown then
            sort(unknown)
            local known = {}
            for k in pairs(props) do known[#known + 1] = k end
            sort(known)
            return nil, join(path, unknown[1]) .. ": unknown option (known: " ..
                concat(known, ", ") .. ")", { value, unknown[1] }
        end
    else
        for k, v in pairs(value) do out[k] = v end
    end
    for k, p in pairs(props) do
        local v = value[k]
        if is_null(v) then
            if p.required then
                return nil, join(path, k) .. ": is required" ..
                    (p.description and (" (" .. p.description .. ")") or ""), { value, k }
            end
            if p.default ~= nil then
                local d = p.default
                if type(d) == "table" then
                    local copy = {}
                    for dk, dv in pairs(d) do copy[dk] = dv end
                    d = copy
                end
                out[k] = d
            end
        else
            local cv, err, at = check_value(p, v, path, value, k)
            if err then return nil, err, at end
            out[k] = cv
        end
    end
    if spec.check then
        local ok, err = spec.check(out)
        if not ok then
            return nil, (path ~= "" and (path .. ": ") or "") .. err, { value }
        end
    end
    return out
end

function _M.validate(spec, value, path)
    if is_null(value) then value = {} end
    if type(value) ~= "table" then
        return nil, (path or "") .. ": expected a mapping of options, got " .. describe(value),
            { nil }
    end
    return validate(spec, value, path or "", "object")
end

_M.describe = describe

return _M
