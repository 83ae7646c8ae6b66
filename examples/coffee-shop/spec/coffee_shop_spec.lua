-- luacheck: std +busted
-- The coffee-shop example end to end: services.lua and the real gateway
-- with the example's own gateway.config.yml (and system.config.yml, and the
-- demo key), on free ports passed through the config's ${...} variables.
-- Every pipeline is rate-limit (10 per 10 s per client) -> jwt -> proxy; the
-- specs below stay under the limit per pipeline, then the last one shows it.
--
--   busted --lua=luajit examples/coffee-shop/spec     (from the repo root)

local gateway = require "spec.support.gateway"
local process = require "spec.support.process"
local cjson = require "cjson"

local EXAMPLE = process.repo_root() .. "/examples/coffee-shop"

local TOKEN

-- The example's files, as the gateway reads them beside its config.
local function example_files()
  return {
    ["system.config.yml"] = assert(process.read_file(EXAMPLE .. "/system.config.yml")),
    ["keys/demo-public.pem"] = assert(process.read_file(EXAMPLE .. "/keys/demo-public.pem")),
    ["keys/demo-tls.pem"] = assert(process.read_file(EXAMPLE .. "/keys/demo-tls.pem")),
    ["keys/demo-tls.key"] = assert(process.read_file(EXAMPLE .. "/keys/demo-tls.key")),
  }
end

local function json(res)
  assert.equal("application/json", res.headers["content-type"])
  return cjson.decode(res.body)
end

-- the same specs for the YAML and for its Lua twin
for _, CONFIG in ipairs{ "gateway.config.yml", "gateway.lua" } do
describe("coffee-shop example (" .. CONFIG .. ")", function()
  local services_pid, services_dir, g

  setup(function()
    -- the services, on ports they pick themselves (port 0)
    services_dir = process.tmpdir("coffee-shop")
    local out = services_dir .. "/stdout.log"
    services_pid = assert(process.start{
      cmd = { os.getenv("LUAJIT") or "luajit", EXAMPLE .. "/services.lua",
              "--customers-port", "0", "--orders-port", "0" },
      stdout = out, stderr = services_dir .. "/stderr.log",
    })
    local urls = {}
    process.wait_for(function()
      for name, url in (process.read_file(out) or ""):gmatch("(%a+) service listening on (%S+)\n") do
        urls[name] = url
      end
      assert(process.alive(services_pid), "services.lua exited:\n" ..
             (process.read_file(services_dir .. "/stderr.log") or ""))
      return urls.customers and urls.orders
    end, 5, "services.lua to print both 'listening on' lines")

    -- a token from the example's own minting script
    local code, minted = process.run{ cmd = { EXAMPLE .. "/mint-token.sh", "spec-user" } }
    assert.equal(0, code, minted)
    TOKEN = minted:match("^(%S+)")

    -- the gateway, with the example's files unchanged
    g = gateway.start{
      config = assert(process.read_file(EXAMPLE .. "/" .. CONFIG)),
      config_name = CONFIG,
      files = example_files(),
      env = { GATEWAY_PORT = "0", GATEWAY_TLS_PORT = "0", CUSTOMERS_URL = urls.customers,
              ORDERS_URL = urls.orders },
    }
    -- every request below carries the token unless it says otherwise
    local get = g.get
    g.get = function(self, path, headers, opts)
      headers = headers or {}
      if headers.Authorization == nil then headers.Authorization = "Bearer " .. TOKEN end
      if headers.Authorization == false then headers.Authorization = nil end
      return get(self, path, headers, opts)
    end
  end)

  teardown(function()
    if g then
      local code = g:stop()
      g:cleanup()
      assert.equal(0, code)
    end
    if services_pid then process.stop(services_pid, "TERM", 5) end
    if services_dir then process.rm_rf(services_dir) end
  end)

  -- The access-log line (stdout) of the request with this id, decoded.
  local function access_log(id)
    local line = g:wait_log('^({.*"id":"' .. id .. '".*})$', { stream = "stdout" })
    return cjson.decode(line)
  end

  it("is a valid config for `tollgate -t`", function()
    local code, out = gateway.check(assert(process.read_file(EXAMPLE .. "/" .. CONFIG)), {
      files = example_files(), config_name = CONFIG,
    })
    assert.equal(0, code, out)
    assert.matches("is valid", out)
  end)

  it("routes customers.company.com to the customers service", function()
    local res = assert(g:get("/customers", { Host = "customers.company.com" }))
    assert.equal(200, res.status)
    local body = json(res)
    assert.equal("customers", body.service)
    assert.equal(3, #body.customers)

    res = assert(g:get("/customers/2", { Host = "customers.company.com" }))
    assert.equal(200, res.status)
    assert.equal("Alan Turing", json(res).customer.name)
  end)

  it("routes orders.company.com to the orders service", function()
    local res = assert(g:get("/orders/1", { Host = "orders.company.com" }))
    assert.equal(200, res.status)
    local body = json(res)
    assert.equal("orders", body.service)
    assert.equal(1, body.order.id)

    res = assert(g:get("/", { Host = "orders.company.com" }))
    assert.equal("orders", json(res).service)
  end)

  it("passes a POST body through to the orders service", function()
    local res = assert(g:request{
      method = "POST", path = "/orders", host = "orders.company.com",
      headers = { ["Content-Type"] = "application/json", Authorization = "Bearer " .. TOKEN },
      body = cjson.encode{ customerId = 2, item = "latte" },
    })
    assert.equal(201, res.status)
    local order = json(res).order
    assert.equal("latte", order.item)
    assert.equal(2, order.customerId)
    assert.is_number(order.id)

    res = assert(g:get("/orders/" .. order.id, { Host = "orders.company.com" }))
    assert.equal("latte", json(res).order.item)
  end)

  it("sends the gateway's request id upstream as eg-request-id", function()
    local res = assert(g:get("/customers/1", { Host = "customers.company.com" }))
    local id = json(res).requestId
    assert.is_string(id)
    assert.matches("^[%w]+$", id)
    local entry = access_log(id)
    assert.equal("customers", entry.pipeline)
    assert.equal("/customers/1", entry.path)
    assert.equal(200, entry.status)

    -- every request gets its own id
    local res2 = assert(g:get("/orders", { Host = "orders.company.com" }))
    assert.is_not.equal(id, json(res2).requestId)
    assert.equal("orders", access_log(json(res2).requestId).pipeline)
  end)

  it("passes the service's own 404 through", function()
    local res = assert(g:get("/customers/99", { Host = "customers.company.com" }))
    assert.equal(404, res.status)
    local body = json(res)
    assert.equal("customers", body.service)
    assert.equal("customer 99 not found", body.error)
  end)

  it("answers 404 itself for a host no apiEndpoint matches", function()
    local res = assert(g:get("/customers", { Host = "coffee.company.com" }))
    assert.equal(404, res.status)
    assert.matches("^text/html", res.headers["content-type"])
    assert.matches("Cannot GET /customers", res.body, 1, true)
  end)

  it("matches the host without case or port, per request on one connection", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    for _, case in ipairs{
      { "Orders.Company.com:8080", "orders" },
      { "customers.company.com", "customers" },
      { "orders.company.com", "orders" },
    } do
      assert(conn:request{ path = "/", host = case[1],
                           headers = { Authorization = "Bearer " .. TOKEN } })
      local res = assert(conn:read_response())
      assert.equal(200, res.status)
      assert.equal(case[2], json(res).service)
    end
  end)
it("refuses a request without a token: 401 with WWW-Authenticate", function()
    local res = assert(g:get("/customers", { Host = "customers.company.com", Authorization = false }))
    assert.equal(401, res.status)
    assert.equal("Unauthorized", res.body)
    assert.equal("Bearer", res.headers["www-authenticate"])
    local bad = assert(g:get("/customers", { Host = "customers.company.com",
                                             Authorization = "Bearer " .. TOKEN:sub(1, -6) .. "AAAAA" }))
    assert.equal(401, bad.status)
    assert.equal('Bearer error="invalid_token"', bad.headers["www-authenticate"])
  end)

  it("answers 429 past 10 requests per 10 s per client, with the rate-limit headers", function()
    local seen_429
    for _ = 1, 22 do -- within one window (even if one ended mid-way) this reaches 429
      local res = assert(g:get("/orders", { Host = "orders.company.com" }))
      assert.equal("10", res.headers["x-ratelimit-limit"])
      if res.status == 429 then
        seen_429 = res
        break
      end
      assert.equal(200, res.status)
    end
    assert.is_table(seen_429, "no 429 after 22 requests")
    assert.equal("0", seen_429.headers["x-ratelimit-remaining"])
    assert.is_string(seen_429.headers["retry-after"])
  end)
it("serves the same APIs over HTTPS with the demo certificate", function()
    local tls_port = g:wait_log("listening on https://127%.0%.0%.1:(%d+)")
    local code, out = process.run{ cmd = { "curl", "-sS", "--cacert", EXAMPLE .. "/keys/demo-tls.pem",
      "-H", "Authorization: Bearer " .. TOKEN,
      "--resolve", "customers.company.com:" .. tls_port .. ":127.0.0.1",
      "https://customers.company.com:" .. tls_port .. "/customers/1" } }
    assert.equal(0, code, out)
    local body = cjson.decode(out)
    assert.equal("customers", body.service)
    assert.equal("Ada Lovelace", body.customer.name)
  end)
end)
end
