-- tollgate.runtime: the worker's entry points, called from C (bridge.c).
--
--   load(path, serve)  reads and builds the config; returns the settings
--                      table, or nil and the error. With serve, the worker
--                      keeps the generation to handle requests.
--   main(r)            the body of every request coroutine: handles the
--                      request r, yields DONE, receives the next one.

local ffi = require "ffi"
local config = require "tollgate.config"
local core = require "tollgate.core"
local generation = require "tollgate.generation"
local pipeline = require "tollgate.pipeline"
local regex = require "tollgate.regex"
local request = require "tollgate.request"

local C = core.C
local ffi_string = ffi.string
local yield = coroutine.yield
local xpcall, tostring = xpcall, tostring
local gsub = string.gsub

local YIELD_DONE = core.YIELD_DONE

local _M = {}
-- LuaJIT's trace limits, raised as OpenResty-based gateways do (APISIX):
-- a request through a pipeline of a few policies is one trace when it fits
-- (the defaults, 4000 IR instructions a trace, cut it into pieces glued by
-- the interpreter).
jit.opt.start("maxtrace=4000", "maxrecord=8000", "maxirconst=1000", "sizemcode=64",
    "maxmcode=4000", "minstitch=2")
-- TOLLGATE_JITV=file logs LuaJIT trace aborts (performance debugging)
if os.getenv("TOLLGATE_JITV") then require("jit.v").start(os.getenv("TOLLGATE_JITV")) end

local current -- the generation serving requests

-- On failure: nil, the error, and the files read so far (the master keeps
-- watching them, so fixing one reloads).
function _M.load(path, serve)
    regex.jit = serve and true or false
    local model, err, files = config.load(path)
    if not model then return nil, err, files or { path } end
    local gen, gerr = generation.build(model)
    if not gen then return nil, gerr, model.files end
    if not serve then
        for _, w in ipairs(gen.warnings) do core.log_warn(w) end
    end
    if serve then current = gen end
    return gen.settings
end

function _M.generation()
    return current
end

local lenp = ffi.new("size_t[1]")
local METHODS = {}

local function method_name(r)
    local m = C.tg_req_method(r)
    local name = METHODS[m]
    if not name then
        name = ffi_string(C.tg_req_method_name(r, lenp), lenp[0])
        METHODS[m] = name
    end
    return name
end

local function escape_html(s)
    return (gsub(s, "[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
        ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- Express's final 404, byte for byte (finalhandler 1.1).
local function not_found(req)
    req:respond(404, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n" ..
        "<title>Error</title>\n</head>\n<body>\n<pre>Cannot " .. req.method .. " " ..
        escape_html(req.path) .. "</pre>\n</body>\n</html>\n", {
        ["Content-Type"] = "text/html; charset=utf-8",
        ["Content-Security-Policy"] = "default-src 'none'",
        ["X-Content-Type-Options"] = "nosniff",
    })
end

-- Runs the pipeline of a matched route: the request object when it answered,
-- nil when nothing did.
local function run_route(r, route, params, method, path, host)
    local ep = route.endpoint
    local pipe = ep.pipeline
    local req = request.new(r, method, path, host, params, ep, pipe and pipe.name)
    if not pipe then
        -- an endpoint no pipeline serves: Express's res.sendStatus(404)
        req:respond(404, "Not Found")
        return req
    end
    C.tg_req_set_route(r, pipe.name, #pipe.name)
    if pipeline.run(pipe, req) then return req end
    return nil
end

-- Routes r and runs its pipeline with generation gen (tollgate.testing
-- calls this too, with its own generation).
local function handle(gen, r)
    local method = method_name(r)
    local p = C.tg_req_path(r, lenp)
    local path = ffi_string(p, lenp[0])
    local hp = C.tg_req_host(r, lenp)
    local host = hp ~= nil and ffi_string(hp, lenp[0]) or nil

    local router = gen.router
    local route, params = router:match(host, path, method)
    -- the first route outside the loop: see match_list in tollgate.router
    if route then
        local req = run_route(r, route, params, method, path, host)
        if req then return req end
        -- nothing answered: Express tries the next matching route
        route, params = router:match(host, path, method, route.index)
        while route do
            req = run_route(r, route, params, method, path, host)
            if req then return req end
            route, params = router:match(host, path, method, route.index)
        end
    end
    local req = request.new(r, method, path, host)
    if params then
        -- OPTIONS on a path whose routes want other methods (Express router)
        req:respond(200, params, { ["Allow"] = params,
            ["Content-Type"] = "text/html; charset=utf-8" })
        return req
    end
    not_found(req)
    return req
end

_M.handle = handle

local function on_error(err)
    return (debug.traceback(tostring(err), 2):gsub("\n%s*", "; "))
end

local current_req = C.tg_lua_current

-- The body of every request coroutine. C resumes it with nothing for a
-- request, or with the id of a timer callback to run; it yields DONE when
-- finished and receives the next one. The request (or timer run) is
-- C.tg_lua_current(), a cdata pointer.
function _M.main(id)
    while true do
        local r = current_req()
        if id then
            local ok, err = xpcall(require("tollgate.timer").run, on_error, id, r)
            if not ok then core.log_error("timer: " .. tostring(err)) end
        else
            local ok, err = xpcall(handle, on_error, current, r)
            if not ok then
                core.log_error("request failed in the gateway: " .. tostring(err))
                C.tg_resp_set_status(r, 500)
                local body = "Internal Server Error"
                C.tg_resp_set_body(r, body, #body)
            end
        end
        id = yield(YIELD_DONE)
    end
end

return _M
