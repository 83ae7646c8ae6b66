-- expression: runs code against the request, then lets it go on. Express
-- Gateway runs JavaScript (`jscode`); tollgate runs Lua, with `req` in scope:
--
--   - expression:
--       - action:
--           lua: "req.url = '/v2' .. req.url; req:set_header('x-api-version', '2')"
--
-- What the code can use is tollgate.request: req.method, req.url (assign it
-- to change the URL sent upstream), req.path, req.ip, req.id, req.user,
-- req.ctx (a table shared by the pipeline's policies for this request),
-- req:header(name), req:set_header(name, value), req:remove_header(name),
-- and req:respond(status, body, headers) to answer the request at once (the
-- pipeline then stops there). An error in the code answers 500 and is logged,
-- as an exception in Express Gateway's jscode does.
--
-- `jscode` is refused at load with the Lua to write: for simple statements
-- (assignments to req.url or a request header, string literals, paths such
-- as req.headers['x-a'], + concatenation) the message gives the translation,
-- e.g. jscode: "req.url = '/v2' + req.url" -> lua: "req.url = '/v2' .. req.url".

local conditions = require "tollgate.conditions"
local template = require "tollgate.template"

local function check(conf)
    if conf.jscode ~= nil then
        return nil, conditions.javascript_refusal("jscode", conf.jscode,
            "req:set_header('x-from', 'gateway')")
    end
    if conf.lua == nil then
        return nil, "lua: is required (Lua code with req in scope; jscode cannot run here)"
    end
    return true
end

local function new(conf)
    local fn, err = template.compile_lua(conf.lua, "expression")
    if not fn then return nil, err end
    return { fn = fn }
end

local function access(self, req)
    self.fn(req)
end

return {
    name = "expression",
    schema = {
        description = "Runs Lua code against the request (Express Gateway's jscode, in Lua).",
        properties = {
            lua = { type = "string",
                description = "Lua statements or an expression, with req in scope" },
            jscode = { type = "string",
                description = "Express Gateway's JavaScript: refused, with the Lua to write" },
        },
        check = check,
    },
    new = new,
    access = access,
}
