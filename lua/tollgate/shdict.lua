-- tollgate.shdict: the shared dictionary (runtime/shdict.c) from Lua. One
-- dictionary per node, shared by every worker, kept across config reloads.
--
--   local shdict = require "tollgate.shdict"
--   local n, ttl = shdict.incr("hits:" .. key, 1, 60)  -- new value, seconds left
--   shdict.set("flag", "on", 30)                        -- a number or a string (<= 160 bytes)
--   local v, ttl = shdict.get("flag")                   -- nil when absent or expired
--   shdict.delete("flag")
--
-- Every call is atomic across workers. ttl is in seconds (0 or nil: none);
-- a ttl left of -1 means the entry does not expire.

local ffi = require "ffi"
local core = require "tollgate.core"

local C = core.C
local ffi_string = ffi.string
local type, tostring, error = type, tostring, error

local _M = {}

local numv = ffi.new("double[1]")
local ttlv = ffi.new("double[1]")
local lenv = ffi.new("size_t[1]")
local strv = ffi.new("int[1]")
local buf = ffi.new("char[160]")

function _M.incr(key, by, ttl, init)
    if C.tg_shdict_incr(key, #key, by or 1, init or 0, ttl or 0, numv, ttlv) ~= 0 then
        return nil, "shdict: " .. key .. " does not hold a number"
    end
    return numv[0], ttlv[0]
end

function _M.get(key)
    local rc = C.tg_shdict_get(key, #key, numv, buf, lenv, strv, ttlv)
    if rc ~= 0 then return nil end
    if strv[0] ~= 0 then
        return ffi_string(buf, lenv[0]), ttlv[0]
    end
    return numv[0], ttlv[0]
end

function _M.set(key, value, ttl)
    local rc
    if type(value) == "number" then
        rc = C.tg_shdict_set(key, #key, value, nil, 0, ttl or 0)
    else
        value = tostring(value)
        rc = C.tg_shdict_set(key, #key, 0, value, #value, ttl or 0)
    end
    if rc ~= 0 then
        error("shdict.set: value too long (160 bytes at most) or no shared memory", 2)
    end
    return true
end

function _M.delete(key)
    return C.tg_shdict_delete(key, #key) == 0
end

function _M.stats()
    local used, cap, ev = ffi.new("double[1]"), ffi.new("double[1]"), ffi.new("double[1]")
    C.tg_shdict_stats(used, cap, ev)
    return { used = used[0], capacity = cap[0], evicted = ev[0] }
end

return _M
