-- tollgate.timer: Lua functions run later, once or periodically, in the
-- worker. Each run has its own coroutine, so a callback may sleep and make
-- HTTP calls (tollgate.http) without holding up requests.
--
--   local timer = require "tollgate.timer"
--   local t = timer.every(30, function(task) refresh_cache() end)   -- seconds
--   timer.after(1, function(task) ... end)
--   t:stop()
--
-- The callback gets a task object with :sleep(seconds). Timers made by a
-- configuration (in a policy's constructor, say) belong to it: a reload
-- stops them (a run in progress finishes) and the new configuration makes
-- its own; a graceful stop of the worker stops them all. When the config
-- is only being checked (tollgate -t, the master), nothing runs.
-- Errors in a callback are logged; a periodic timer keeps running.

local core = require "tollgate.core"

local C = core.C
local type, error, tostring = type, error, tostring
local yield = coroutine.yield

local _M = {}

local callbacks = {}
local next_id = 0

local Task = {}
Task.__index = Task

function Task:sleep(seconds)
    if core.sleep_hook then return core.sleep_hook(seconds) end
    C.tg_req_sleep(self._r, seconds)
    yield(core.YIELD_WAIT)
end

local Timer = {}
Timer.__index = Timer

function Timer:stop()
    if self.handle then
        C.tg_timer_stop(self.handle)
        callbacks[self.id] = nil
        self.handle = nil
    end
end

local function start(after, every, fn)
    if type(fn) ~= "function" then error("timer: expected a function", 3) end
    if type(after) ~= "number" or after < 0 then error("timer: expected seconds >= 0", 3) end
    if not core.has_c then error("timer: needs the C core", 3) end
    next_id = next_id + 1
    local id = next_id
    callbacks[id] = { fn = fn, once = every == 0 }
    local handle = C.tg_timer_start(core.context(), after, every, id)
    return setmetatable({ id = id, handle = handle }, Timer)
end

function _M.after(seconds, fn)
    return start(seconds, 0, fn)
end

function _M.every(seconds, fn)
    if type(seconds) ~= "number" or seconds <= 0 then
        error("timer.every: expected a period in seconds > 0", 2)
    end
    return start(seconds, seconds, fn)
end

-- Called by tollgate.runtime in the run's coroutine.
function _M.run(id, r)
    local cb = callbacks[id]
    if not cb then return end
    if cb.once then callbacks[id] = nil end
    local ok, err = pcall(cb.fn, setmetatable({ _r = r }, Task))
    if not ok then core.log_error("timer callback: " .. tostring(err)) end
end

return _M
