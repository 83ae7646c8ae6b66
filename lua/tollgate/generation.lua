-- tollgate.generation: turns a config model into what serves requests: the
-- route table, the compiled pipelines (conditions compiled, parameters
-- validated with defaults, one policy instance per step) and the settings.
-- Building is also the validation: `tollgate -t`, start-up and reload all
-- go through build(), so what one accepts the others accept.

local conditions = require "tollgate.conditions"
local pipeline = require "tollgate.pipeline"
local policies = require "tollgate.policies"
local router = require "tollgate.router"
local schema = require "tollgate.schema"
local settings = require "tollgate.settings"

local type, ipairs, pairs, pcall, tostring, setmetatable =
    type, ipairs, pairs, pcall, tostring, setmetatable

local _M = {}

local EMPTY_SCHEMA = { properties = {} }
-- timeouts of waits a client controls (tollgate.client)
local CLIENT_WAITS = { "headTimeout", "bodyTimeout", "sendTimeout" }

local function build_pipeline(pl, modules, env_mt, ctx)
    local steps = {}
    for pi, pol in ipairs(pl.policies) do
        local mod = pol.module or modules[pol.name]
        for si, step in ipairs(pol.steps) do
            local spath = step.path or ("pipelines." .. pl.name .. ".policies[" .. pi .. "]." ..
                pol.name .. "[" .. si .. "]")
            local cond
            if step.condition ~= nil then
                local err, at
                cond, err, at = conditions.compile(step.condition, spath .. ".condition")
                if not cond then
                    return nil, ctx:error(err, at and at[1] or step.at[1], at and at[2])
                end
            end
            local conf, err, at = schema.validate(mod.schema or EMPTY_SCHEMA, step.action,
                spath .. ".action")
            if not conf then
                local tbl = at and at[1]
                if tbl == nil then tbl, at = step.at[1], { step.at[1], "action" } end
                return nil, ctx:error(err, tbl, at[2])
            end
            local inst = conf
            if mod.new then
                -- the step's own view: its place in the config names its
                -- state (rate-limit counters) so it is stable across reloads
                local senv = setmetatable({ id = spath, pipeline = pl.name }, env_mt)
                local ok, res, nerr, nkey = pcall(mod.new, conf, senv)
                -- where to point: the key the constructor named (new may
                -- return nil, err, key), else the step's action, else the
                -- step, else the policy's entry (a `- name:` with no steps)
                local tbl, key = step.at[1], "action"
                if not ctx:line(tbl) then tbl, key = pol.at[1], pol.at[2] end
                if not ok then
                    return nil, ctx:error(spath .. ": " .. pol.name .. ": " .. tostring(res),
                        tbl, key)
                end
                if res == nil then
                    local where = spath .. ".action"
                    local first
                    if type(nkey) == "string" then
                        where = where .. "." .. nkey
                        first = nkey:match("^[^.%[]+")
                    elseif type(nerr) == "string" then
                        -- "option: message" names the option too
                        first = nerr:match("^([%w_]+)[.%[:]")
                    end
                    if first and type(step.action) == "table" and
                        ctx:line(step.action, first) ~= ctx:line(step.action) then
                        tbl, key = step.action, first
                    end
                    return nil, ctx:error(where .. ": " .. tostring(nerr or "invalid"), tbl, key)
                end
                inst = res
            end
            local st = { name = pol.name, policy = mod, inst = inst, cond = cond,
                access = mod.access, response = mod.response, log = mod.log }
            steps[#steps + 1] = st
        end
    end
    return pipeline.new(pl.name, steps)
end

-- Returns the generation, or nil and an error naming file, line and key.
function _M.build(model)
    local ctx = model.ctx
    local s, serr, sat = settings.parse(model.tollgate, model.http, model.https)
    if not s then
        local tbl, key = model.tollgate_at[1], model.tollgate_at[2]
        if sat and sat[1] and type(sat[1]) == "table" and sat[1] ~= model.tollgate then
            tbl, key = sat[1], sat[2]
        elseif sat and sat[2] then
            tbl, key = model.tollgate, sat[2]
        end
        return nil, ctx:error(serr, tbl, key)
    end
    -- 0 disables a timeout: for a wait a client controls, say what it costs
    local client = type(model.tollgate) == "table" and model.tollgate.client
    for _, k in ipairs(CLIENT_WAITS) do
        if type(client) == "table" and client[k] == 0 then
            ctx:warn("tollgate.client." .. k .. ": 0 disables this timeout: a slow client can " ..
                "hold a connection for as long as it likes", client, k)
        end
    end

    local dirs = policies.dirs(model.dir, s.policy_paths)
    local modules = {}
    -- every file this config depends on: a change to any of them reloads
    local files = {}
    for _, f in ipairs(model.files or {}) do files[#files + 1] = f end
    -- certificates: a renewed one reloads the config
    for _, c in ipairs(model.https and model.https.certs or {}) do
        files[#files + 1] = c.cert
        files[#files + 1] = c.key
        for _, f in ipairs(c.ca) do files[#files + 1] = f end
    end
    for name, decl in pairs(model.policies) do
        local file = policies.find(name, dirs)
        if not file and decl.module then
            modules[name] = decl.module
            goto next_policy
        end
        if not file then
            -- where a user would put it: creating it there reloads
            files[#files + 1] = dirs[1] .. "/" .. tostring(name) .. ".lua"
            model.files = files
            return nil, ctx:error("policies: unknown policy \"" .. tostring(name) ..
                "\": not a stock policy, and no " .. tostring(name) .. ".lua in " ..
                table.concat(dirs, ", "), decl.at[1], decl.at[2])
        end
        local mod, err = policies.load_file(file, name)
        if not mod then
            return nil, ctx:error("policies: " .. name .. ": " .. err, decl.at[1], decl.at[2])
        end
        modules[name] = mod
        files[#files + 1] = file
        ::next_policy::
    end
    -- modules given directly by a Lua config must have the policy shape
    for _, pl in ipairs(model.pipelines) do
        for _, pol in ipairs(pl.policies) do
            if pol.module then
                local ok, err = policies.check(pol.module, "policy " .. pol.name)
                if not ok then return nil, ctx:error(err, pol.at[1]) end
            end
        end
    end

    -- what policy constructors get: env.watch(path) adds a file they read
    -- (a key, a list) to the ones whose change reloads the config
    local env = { services = model.services, dir = model.dir, settings = s, file = model.file,
        watch = function(path) files[#files + 1] = path end,
        warn = function(msg) ctx:warn(msg) end }
    local env_mt = { __index = env } -- each step's view falls back to env
    local pipelines = {}
    for _, ep in ipairs(model.endpoints) do ep.pipeline = nil end
    for _, pl in ipairs(model.pipelines) do
        local pipe, err = build_pipeline(pl, modules, env_mt, ctx)
        if not pipe then return nil, err end
        pipelines[#pipelines + 1] = pipe
        for i, name in ipairs(pl.endpoints) do
            local eps = model.endpoint_by_name[name]
            if not eps then
                return nil, ctx:error("pipelines." .. pl.name .. ".apiEndpoints[" .. i ..
                    "]: no apiEndpoint named \"" .. name .. "\"", pl.at[1], "apiEndpoints")
            end
            for _, ep in ipairs(eps) do
                if ep.pipeline then
                    ctx:warn("apiEndpoints." .. name .. " is used by pipelines " ..
                        ep.pipeline.name .. " and " .. pl.name .. "; the last one serves it",
                        pl.at[1], "apiEndpoints")
                end
                ep.pipeline = pipe
            end
        end
    end

    local rt, rerr, rep, rkey = router.new(model.endpoints)
    if not rt then
        return nil, ctx:error("apiEndpoints." .. rep.name .. "." .. rkey .. ": " .. rerr,
            rep.at[1], rkey)
    end
    s.files = files
    return { router = rt, pipelines = pipelines, settings = s,
        warnings = model.warnings, files = files }
end

return _M
