-- tollgate.testing: run policies and whole gateways in plain busted, with
-- no server. Requests are parsed, and the heads sent upstream and to the
-- client written, by the gateway's own C (libtollgate.so); JWT checks and
-- shared counters are the real ones. Only the sockets are missing: an
-- upstream is a table or a function, and the clock is the test's.
--
--   local testing = require "tollgate.testing"
--
--   -- one policy
--   local rl = testing.policy("rate-limit", { max = 1, windowMs = 1000 })
--   local res = rl:run{ path = "/x" }            -- 200 from the default upstream
--   res = rl:run{ path = "/x" }                  -- 429
--   testing.clock.advance(1)                     -- the window ends
--
--   -- a gateway from a config (YAML text, a file, or a Lua table)
--   local gw = testing.gateway(yaml_text)
--   local res = gw:request{ host = "api.example.com", path = "/users",
--                           upstream = function(up) return { status = 200, body = up.path } end }
--
--   res.status, res.headers["x-name"], res.body     -- what the client gets
--   res.upstream                                    -- what went upstream: method, path,
--                                                   -- headers, body (nil if nothing did)
--   res.req                                         -- the request object (ctx, user...)
--   res.calls                                       -- HTTP calls a policy made (tollgate.http),
--                                                   -- answered by the same upstream
--
-- Upstream answers: { status, headers = {...}, body } (default 200, ""), a
-- function of the upstream request returning one, or { error = 502 | 504 }.
--
-- Integration mode, the real binary on real sockets (each module's header
-- has the details):
--
--   local server = require "tollgate.testing.server"   -- start/stop tollgate
--   local mock = require "tollgate.testing.mock"       -- mock upstreams
--   local http = require "tollgate.testing.http"       -- an HTTP client
--   local up = mock.start{}
--   local g = server.start{ config = yaml_text, vars = { UP = up.port } }  -- a free port
--   local res = g:get("/path", { Host = "api.example.com" })
--   g:stop(); up:stop()
--
-- (tollgate.testing.process, .certs, .jwt, .jwks and .ws help with
-- processes, test certificates, tokens and JSON Web Keys, a JWKS server,
-- and WebSockets.)

local ffi = require "ffi"
local core = require "tollgate.core"
local config = require "tollgate.config"
local cyaml = require "tollgate.cyaml"
local generation = require "tollgate.generation"
local pipeline = require "tollgate.pipeline"
local policies = require "tollgate.policies"
local request = require "tollgate.request"
local runtime = require "tollgate.runtime"
local schema = require "tollgate.schema"

local C = core.C
local ffi_string = ffi.string
local type, pairs, ipairs, tostring, error, assert, rawget =
    type, pairs, ipairs, tostring, error, assert, rawget
local lower, find, sub, match, gmatch = string.lower, string.find, string.sub, string.match,
    string.gmatch
local concat = table.concat
local resume, create, status = coroutine.resume, coroutine.create, coroutine.status

if not core.has_c then
    error("tollgate.testing needs the C core: build it (make) or set TOLLGATE_LIB")
end

local _M = {}

-- ---- clock ---------------------------------------------------------------------------

local clock = { t = C.tg_now() }
_M.clock = clock

function clock.now() return clock.t end

-- Moves time forward: the policies' clock, and the shared dictionary's
-- expiry. A policy's sleep() moves it too.
function clock.advance(seconds)
    clock.t = clock.t + seconds
    C.tg_shdict_advance(seconds)
end

function clock.set(t)
    if t > clock.t then C.tg_shdict_advance(t - clock.t) end
    clock.t = t
end

core.now = clock.now
core.sleep_hook = clock.advance

-- ---- requests ---------------------------------------------------------------------------

local lenp = ffi.new("size_t[1]")
local errbuf = ffi.new("char[256]")

local function header_list(h)
    local list = {}
    if not h then return list end
    if h[1] ~= nil then
        for _, kv in ipairs(h) do list[#list + 1] = kv end
    else
        local names = {}
        for k in pairs(h) do names[#names + 1] = k end
        table.sort(names)
        for _, k in ipairs(names) do list[#list + 1] = { k, h[k] } end
    end
    return list
end

-- A request from a description:
--   { method = "GET", path = "/", host = "localhost", headers = {...}, body = "...",
--     client = "127.0.0.1", version = "1.1" }
-- or raw HTTP text { raw = "GET / HTTP/1.1\r\n..." }.
function _M.raw_request(opts)
    if opts.raw then return opts.raw end
    local lines = { (opts.method or "GET") .. " " .. (opts.path or "/") .. " HTTP/" ..
        (opts.version or "1.1") }
    local has_host, has_len = false, false
    for _, kv in ipairs(header_list(opts.headers)) do
        local n = lower(kv[1])
        if n == "host" then has_host = true end
        if n == "content-length" or n == "transfer-encoding" then has_len = true end
        lines[#lines + 1] = kv[1] .. ": " .. tostring(kv[2])
    end
    if not has_host and opts.host ~= false then
        lines[#lines + 1] = "Host: " .. (opts.host or "localhost")
    end
    if opts.body and not has_len then
        lines[#lines + 1] = "Content-Length: " .. #opts.body
    end
    return concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
end

-- The request object policies get (tollgate.request), parsed by the C core.
function _M.request(opts)
    opts = opts or {}
    local raw = _M.raw_request(opts)
    local r = C.tg_test_request(raw, #raw, opts.client, errbuf, 256)
    if r == nil then
        error("testing.request: " .. ffi_string(errbuf), 2)
    end
    r = ffi.gc(r, C.tg_test_request_free)
    local method = ffi_string(C.tg_req_method_name(r, lenp), lenp[0])
    local path = ffi_string(C.tg_req_path(r, lenp), lenp[0])
    local hp = C.tg_req_host(r, lenp)
    local host = hp ~= nil and ffi_string(hp, lenp[0]) or nil
    local req = request.new(r, method, path, host, opts.params or {}, nil, "test")
    return req
end

-- ---- messages ----------------------------------------------------------------------------

-- Parses raw HTTP (a request or a response) into a table.
local function parse_message(raw)
    local head_end = find(raw, "\r\n\r\n", 1, true)
    local head = sub(raw, 1, head_end - 1)
    local msg = { headers = {}, header_list = {}, body = sub(raw, head_end + 4) }
    local first = true
    for line in gmatch(head .. "\r\n", "(.-)\r\n") do
        if first then
            first = false
            local a, b, c = match(line, "^(%S+) (%S+) ?(.*)$")
            if sub(a, 1, 5) == "HTTP/" then
                msg.status, msg.reason = tonumber(b), c
            else
                msg.method, msg.path, msg.version = a, b, c
            end
        else
            local n, v = match(line, "^([^:]+):%s*(.-)%s*$")
            msg.header_list[#msg.header_list + 1] = { n, v }
            n = lower(n)
            msg.headers[n] = msg.headers[n] and (msg.headers[n] .. ", " .. v) or v
        end
    end
    return msg
end
_M.parse_message = parse_message

local function raw_response(up)
    local st = up.status or 200
    local lines = { "HTTP/1.1 " .. st .. " Test" }
    local body = up.body or ""
    local has_len = false
    for _, kv in ipairs(header_list(up.headers)) do
        local n = lower(kv[1])
        if n == "content-length" or n == "transfer-encoding" then has_len = true end
        lines[#lines + 1] = kv[1] .. ": " .. tostring(kv[2])
    end
    if not has_len then lines[#lines + 1] = "Content-Length: " .. #body end
    return concat(lines, "\r\n") .. "\r\n\r\n" .. body
end

-- ---- running ---------------------------------------------------------------------------

-- Runs fn(...) (a pipeline or a whole request) in a coroutine, playing the
-- gateway's part at every yield. Returns the result table.
local function answer(target, upstream)
    local raw = ffi_string(C.tg_test_upstream_request(target, lenp), lenp[0])
    local up_req = parse_message(raw)
    local a = upstream or {}
    if type(a) == "function" then a = a(up_req) or {} end
    if a.error then return up_req, a.error end
    local rr = raw_response(a)
    assert(C.tg_test_upstream_response(target, rr, #rr) == 0, "testing: invalid upstream answer")
    return up_req, 0
end

local function drive(req, upstream, fn, ...)
    local res = { req = req, calls = {} }
    local co = create(fn)
    core.contexts[co] = req._r
    local ok, code = resume(co, ...)
    while true do
        if not ok then error(code, 0) end
        if status(co) == "dead" then
            if type(code) == "table" and code._r then res.req = code end
            break
        end
        local arg
        if code == core.YIELD_PROXY then
            res.upstream, arg = answer(req._r, upstream)
        elseif code == core.YIELD_WAIT then
            -- an HTTP call (tollgate.http): the same upstream answers it
            local call = C.tg_test_pending_call(req._r)
            if call ~= nil then
                local up_req, st = answer(call, res.http or upstream)
                res.calls[#res.calls + 1] = up_req
                C.tg_test_call_done(call, st)
                arg = st
            end
        end
        ok, code = resume(co, arg)
    end
    C.tg_test_collect()
    local raw = ffi_string(C.tg_test_response(req._r, lenp), lenp[0])
    local out = parse_message(raw)
    res.status, res.reason, res.headers, res.header_list, res.body =
        out.status, out.reason, out.headers, out.header_list, out.body
    return res
end

local TEST_PEER
local function test_peer()
    TEST_PEER = TEST_PEER or C.tg_peer_get("upstream.test", 13, 80, nil)
    return TEST_PEER
end

-- The step that stands for "the rest of the pipeline proxies".
local PROXY_STEP = {
    name = "upstream",
    access = function(_, req)
        -- a url a policy changed (rewrite...) goes upstream, as proxy sends it
        local err = req:proxy(test_peer(), rawget(req, "url"), 0, 0)
        if err ~= 0 then return err, "Bad gateway." end
    end,
}

-- ---- policies --------------------------------------------------------------------------

local function load_policy(name, opts)
    if type(name) == "table" then return policies.check(name, "policy") end
    if find(name, "/", 1, true) then return policies.load_file(name, name) end
    local dirs = policies.dirs(opts.dir or ".", opts.policy_paths)
    local file = policies.find(name, dirs)
    if not file then return nil, "no policy named " .. name end
    return policies.load_file(file, name)
end

-- Validates action against the policy's schema: the options with defaults,
-- or nil and the error.
function _M.validate(name, action, opts)
    local mod, err = load_policy(name, opts or {})
    if not mod then return nil, err end
    local conf, verr = schema.validate(mod.schema or { properties = {} }, action or {}, "action")
    return conf, verr
end

local Policy = {}
Policy.__index = Policy

-- A policy instance, as a pipeline step would make it. name: a stock or
-- user policy name (opts.dir: the config directory), a file path, or a
-- module table. opts.services: serviceEndpoints for proxy ({ name = { url } }).
-- Errors (schema, constructor) are raised; use testing.validate to test them.
function _M.policy(name, action, opts)
    opts = opts or {}
    local mod = assert(load_policy(name, opts))
    local conf, err = schema.validate(mod.schema or { properties = {} }, action or {}, "action")
    if not conf then error(err, 2) end
    local services = {}
    for k, v in pairs(opts.services or {}) do
        local urls = {}
        for i, u in ipairs(v.urls or { v.url }) do urls[i] = assert(config.parse_url(u)) end
        services[k] = { name = k, urls = urls }
    end
    local env = { id = opts.id or ("test:" .. tostring(mod.name or name)), dir = opts.dir or ".",
        services = services, settings = {} }
    local inst = conf
    if mod.new then
        local e
        inst, e = mod.new(conf, env)
        if inst == nil then error(e, 2) end
    end
    local step = { name = mod.name or tostring(name), policy = mod, inst = inst,
        access = mod.access, response = mod.response, log = mod.log,
        cond = opts.condition }
    return setmetatable({ module = mod, conf = conf, instance = inst, step = step }, Policy)
end

-- Runs the policy on a request (a description for testing.request, or a
-- request object). Unless it answers itself, the request then goes to the
-- upstream (opts.upstream) and the response phase runs. res.continued is
-- true when the policy let the request through.
function Policy:run(req, opts)
    opts = opts or {}
    if getmetatable(req) == nil or not req._r then
        opts.upstream = opts.upstream or req.upstream
        req = _M.request(req)
    end
    local steps = { self.step }
    if not opts.no_upstream then steps[2] = PROXY_STEP end
    local pipe = pipeline.new("test", steps)
    local res = drive(req, opts.upstream, pipeline.run, pipe, req)
    res.continued = res.upstream ~= nil
    return res
end

-- ---- gateways --------------------------------------------------------------------------

local Gateway = {}
Gateway.__index = Gateway

-- A gateway from config text (YAML/JSON), a file path, or a Lua table.
-- opts.name: the file name errors mention; opts.dir: where its policies
-- and key files are. Raises the config error.
function _M.gateway(cfg, opts)
    opts = opts or {}
    local model, err
    if type(cfg) == "table" then
        local ctx = config.new_ctx((opts.dir or ".") .. "/" .. (opts.name or "gateway.lua"))
        model, err = config.compile(cfg, ctx)
    elseif not find(cfg, "\n", 1, true) and (match(cfg, "%.ya?ml$") or match(cfg, "%.json$") or
        match(cfg, "%.lua$")) then
        model, err = config.load(cfg)
    else
        local name = (opts.dir or ".") .. "/" .. (opts.name or "gateway.config.yml")
        local doc, marks = cyaml.load_string(config.env_substitute(cfg, opts.getenv), name)
        if doc == nil then error(marks, 2) end
        local ctx = config.new_ctx(name, marks)
        model, err = config.compile(doc, ctx)
    end
    if not model then error(err, 2) end
    local gen, gerr = generation.build(model)
    if not gen then error(gerr, 2) end
    return setmetatable({ generation = gen }, Gateway)
end

-- Handles one request as the gateway would: routing, the pipeline, the
-- upstream (opts.upstream). Same result as Policy:run.
function Gateway:request(opts)
    local req = _M.request(opts)
    local gen = self.generation
    return drive(req, opts.upstream, function()
        return runtime.handle(gen, req._r)
    end)
end

return _M
