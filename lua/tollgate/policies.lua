-- tollgate.policies: finds and loads policy modules.
--
-- A policy is a Lua module returning a table:
--
--   return {
--     name = "my-policy",
--     schema = { properties = { ... } },      -- see tollgate.schema
--     new = function(conf, env) return instance end,  -- once per config load;
--                                    -- or nil, err, "option" to refuse the config
--     access = function(instance, req) end,   -- return status, body, headers to end
--     response = function(instance, req) end, -- optional
--     log = function(instance, req) end,      -- optional
--   }
--
-- A name is looked up, first found wins, in: the config's directory under
-- policies/, the directories in `search` (the tollgate.policyPaths
-- setting), then the stock library (<home>/policies). Each config load
-- reads the files afresh, so an edited policy takes effect on reload.

local cyaml = require "tollgate.cyaml"

local type, pcall, loadfile, setmetatable = type, pcall, loadfile, setmetatable

local _M = {}

_M.stock_dir = (cyaml.home or ".") .. "/policies"

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return false
end

-- Returns the file implementing policy `name`, or nil.
function _M.find(name, dirs)
    if type(name) ~= "string" or not name:match("^[%w][%w%-_%.]*$") or name:find("..", 1, true) then
        return nil
    end
    for _, d in ipairs(dirs) do
        local p = d .. "/" .. name .. ".lua"
        if exists(p) then return p end
    end
    return nil
end

-- Loads a policy module from path; returns the module or nil, error.
-- (cyaml.loadfile: Lua's loadfile, keeping the compiled chunk while the file
-- is unchanged, since every reload loads the policies again)
local load_chunk = cyaml.loadfile or loadfile

function _M.load_file(path, name)
    local chunk, err = load_chunk(path)
    if not chunk then return nil, err end
    -- A policy's globals stay its own; reading falls back to _G.
    local env = setmetatable({}, { __index = _G })
    setfenv(chunk, env)
    local ok, mod = pcall(chunk, name)
    if not ok then return nil, tostring(mod) end
    return _M.check(mod, path)
end

-- A module has the policy shape, or a sentence saying what is missing.
function _M.check(mod, where)
    if type(mod) ~= "table" then
        return nil, where .. ": a policy module must return a table"
    end
    if mod.schema ~= nil and type(mod.schema) ~= "table" then
        return nil, where .. ": schema must be a table"
    end
    for _, phase in ipairs { "new", "access", "response", "log" } do
        if mod[phase] ~= nil and type(mod[phase]) ~= "function" then
            return nil, where .. ": " .. phase .. " must be a function"
        end
    end
    if not (mod.access or mod.response or mod.log) then
        return nil, where .. ": a policy needs at least one of access, response, log"
    end
    return mod
end

-- The search path for a config in `dir`.
function _M.dirs(dir, extra)
    local dirs = { dir .. "/policies" }
    for _, d in ipairs(extra or {}) do
        if d:sub(1, 1) ~= "/" then d = dir .. "/" .. d end
        dirs[#dirs + 1] = d
    end
    dirs[#dirs + 1] = _M.stock_dir
    return dirs
end

return _M
