-- log: writes a line built from the request to the gateway's log, at info
-- level, and lets the request go on. Express Gateway's option:
--
--   - log:
--       - action:
--           message: "${req.method} ${req.url} from ${req.ip} (${egContext.requestID})"
--
-- message is a template: text with ${...} parts, each a quoted literal or a
-- path (req.method, req.url, req.headers['user-agent'], req.user.sub,
-- egContext.requestID), joined with ||; a missing value prints "undefined",
-- as in JavaScript. Anything else is refused at load; for more, write Lua
-- with `req` in scope: message: { lua: "req.method .. ' ' .. req.url" }.
-- As in Express Gateway, write ${req.url}, not ${url}. If building the line
-- fails at run time (a Lua error), the failure is logged as an error and the
-- request still goes on. The line appears when tollgate.logLevel is info or
-- debug (info is the default).

local core = require "tollgate.core"
local template = require "tollgate.template"

local pcall, tostring = pcall, tostring

local function new(conf)
    local fn, err = template.compile_value(conf.message, "template", "message")
    if not fn then return nil, "message: " .. err end
    return { fn = fn }
end

local function access(self, req)
    local ok, msg = pcall(self.fn, req)
    if ok then
        core.log_info(msg == nil and "undefined" or tostring(msg))
    else
        core.log_error("log policy: failed to build log message: " .. tostring(msg))
    end
end

return {
    name = "log",
    schema = {
        description = "Logs a line built from the request, at info level.",
        properties = {
            message = { type = { "string", "object" }, additional = true, required = true,
                description = "a template such as \"${req.method} ${req.url}\", or { lua: ... }" },
        },
    },
    new = new,
    access = access,
}
