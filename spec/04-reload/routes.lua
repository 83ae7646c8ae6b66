-- A gateway.config.yml with N routes, for the reload memory spec and
-- bench/reload.sh: N apiEndpoints with distinct hosts and paths, each with
-- its own pipeline (terminate with a message naming the route and the
-- variant; every 4th also a rate-limit, every 4th a jwt with a secret,
-- every 2nd a response header from a condition), then a catch-all endpoint
-- proxying to the upstream.
--
--   local routes = require "spec.04-reload.routes"
--   local text = routes.config{ n = 200, upstream = 8080, variant = "a",
--                               tollgate = { "watch: false" } }
--
--   luajit spec/04-reload/routes.lua N UPSTREAM_PORT VARIANT [TOLLGATE_LINE...] > gateway.config.yml
--
-- Requests: Host hI.example.com, GET /api/I or /api/I/anything -> 200
-- "route I VARIANT" (a Bearer token is needed where I % 4 == 2); any other
-- host -> proxied to the upstream.

local _M = {}

function _M.config(opts)
  local n, variant = opts.n, opts.variant or "a"
  local out = {
    "http:",
    "  hostname: 127.0.0.1",
    "  port: " .. tostring(opts.port or 0),
    "tollgate:",
    "  accessLog: off",
  }
  for _, l in ipairs(opts.tollgate or {}) do out[#out + 1] = "  " .. l end
  out[#out + 1] = "apiEndpoints:"
  for i = 1, n do
    out[#out + 1] = ("  e%d:"):format(i)
    out[#out + 1] = ("    host: h%d.example.com"):format(i)
    out[#out + 1] = ("    paths: ['/api/%d', '/api/%d/*']"):format(i, i)
    if i % 3 == 0 then out[#out + 1] = "    methods: [GET, POST]" end
  end
  out[#out + 1] = "  rest:"
  out[#out + 1] = "    host: '*'"
  out[#out + 1] = "    paths: '/*'"
  out[#out + 1] = "serviceEndpoints:"
  out[#out + 1] = "  upstream:"
  out[#out + 1] = "    url: 'http://127.0.0.1:" .. tostring(opts.upstream or 9) .. "'"
  out[#out + 1] = "policies: [terminate, rate-limit, jwt, proxy]"
  out[#out + 1] = "pipelines:"
  for i = 1, n do
    out[#out + 1] = ("  p%d:"):format(i)
    out[#out + 1] = ("    apiEndpoints: [e%d]"):format(i)
    out[#out + 1] = "    policies:"
    if i % 4 == 0 then
      out[#out + 1] = "      - rate-limit:"
      out[#out + 1] = ("          - action: { max: 1000000, windowMs: 60000 }")
    elseif i % 4 == 2 then
      out[#out + 1] = "      - jwt:"
      out[#out + 1] = ("          - action: { secretOrPublicKey: secret-%d, " ..
        "checkCredentialExistence: false }"):format(i)
    end
    out[#out + 1] = "      - terminate:"
    if i % 2 == 1 then
      out[#out + 1] = ("          - condition: { name: pathMatch, pattern: '^/api/%d/x[0-9]+$' }")
        :format(i)
      out[#out + 1] = ("            action: { statusCode: 201, message: 'route %d x %s' }")
        :format(i, variant)
    end
    out[#out + 1] = ("          - action: { statusCode: 200, message: 'route %d %s' }")
      :format(i, variant)
  end
  out[#out + 1] = "  rest:"
  out[#out + 1] = "    apiEndpoints: [rest]"
  out[#out + 1] = "    policies:"
  out[#out + 1] = "      - proxy: { action: { serviceEndpoint: upstream } }"
  return table.concat(out, "\n") .. "\n"
end

if select("#", ...) == 0 or (...) ~= "spec.04-reload.routes" then -- run as a script
  local tollgate = {}
  for i = 4, #arg do tollgate[#tollgate + 1] = arg[i] end
  io.write(_M.config{ n = tonumber(arg[1]), upstream = tonumber(arg[2]), variant = arg[3],
    tollgate = tollgate })
end

return _M
