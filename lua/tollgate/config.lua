-- tollgate.config: reads a gateway config into the model the rest of the
-- framework builds from. Two forms compile to the same model:
--
--   * Express Gateway's gateway.config.yml (YAML or JSON), unchanged, with
--     system.config.yml (or .json) beside it when present. ${VAR} and
--     ${VAR:-default} are substituted in the raw text first, exactly as
--     Express Gateway does.
--   * A Lua file returning a table of the same shape.
--
-- Every error is "file:line: key.path: message" (the line when known).
--
-- The model:
--   { file, dir, http = {port, hostname} | nil,
--     endpoints = { {name, host, hostRegex, paths, pathRegex, methods, at}... },
--     services = { name -> {name, urls = { {scheme, host, port, path, url}... }, at} },
--     policies = { name -> true },            -- declared policy names
--     pipelines = { {name, endpoints = {names}, policies = {
--         {name, at, steps = { {condition, action, at}... }}... }, at}... },
--     tollgate = <the tollgate: section or {}>, warnings = { "..." } }

local cyaml = require "tollgate.cyaml"

-- The gateway's modules are loaded through cyaml.loadfile, which keeps a
-- file's compiled chunk for as long as the file is unchanged: every config
-- load (each reload) is a new Lua state that loads them all again. Before
-- Lua's own searcher; a module it cannot load is left to that searcher
-- (and its messages).
-- (package.tollgate_searcher: installed once per Lua state)
if cyaml.loadfile and package.searchpath and not package.tollgate_searcher then -- luacheck: ignore 143
    local loadfile_cached, searchpath = cyaml.loadfile, package.searchpath
    package.tollgate_searcher = true -- luacheck: ignore 142
    table.insert(package.loaders, 2, function(name)
        local path = searchpath(name, package.path)
        if not path then return nil end
        return (loadfile_cached(path))
    end)
end

local schema = require "tollgate.schema"

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local find, sub, match, gsub, lower = string.find, string.sub, string.match, string.gsub,
    string.lower
local concat, sort = table.concat, table.sort
local is_null = schema.is_null

local _M = {}

-- ---- environment substitution ---------------------------------------------------

-- Express Gateway's envReplace: /\$?\$\{([A-Za-z0-9_]+)(:-(.*?))?\}/g on the
-- raw text. A set variable wins (even empty); the default applies only
-- when the variable is unset; unset without a default gives the text
-- "null"; "$${X}" stays as written. Names with other characters, such as
-- ${req.ip} in policy templates, are not variables and stay.
function _M.env_substitute(text, getenv, warn)
    getenv = getenv or os.getenv
    local out, n = {}, 0
    local i = 1
    while true do
        local s = find(text, "${", i, true)
        if not s then break end
        local name, e = match(text, "^([%w_]+)()", s + 2)
        local default
        if name then
            if sub(text, e, e) == "}" then
                e = e + 1
            elseif sub(text, e, e + 1) == ":-" then
                local d, e2 = match(text, "^([^}\n]-)}()", e + 2)
                if d then default, e = d, e2 else name = nil end
            else
                name = nil
            end
        end
        if not name then
            n = n + 1; out[n] = sub(text, i, s + 1)
            i = s + 2
        elseif s > i and sub(text, s - 1, s - 1) == "$" then
            n = n + 1; out[n] = sub(text, i, e - 1) -- "$${X}": kept verbatim
            i = e
        else
            n = n + 1; out[n] = sub(text, i, s - 1)
            local v = getenv(name)
            if v == nil then
                if default ~= nil and default ~= "" then
                    v = default
                else
                    v = "null"
                    if warn then warn("unknown variable ${" .. name .. "}: replaced by null") end
                end
            end
            n = n + 1; out[n] = v
            i = e
        end
    end
    n = n + 1; out[n] = sub(text, i)
    return concat(out)
end

-- ---- locations ------------------------------------------------------------------------

local Ctx = {}
Ctx.__index = Ctx

-- marks: the YAML loader's (its metatable carries the compact form: maps[tbl]
-- / seqs[tbl] = the offset of a mapping's / sequence's line record, keys[tbl] =
-- a mapping's keys in order, line(offset); a record is { start line, n, line of
-- item 1..n }), or any table of per-table marks ({ __line, key = line, __keys })
-- such as a Lua config's empty one.
function Ctx:set_marks(marks)
    self.marks = marks or {}
    local mt = getmetatable(self.marks)
    if type(mt) == "table" and mt.maps and mt.seqs and mt.keys and mt.line then
        self.maps, self.seqs, self.keyl, self.lineat = mt.maps, mt.seqs, mt.keys, mt.line
    else
        self.maps, self.seqs, self.keyl, self.lineat = nil, nil, nil, nil
    end
end

local function new_ctx(file, marks)
    local ctx = setmetatable({ file = file, warnings = {} }, Ctx)
    ctx:set_marks(marks)
    return ctx
end

function Ctx:line(tbl, key)
    if tbl == nil then return nil end
    if self.maps then
        local off = self.maps[tbl]
        if off then
            -- a key named __line or __keys is not a line mark (as in marks[tbl])
            if key ~= nil and key ~= "__line" and key ~= "__keys" then
                local ks = self.keyl[tbl]
                for i = 1, #ks do
                    if ks[i] == key then return self.lineat(off + 1 + i) end
                end
            end
            return self.lineat(off)
        end
        off = self.seqs[tbl]
        if off then
            if type(key) == "number" and key >= 1 and key % 1 == 0 and
                key <= self.lineat(off + 1) then
                return self.lineat(off + 1 + key)
            end
            return self.lineat(off)
        end
    end
    local m = self.marks[tbl]
    if not m then return nil end
    -- a key may be named __line or __keys too: only a number is a line
    local l = key ~= nil and m[key]
    if type(l) ~= "number" then l = m.__line end
    return l
end

function Ctx:error(msg, tbl, key)
    local line = self:line(tbl, key)
    return self.file .. (line and (":" .. line) or "") .. ": " .. msg
end

function Ctx:warn(msg, tbl, key)
    local w = self:error(msg, tbl, key)
    self.warnings[#self.warnings + 1] = w
end

-- Was this table a YAML sequence (an empty one looks like an empty mapping)?
function Ctx:is_seq(tbl)
    if self.seqs then return self.seqs[tbl] ~= nil end
    local m = self.marks[tbl]
    return m ~= nil and m.__keys == nil
end

local function by_text(a, b) return tostring(a) < tostring(b) end

-- Keys of a mapping in declaration order (YAML keeps it in marks; a Lua
-- table has none, so its keys are sorted).
function Ctx:keys(tbl)
    local ks = self.keyl and self.keyl[tbl]
    if ks then return ks end
    if not self.keyl then
        local m = self.marks[tbl]
        if m and m.__keys then return m.__keys end
    end
    local mt = getmetatable(tbl)
    if mt and mt.__keys then return mt.__keys end
    ks = {}
    for k in pairs(tbl) do ks[#ks + 1] = k end
    sort(ks, by_text)
    return ks
end

local function is_map(v)
    return type(v) == "table" and (next(v) == nil or not schema.is_array(v))
end

local function list_of(v)
    if is_null(v) then return {} end
    if type(v) == "table" and schema.is_array(v) then return v end
    return { v }
end

-- ---- sections -------------------------------------------------------------------------

local function check_keys(ctx, tbl, known, path)
    for _, k in ipairs(ctx:keys(tbl)) do
        if not known[k] then
            local names = {}
            for n in pairs(known) do names[#names + 1] = n end
            sort(names)
            return nil, ctx:error(path .. "." .. tostring(k) .. ": unknown key (known: " ..
                concat(names, ", ") .. ")", tbl, k)
        end
    end
    return true
end

local function parse_http(ctx, doc, section)
    local v = doc[section]
    if is_null(v) then return nil end
    if not is_map(v) then
        return nil, ctx:error(section .. ": expected a mapping with port and hostname", doc,
            section)
    end
    local ok, err = check_keys(ctx, v, { port = true, hostname = true, tls = true,
        options = true }, section)
    if not ok then return nil, err end
    local port = v.port
    if is_null(port) then
        port = 0 -- Express Gateway lets the system pick, as Node does
    else
        port = tonumber(port)
        if not port or port < 0 or port > 65535 or port % 1 ~= 0 then
            return nil, ctx:error(section .. ".port: expected a port number, got " ..
                schema.describe(v.port), v, "port")
        end
    end
    local host = v.hostname
    if is_null(host) then
        host = "::" -- all interfaces, IPv4 and IPv6, as Node listens
    elseif type(host) ~= "string" then
        return nil, ctx:error(section .. ".hostname: expected a string", v, "hostname")
    end
    local out = { port = port, hostname = host }
    if section ~= "https" then
        if not is_null(v.tls) or not is_null(v.options) then
            return nil, ctx:error(section .. ": tls and options belong in the https section", v)
        end
        return out
    end

    -- https.tls: { <SNI pattern or "default">: { key, cert, ca } }, in config order
    -- (Lua configs: a list of { pattern = ..., key, cert, ca } keeps the order)
    local tls = v.tls
    if ctx.lua and type(tls) == "table" and next(tls) and schema.is_array(tls) then
        tls = _M.named_list(tls, "pattern", "https.tls")
    end
    if not is_map(tls) or next(tls) == nil then
        return nil, ctx:error("https.tls: expected a mapping of host patterns (or default) to " ..
            "{ key, cert }", v, "tls")
    end
    local dir = match(ctx.file, "^(.*)/[^/]*$") or "."
    local function file(f)
        if sub(f, 1, 1) == "/" then return f end
        return dir .. "/" .. f
    end
    out.certs = {}
    for _, pattern in ipairs(ctx:keys(tls)) do
        local c = tls[pattern]
        local cpath = "https.tls." .. pattern
        if not is_map(c) then
            return nil, ctx:error(cpath .. ": expected { key, cert, ca }", tls, pattern)
        end
        ok, err = check_keys(ctx, c, { key = true, cert = true, ca = true }, cpath)
        if not ok then return nil, err end
        for _, k in ipairs { "key", "cert" } do
            if type(c[k]) ~= "string" then
                return nil, ctx:error(cpath .. "." .. k .. ": expected a file path", c, k)
            end
        end
        local cas = {}
        for i, f in ipairs(list_of(c.ca)) do
            if type(f) ~= "string" then
                return nil, ctx:error(cpath .. ".ca[" .. i .. "]: expected a file path", c, "ca")
            end
            cas[i] = file(f)
        end
        out.certs[#out.certs + 1] = { pattern = pattern, key = file(c.key), cert = file(c.cert),
            ca = cas, at = { c } }
    end
    local opts = v.options
    if not is_null(opts) then
        if not is_map(opts) then
            return nil, ctx:error("https.options: expected a mapping", v, "options")
        end
        for _, k in ipairs(ctx:keys(opts)) do
            if k ~= "requestCert" and k ~= "rejectUnauthorized" then
                ctx:warn("https.options." .. k .. ": not used by tollgate", opts, k)
            end
        end
        out.request_cert = opts.requestCert == true
        -- Node's default: reject clients without a valid certificate when
        -- one is requested
        out.reject_unauthorized = out.request_cert and opts.rejectUnauthorized ~= false
    end
    return out
end

local ENDPOINT_KEYS = { host = true, hostRegex = true, paths = true, path = true,
    pathRegex = true, methods = true, scopes = true }
local ENDPOINT_STRINGS = { "host", "hostRegex", "pathRegex" }
local SERVICE_KEYS = { url = true, urls = true, proxyOptions = true }
local PIPELINE_KEYS = { apiEndpoints = true, apiEndpoint = true, policies = true, policy = true }
local STEP_KEYS = { action = true, condition = true }

local function parse_endpoint(ctx, name, cfg, path, parent, key)
    if not is_map(cfg) then
        return nil, ctx:error(path .. ": expected a mapping (host, paths, methods...)", parent, key)
    end
    local ok, err = check_keys(ctx, cfg, ENDPOINT_KEYS, path)
    if not ok then return nil, err end
    local ep = { name = name, at = { cfg } }
    for _, k in ipairs(ENDPOINT_STRINGS) do
        local v = cfg[k]
        if not is_null(v) then
            if type(v) ~= "string" then
                return nil, ctx:error(path .. "." .. k .. ": expected a string", cfg, k)
            end
            ep[k] = v
        end
    end
    local paths = cfg.paths
    if is_null(paths) then paths = cfg.path end
    if not is_null(paths) then
        ep.paths = {}
        for i, p in ipairs(list_of(paths)) do
            if type(p) ~= "string" then
                return nil, ctx:error(path .. ".paths[" .. i .. "]: expected a path string",
                    cfg, "paths")
            end
            ep.paths[#ep.paths + 1] = p
        end
    end
    local methods = cfg.methods
    if not is_null(methods) and methods ~= "*" then
        local list = type(methods) == "string" and {} or nil
        if list then
            for m in methods:gmatch("[^,]+") do
                m = m:match("^%s*(.-)%s*$")
                if m ~= "" then list[#list + 1] = m end
            end
        elseif type(methods) == "table" and schema.is_array(methods) then
            list = {}
            for i, m in ipairs(methods) do
                if type(m) ~= "string" then
                    return nil, ctx:error(path .. ".methods[" .. i .. "]: expected a method name",
                        cfg, "methods")
                end
                list[#list + 1] = m:match("^%s*(.-)%s*$")
            end
        else
            return nil, ctx:error(path .. ".methods: expected a method, a comma-separated " ..
                "list or a list of methods", cfg, "methods")
        end
        for _, m in ipairs(list) do
            if not m:match("^[%a%-]+$") then
                return nil, ctx:error(path .. ".methods: invalid method \"" .. m .. "\"",
                    cfg, "methods")
            end
        end
        ep.methods = list
    end
    ep.scopes = cfg.scopes
    return ep
end

-- "http://host:port/base" -> { scheme, host, port, path }
function _M.parse_url(url)
    if type(url) ~= "string" then return nil, "expected a URL string" end
    local scheme, rest = match(url, "^(%a[%w+.-]*)://(.*)$")
    if not scheme then return nil, "\"" .. url .. "\" is not an absolute URL (http://host:port/path)" end
    scheme = lower(scheme)
    if scheme ~= "http" and scheme ~= "https" then
        return nil, "unsupported scheme " .. scheme .. ":// in \"" .. url .. "\""
    end
    local authority, path = match(rest, "^([^/?#]*)(.*)$")
    if find(authority, "@", 1, true) then
        return nil, "user:password@ in a service URL is not supported (\"" .. url .. "\")"
    end
    local host, port
    if sub(authority, 1, 1) == "[" then
        host, port = match(authority, "^(%[[%x:.]+%])(.*)$")
    else
        host, port = match(authority, "^([^:]*)(.*)$")
    end
    if not host or host == "" then return nil, "no host in \"" .. url .. "\"" end
    if port ~= "" then
        port = tonumber(match(port, "^:(%d+)$"))
        if not port or port < 1 or port > 65535 then
            return nil, "invalid port in \"" .. url .. "\""
        end
    else
        port = scheme == "https" and 443 or 80
    end
    path = gsub(path, "#.*$", "")
    if path == "" then path = "/" end
    return { url = url, scheme = scheme, host = lower(host), port = port, path = path }
end

local function parse_service(ctx, name, cfg, path, parent)
    if not is_map(cfg) then
        return nil, ctx:error(path .. ": expected a mapping with url or urls", parent, name)
    end
    local ok, err = check_keys(ctx, cfg, SERVICE_KEYS, path)
    if not ok then return nil, err end
    local svc = { name = name, urls = {}, at = { cfg }, proxyOptions = cfg.proxyOptions }
    local urls
    if not is_null(cfg.url) then
        urls = { cfg.url } -- url wins over urls, as in Express Gateway
    elseif not is_null(cfg.urls) then
        urls = list_of(cfg.urls)
    else
        return nil, ctx:error(path .. ": needs url or urls", cfg)
    end
    if #urls == 0 then
        return nil, ctx:error(path .. ".urls: needs at least one URL", cfg, "urls")
    end
    for i, u in ipairs(urls) do
        local parsed, perr = _M.parse_url(u)
        if not parsed then
            local key = not is_null(cfg.url) and "url" or "urls"
            return nil, ctx:error(path .. "." .. key .. (key == "urls" and ("[" .. i .. "]") or "") ..
                ": " .. perr, cfg, key)
        end
        svc.urls[i] = parsed
    end
    return svc
end

-- A Lua config's inline access function as a policy entry. (A closure made
-- here, not in parse_pipeline: a function that makes closures closes
-- upvalues at every return and loop turn, which LuaJIT does not compile.)
local function inline_entry(fn, n)
    return { policy = { name = "inline", access = function(_, req) return fn(req) end },
        name = "inline" .. n }
end

local function parse_pipeline(ctx, name, cfg, path, declared, parent)
    if not is_map(cfg) then
        return nil, ctx:error(path .. ": expected a mapping with apiEndpoints and policies",
            parent, name)
    end
    local ok, err = check_keys(ctx, cfg, PIPELINE_KEYS, path)
    if not ok then return nil, err end
    local pl = { name = name, endpoints = {}, policies = {}, at = { cfg } }
    local eps = cfg.apiEndpoints
    if is_null(eps) then eps = cfg.apiEndpoint end
    for i, e in ipairs(list_of(eps)) do
        if type(e) ~= "string" then
            return nil, ctx:error(path .. ".apiEndpoints[" .. i .. "]: expected an endpoint name",
                cfg, "apiEndpoints")
        end
        pl.endpoints[#pl.endpoints + 1] = e
    end
    local pols = cfg.policies
    local pkey = "policies"
    if is_null(pols) then pols, pkey = cfg.policy, "policy" end
    local ninline = 0
    for i, entry in ipairs(list_of(pols)) do
        local ppath = path .. "." .. pkey .. "[" .. i .. "]"
        if type(entry) == "string" then
            entry = { [entry] = schema.NULL or {} }
        end
        -- Lua configs: an inline access function, or { policy = <module>,
        -- action = ..., condition = ... } with a module table
        if type(entry) == "function" then
            ninline = ninline + 1
            entry = inline_entry(entry, ninline)
        end
        if type(entry) == "table" and type(entry.policy) == "table" then
            local mod = entry.policy
            local pname = entry.name or mod.name or ("inline" .. i)
            pl.policies[#pl.policies + 1] = { name = pname, module = mod, at = { entry },
                steps = { { condition = entry.condition, action = entry.action, at = { entry },
                    path = ppath } } }
            goto continue
        end
        if not is_map(entry) then
            return nil, ctx:error(ppath .. ": expected a mapping such as \"- proxy: [...]\"",
                list_of(pols), i)
        end
        local keys = ctx:keys(entry)
        if #keys ~= 1 then
            return nil, ctx:error(ppath .. ": a policy entry names exactly one policy, got " ..
                #keys, entry)
        end
        local pname = keys[1]
        if not declared[pname] and ctx.lua then
            declared[pname] = { at = { entry, pname } } -- Lua configs need no policies list
        end
        if not declared[pname] then
            return nil, ctx:error(ppath .. ": " .. pname ..
                " policy not declared in the 'policies' gateway.config section", entry, pname)
        end
        local steps_cfg = entry[pname]
        if is_null(steps_cfg) then
            steps_cfg = { {} }
        elseif is_map(steps_cfg) then
            steps_cfg = { steps_cfg }
        elseif type(steps_cfg) ~= "table" then
            return nil, ctx:error(ppath .. "." .. pname ..
                ": expected a list of steps ({condition, action})", entry, pname)
        end
        if #steps_cfg == 0 then steps_cfg = { {} } end
        local pol = { name = pname, steps = {}, at = { entry, pname } }
        for j, step in ipairs(steps_cfg) do
            local spath = ppath .. "." .. pname .. "[" .. j .. "]"
            if is_null(step) then step = {} end
            if not is_map(step) then
                return nil, ctx:error(spath .. ": expected a mapping with action and condition",
                    steps_cfg, j)
            end
            ok, err = check_keys(ctx, step, STEP_KEYS, spath)
            if not ok then return nil, err end
            local cond = step.condition
            if is_null(cond) then cond = nil end
            pol.steps[j] = { condition = cond, action = step.action, at = { step },
                path = spath }
        end
        pl.policies[#pl.policies + 1] = pol
        ::continue::
    end
    return pl
end

local TOP_KEYS = { http = true, https = true, admin = true, apiEndpoints = true,
    serviceEndpoints = true, policies = true, pipelines = true, pipeline = true,
    tollgate = true }

-- Builds the model from a decoded document.
function _M.compile(doc, ctx)
    if not is_map(doc) then
        return nil, ctx:error("the config must be a mapping (http, apiEndpoints, pipelines...)", doc)
    end
    local model = { file = ctx.file, dir = match(ctx.file, "^(.*)/[^/]*$") or ".",
        endpoints = {}, endpoint_by_name = {}, services = {}, policies = {}, pipelines = {},
        ctx = ctx, warnings = ctx.warnings }

    for _, k in ipairs(ctx:keys(doc)) do
        if not TOP_KEYS[k] then
            ctx:warn(tostring(k) .. ": not an Express Gateway or tollgate section; ignored", doc, k)
        end
    end

    local err
    model.http, err = parse_http(ctx, doc, "http")
    if err then return nil, err end
    model.https, err = parse_http(ctx, doc, "https")
    if err then return nil, err end
    if not is_null(doc.admin) then
        ctx:warn("admin: tollgate has no admin API; this section is ignored", doc, "admin")
    end

    local aes = doc.apiEndpoints
    if ctx.lua and type(aes) == "table" and next(aes) and schema.is_array(aes) then
        aes = _M.named_list(aes, "name", "apiEndpoints")
    end
    if not is_null(aes) then
        if not is_map(aes) then
            return nil, ctx:error("apiEndpoints: expected a mapping of endpoint names", doc,
                "apiEndpoints")
        end
        for _, name in ipairs(ctx:keys(aes)) do
            local cfgs = aes[name]
            if is_null(cfgs) then
                return nil, ctx:error("apiEndpoints." .. name ..
                    ": expected a mapping (host, paths, methods...)", aes, name)
            end
            -- a list of configs (possibly empty: no route, as in Express Gateway)
            local list = { cfgs }
            if type(cfgs) == "table" and
                ((next(cfgs) ~= nil and schema.is_array(cfgs)) or ctx:is_seq(cfgs)) then
                list = cfgs
            end
            for i, cfg in ipairs(list) do
                local path = "apiEndpoints." .. name .. (#list > 1 and ("[" .. i .. "]") or "")
                local parent, key = aes, name
                if list == cfgs then parent, key = cfgs, i end
                local ep, perr = parse_endpoint(ctx, name, cfg, path, parent, key)
                if not ep then return nil, perr end
                model.endpoints[#model.endpoints + 1] = ep
                model.endpoint_by_name[name] = model.endpoint_by_name[name] or {}
                local byname = model.endpoint_by_name[name]
                byname[#byname + 1] = ep
            end
        end
    end

    local ses = doc.serviceEndpoints
    if ctx.lua and type(ses) == "table" and next(ses) and schema.is_array(ses) then
        ses = _M.named_list(ses, "name", "serviceEndpoints")
    end
    if not is_null(ses) then
        if not is_map(ses) then
            return nil, ctx:error("serviceEndpoints: expected a mapping of service names", doc,
                "serviceEndpoints")
        end
        for _, name in ipairs(ctx:keys(ses)) do
            local svc, serr = parse_service(ctx, name, ses[name], "serviceEndpoints." .. name, ses)
            if not svc then return nil, serr end
            model.services[name] = svc
        end
    end

    local pols = doc.policies
    if not is_null(pols) then
        if type(pols) ~= "table" or not schema.is_array(pols) then
            return nil, ctx:error("policies: expected a list of policy names", doc, "policies")
        end
        for i, p in ipairs(pols) do
            if is_map(p) then
                local ks = ctx:keys(p)
                p = #ks == 1 and ks[1] or nil
            end
            if type(p) ~= "string" then
                return nil, ctx:error("policies[" .. i .. "]: expected a policy name", pols, i)
            end
            model.policies[p] = { at = { pols, i } }
        end
    end

    local pls = doc.pipelines
    local pkey = "pipelines"
    if is_null(pls) then pls, pkey = doc.pipeline, "pipeline" end
    if ctx.lua and type(pls) == "table" and next(pls) and schema.is_array(pls) then
        pls = _M.named_list(pls, "name", pkey)
    end
    if not is_null(pls) then
        if not is_map(pls) then
            return nil, ctx:error(pkey .. ": expected a mapping of pipeline names", doc, pkey)
        end
        for _, name in ipairs(ctx:keys(pls)) do
            local pl, perr = parse_pipeline(ctx, name, pls[name], pkey .. "." .. name,
                model.policies, pls)
            if not pl then return nil, perr end
            model.pipelines[#model.pipelines + 1] = pl
        end
    end

    model.tollgate = is_null(doc.tollgate) and {} or doc.tollgate
    model.tollgate_at = { doc, "tollgate" }
    return model
end

-- ---- files -----------------------------------------------------------------------------

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local text = f:read("*a")
    f:close()
    return text
end

local function load_yaml(path, warn)
    local text, err = read_file(path)
    if not text then return nil, err end
    text = _M.env_substitute(text, os.getenv, warn)
    return cyaml.load_string(text, path)
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() return true end
    return false
end

-- Loads the config at path. Returns the model, or nil and an error.
function _M.load(path)
    if match(path, "%.lua$") then
        return _M.load_lua(path)
    end
    local ctx = new_ctx(path)
    local doc, marks = load_yaml(path, function(msg) ctx:warn(msg) end)
    if doc == nil then return nil, marks end
    ctx:set_marks(marks)
    local files = { path }

    -- system.config.yml beside it: parsed so its errors show; tollgate uses
    -- none of its settings (database, crypto, plugins are Express Gateway's).
    local dir = match(path, "^(.*)/[^/]*$") or "."
    for _, name in ipairs { "system.config.yml", "system.config.json" } do
        local sys = dir .. "/" .. name
        files[#files + 1] = sys -- watched even while absent: creating it reloads
        if exists(sys) then
            local sdoc, serr = load_yaml(sys, function(msg) ctx:warn(msg) end)
            if sdoc == nil then return nil, serr end
            if is_map(sdoc) and not is_null(sdoc.plugins) then
                ctx:warn(sys .. ": plugins: Express Gateway (JavaScript) plugins cannot run in " ..
                    "tollgate; write the policy in Lua instead")
            end
            break
        end
    end
    local model, err = _M.compile(doc, ctx)
    if model then model.files = files end
    return model, err
end

-- A list of tables with a `name` each, as a mapping that keeps the list's
-- order (Lua tables have none of their own).
function _M.named_list(list, field, section)
    field = field or "name"
    section = section or "list"
    local map, keys, at = {}, {}, {}
    for i, v in ipairs(list) do
        local name = type(v) == "table" and v[field]
        if type(name) ~= "string" then
            error(section .. "[" .. i .. "]: needs a " .. field .. " (a string)", 0)
        end
        if at[name] then
            error(section .. "[" .. i .. "]: duplicate " .. field .. " \"" .. name ..
                "\" (also " .. section .. "[" .. at[name] .. "])", 0)
        end
        at[name] = i
        local copy = {}
        for k, x in pairs(v) do if k ~= field then copy[k] = x end end
        map[name] = copy
        keys[#keys + 1] = name
    end
    return setmetatable(map, { __keys = keys })
end

-- A Lua config: a file returning a table of the same shape as the YAML
-- (see README "Gateways in Lua"). Endpoints, services and pipelines may be
-- lists of tables with a `name` (their order is kept), policies may be
-- modules or functions, conditions may be functions, and the top-level
-- `policies` list may be left out.
-- The Lua files a Lua config reads while it runs (dofile, loadfile,
-- require) are watched like the config itself: editing a policy module it
-- loads reloads the gateway. Relative dofile/loadfile paths are taken from
-- the config's directory, as every other path in a config is.
local function run_recording(chunk, files, dir)
    local g_dofile, g_loadfile = dofile, loadfile
    local function record(f) if type(f) == "string" then files[#files + 1] = f end end
    local function resolve(f)
        if type(f) == "string" and sub(f, 1, 1) ~= "/" then return dir .. "/" .. f end
        return f
    end
    _G.loadfile = function(f, ...) f = resolve(f) record(f) return g_loadfile(f, ...) end
    _G.dofile = function(f) f = resolve(f) record(f) return g_dofile(f) end
    local loaders = package.loaders -- LuaJIT: Lua 5.1 loaders
    local function recorder(name)
        local f = package.searchpath and package.searchpath(name, package.path)
        record(f)
        return nil
    end
    table.insert(loaders, 1, recorder)
    local ok, doc = pcall(chunk)
    _G.loadfile, _G.dofile = g_loadfile, g_dofile
    for i = #loaders, 1, -1 do
        if loaders[i] == recorder then table.remove(loaders, i) end
    end
    return ok, doc
end

function _M.load_lua(path)
    local chunk, err = loadfile(path)
    if not chunk then return nil, err end
    local files = { path }
    local ok, doc = run_recording(chunk, files, match(path, "^(.*)/[^/]*$") or ".")
    if not ok then return nil, path .. ": " .. tostring(doc), files end
    if type(doc) ~= "table" then
        return nil, path .. ": a Lua config returns a table (http, apiEndpoints, pipelines...)"
    end
    local ctx = new_ctx(path)
    ctx.lua = true
    local cok, model, cerr = pcall(_M.compile, doc, ctx)
    if not cok then return nil, path .. ": " .. tostring(model), files end
    if model then model.files = files end
    return model, cerr, files
end

_M.new_ctx = new_ctx

return _M
