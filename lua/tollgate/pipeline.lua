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
local xpcall, tostring, ipairs = xpcall, tostring, ipairs
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

-- The access phase of a pipeline as a chain of closures, one per step,
-- each calling the next: the same as a loop over the steps, but without a
-- loop. LuaJIT does not compile a loop entered inside a request's trace
-- unless that loop is hot by itself, and a pipeline's steps loop turns only
-- once or twice per request: with a loop, a whole request would be
-- interpreted. Returns ran, nran: the steps that ran, when tracked.
local function chain(pipe)
    local steps = pipe.steps
    local nxt = function(_, ran, nran) return ran, nran end
    for i = #steps, 1, -1 do
        local st, after = steps[i], nxt
        nxt = function(req, ran, nran)
            local ok, took = xpcall(run_access, handler, st, req)
            if not ok then
                fail(req, pipe, st, "access", took)
                return ran, nran
            end
            if took and ran then
                nran = nran + 1
                ran[nran] = st
            end
            if req.responded then return ran, nran end
            return after(req, ran, nran)
        end
    end
    return nxt
end

-- A pipeline from its name and steps ({ name, policy, inst, cond, access,
-- response, log }), ready to run: whether any step has a response or log
-- phase, and its access chain, made once here rather than per request.
function _M.new(name, steps)
    local pipe = { name = name, steps = steps, has_response = false, has_log = false }
    for _, st in ipairs(steps) do
        pipe.has_response = pipe.has_response or st.response ~= nil
        pipe.has_log = pipe.has_log or st.log ~= nil
    end
    pipe.access = chain(pipe)
    return pipe
end

-- Runs the pipeline. Returns false when no step ended the request (Express
-- Gateway then tries the next matching route), true otherwise.
function _M.run(pipe, req)
    local access = pipe.access
    local ran, nran
    if pipe.has_response or pipe.has_log then
        ran, nran = access(req, {}, 0)
    else
        if IN_GATEWAY then
            req.tail = true -- nothing to run once a proxy is asked for (Request:proxy)
        end
        access(req)
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
