-- gateway.config.yml, in Lua: the same model. A policy can be named (found
-- in policies/ beside this file, as from the YAML), or be a module table or
-- a plain function right here.
-- (a relative dofile path is taken from this file's directory, and the file
-- it loads is watched: editing it reloads the gateway)
local api_key = dofile("policies/api-key.lua")

return {
  http = { hostname = "127.0.0.1", port = tonumber(os.getenv("GATEWAY_PORT") or "8080") },
  apiEndpoints = {
    { name = "api", paths = { "/api/*" } },
  },
  serviceEndpoints = {
    { name = "backend", url = os.getenv("BACKEND_URL") or "http://127.0.0.1:8081" },
  },
  pipelines = {
    { name = "api", apiEndpoints = { "api" }, policies = {
      { policy = api_key, action = { keys = { ["k-123"] = "alice", ["k-456"] = "bob" } } },
      -- an inline step: a function of the request
      function(req) req:set_header("x-gateway", "tollgate") end,
      { proxy = { action = { serviceEndpoint = "backend", stripPath = true } } },
    } },
  },
}
