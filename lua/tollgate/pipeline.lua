-- tollgate.pipeline: runs a compiled pipeline for one request, inside the
-- request's coroutine.
--
-- Access phase: the steps in order (policies in order, each policy's steps
-- in order); every step whose condition holds runs, until one ends the
-- request, by returning a status (a local response) or by proxying.
-- Response phase: the `response` function of every step that ran, in
-- order, once the status and headers are known (upstream or local).
-- Log phase: the `log` function of every step that ran, after the last
-- byte went out.
--
-- A Lua error in a policy gives the client a 500 and is logged with the
-- pipeline and policy names; it never reaches the worker.

local core = require "tollgate.core"

local yield = coroutine.yield
local xpcall, tostring = xpcall, tostring
local traceback = debug.traceback

local YIELD_RESPOND = core.YIELD_RESPOND
-- Outside the gateway (tollgate.testing drives the coroutine itself), the
-- proxy always reports back to Lua.
local IN_GATEWAY = core.in_gateway

local _M = {}

local function fail(req, pipe, st, phase, err)
    core.log_error("pipeline " .. pipe.name .. ", policy " .. st.name .. " (" .. phase ..
        "): " .. tostring(err))
    req.error = "policy error"
    if not req.sent then
        req:respond(500, "Internal Server Error")
    end
end

-- The error and where it came from, on one log line.
local function handler(err)
    return (traceback(tostring(err), 2):gsub("\n%s*", "; "))
end

local function run_access(st, req)
    if st.cond and not st.cond(req) then return false end
    if st.access then
        local status, body, headers = st.access(st.inst, req)
        if status then
            req:respond(status, body, headers)
        end
    end
    return true
end

-- Runs the pipeline. Returns false when no step ended the request (Express
-- Gateway then tries the next matching route), true otherwise.
function _M.run(pipe, req)
    local steps = pipe.steps
    local ran, nran
    local track = pipe.has_response or pipe.has_log
    if track then
        ran, nran = {}, 0
    elseif IN_GATEWAY then
        req.tail = true -- nothing to run once a proxy is asked for (Request:proxy)
    end

    for i = 1, #steps do
        local st = steps[i]
        local ok, took = xpcall(run_access, handler, st, req)
        if not ok then
            fail(req, pipe, st, "access", took)
            break
        end
        if took and track then
            nran = nran + 1
            ran[nran] = st
        end
        if req.responded then break end
    end
    if not req.responded then return false end

    if pipe.has_response then
        for i = 1, nran do
            local st = ran[i]
            if st.response then
                local ok, err = xpcall(st.response, handler, st.inst, req)
                if not ok then fail(req, pipe, st, "response", err) end
            end
        end
    end

    if pipe.has_log then
        req.sent = true
        yield(YIELD_RESPOND) -- resumed after the last byte of the response
        for i = 1, nran do
            local st = ran[i]
            if st.log then
                local ok, err = xpcall(st.log, handler, st.inst, req)
                if not ok then
                    core.log_error("pipeline " .. pipe.name .. ", policy " .. st.name ..
                        " (log): " .. tostring(err))
                end
            end
        end
    end
    return true
end

return _M
