-- response-transformer: adds and removes response headers and top-level
-- fields of a JSON response body. Express Gateway's options, same names:
--
--   - response-transformer:
--       - action:
--           headers:
--             add:
--               X-Served-By: "'tollgate'"
--               X-Request-Id: egContext.requestID
--             remove: [x-powered-by, server]
--           body:
--             add:
--               requestId: egContext.requestID
--             remove: [internalId]
--
-- Values, names and the JSON editing are request-transformer's: values are
-- Express Gateway expressions ("'literal'", req.method, egContext.requestID,
-- ... or { lua: "..." }), evaluated against the request; a value that
-- evaluates to nothing is not added; names to remove match any case for
-- headers and exactly for body fields; other fields are kept byte for byte, in
-- their order, and Content-Length follows the new body.
--
-- It applies to every response of the pipeline, from the upstream or from
-- the gateway (a 429 from rate-limit, say). The body is edited when it is a
-- non-empty JSON object; bodies are only read when the Content-Type mentions
-- json or is absent (Express Gateway tries to parse any body, chunk by chunk,
-- which only works for a body written in one chunk), when not compressed
-- (Content-Encoding), and when a Content-Length does not exceed
-- tollgate.client.maxBufferedBody. A chunked JSON response larger than that
-- cannot be read whole and ends with a 502: raise maxBufferedBody for such
-- upstreams. HEAD, 1xx, 204 and 304 responses are left alone.

local policy_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local chunk = assert(loadfile(policy_dir .. "/request-transformer.lua"))
local lib = chunk("request-transformer").lib

local tonumber, tostring = tonumber, tostring
local find, lower = string.find, string.lower

local DEFAULT_MAX_BUFFERED = 8 * 1024 * 1024

local function new(conf, env)
    local headers, err = lib.compile_spec(conf.headers, "headers")
    if err then return nil, err end
    local body, berr = lib.compile_spec(conf.body, "body")
    if berr then return nil, berr end
    local settings = env and env.settings
    return {
        headers = headers,
        body = body,
        max_buffered = settings and settings.max_buffered_body or DEFAULT_MAX_BUFFERED,
    }
end

-- Whether the response body is one to read and edit.
local function editable(self, req, res)
    if req.method == "HEAD" then return false end
    local st = res:status()
    if st < 200 or st == 204 or st == 304 then return false end
    local ce = res:header("content-encoding")
    if ce and lower(ce) ~= "identity" then return false end
    local ct = res:header("content-type")
    if ct and not find(lower(ct), "json", 1, true) then return false end
    local cl = tonumber(res:header("content-length") or "")
    if cl and (cl == 0 or cl > self.max_buffered) then return false end
    return true
end

local function response(self, req)
    local res = req.response
    local spec = self.body
    if spec and editable(self, req, res) then
        local body, err = res:body()
        if body then
            local out = lib.transform_json(spec, req, body, false)
            if out and out ~= body then res:set_body(out) end
        else
            req:log_error("response-transformer: " .. tostring(err))
        end
    end
    if self.headers then lib.edit_headers(self.headers, req, res) end
end

return {
    name = "response-transformer",
    schema = lib.schema("response", "Adds and removes response headers and JSON body fields."),
    new = new,
    response = response,
}
