-- The coffee shop's gateway.config.yml, written in Lua: the same model, so
-- `tollgate -c examples/coffee-shop/gateway.lua` serves exactly what the
-- YAML serves. Endpoints, services and pipelines are lists of tables with a
-- `name` (a list keeps its order; a Lua table's keys have none), and a
-- config file in Lua needs no top-level `policies` list.
--
-- Lua configs read the environment themselves (os.getenv): ${VAR:-default}
-- is YAML's way.

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

-- each API: 10 requests per 10 s per client, a token signed with the demo
-- key, then its service
local function pipeline(name, service)
  return {
    name = name,
    apiEndpoints = { name },
    policies = {
      { ["rate-limit"] = { action = { max = 10, windowMs = 10000 } } },
      { jwt = { action = { secretOrPublicKeyFile = "keys/demo-public.pem",
                           checkCredentialExistence = false } } },
      { proxy = { action = { serviceEndpoint = service } } },
    },
  }
end

return {
  http = { hostname = "127.0.0.1", port = tonumber(env("GATEWAY_PORT", "8080")) },
  https = {
    hostname = "127.0.0.1",
    port = tonumber(env("GATEWAY_TLS_PORT", "8443")),
    tls = { default = { key = "keys/demo-tls.key", cert = "keys/demo-tls.pem" } },
  },
  apiEndpoints = {
    { name = "customers", host = "customers.company.com", paths = { "/", "/*" } },
    { name = "orders", host = "orders.company.com", paths = { "/", "/*" } },
  },
  serviceEndpoints = {
    { name = "customersService", url = env("CUSTOMERS_URL", "http://127.0.0.1:8081") },
    { name = "ordersService", url = env("ORDERS_URL", "http://127.0.0.1:8082") },
  },
  pipelines = {
    pipeline("customers", "customersService"),
    pipeline("orders", "ordersService"),
  },
}
