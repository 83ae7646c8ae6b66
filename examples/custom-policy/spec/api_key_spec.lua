-- The api-key policy, in the two modes of tollgate.testing:
--   unit:        the policy alone, and the whole gateway config, on the
--                gateway's own C code, no server (milliseconds);
--   integration: the real binary on a free port, with a mock upstream.
--
--   busted --lua=luajit examples/custom-policy/spec      (from the repo root)

local testing = require "tollgate.testing"

local DIR = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")
local KEYS = { ["k-123"] = "alice", ["k-456"] = "bob" }

describe("api-key (unit)", function()
  local p = testing.policy("api-key", { keys = KEYS }, { dir = DIR })

  it("lets a known key through, names the consumer upstream and keeps the key", function()
    local res = p:run{ path = "/x", headers = { ["X-Api-Key"] = "k-456" } }
    assert.equal(200, res.status)
    assert.equal("bob", res.upstream.headers["eg-consumer-id"])
    assert.is_nil(res.upstream.headers["x-api-key"])
    assert.same({ id = "bob" }, res.req.user)
  end)

  it("refuses a missing or unknown key with 401, and the upstream never sees it", function()
    for _, headers in ipairs{ {}, { ["X-Api-Key"] = "nope" } } do
      local res = p:run{ path = "/x", headers = headers }
      assert.equal(401, res.status)
      assert.equal("ApiKey", res.headers["www-authenticate"])
      assert.is_nil(res.upstream)
      assert.equal("api-key: missing or unknown key", res.req.error)
    end
  end)

  it("refuses bad options with a message naming the key", function()
    local conf, err = testing.validate("api-key", { keys = {} }, { dir = DIR })
    assert.is_nil(conf)
    assert.matches("keys: needs at least one key", err)
    conf, err = testing.validate("api-key", { keys = KEYS, headr = "x" }, { dir = DIR })
    assert.is_nil(conf)
    assert.matches("action.headr: unknown option", err)
  end)
end)

-- the whole gateway, both forms, still without a server
for _, file in ipairs{ "gateway.config.yml", "gateway.lua" } do
  describe("the gateway in " .. file .. " (unit)", function()
    local gw = testing.gateway(DIR .. "/" .. file)

    it("routes /api/* through api-key to the backend, stripping /api", function()
      local res = gw:request{ path = "/api/orders/7", headers = { ["X-Api-Key"] = "k-123" },
        upstream = function(up)
          return { status = 200, headers = { ["Content-Type"] = "text/plain" },
                   body = up.method .. " " .. up.path .. " for " .. up.headers["eg-consumer-id"] }
        end }
      assert.equal(200, res.status)
      assert.equal("GET /orders/7 for alice", res.body)
    end)

    it("answers 401 without a key and 404 elsewhere", function()
      assert.equal(401, gw:request{ path = "/api/orders" }.status)
      assert.equal(404, gw:request{ path = "/other", headers = { ["X-Api-Key"] = "k-123" } }.status)
    end)
  end)
end

-- the real binary on a free port, with a mock upstream
describe("the gateway (integration)", function()
  local server = require "tollgate.testing.server"
  local mock = require "tollgate.testing.mock"
  local cjson = require "cjson"
  local process = require "tollgate.testing.process"
  local up, g

  setup(function()
    up = mock.start{ name = "backend" }
    g = server.start{
      config = assert(process.read_file(DIR .. "/gateway.config.yml")),
      files = { ["policies/api-key.lua"] = assert(process.read_file(DIR .. "/policies/api-key.lua")) },
      env = { GATEWAY_PORT = "0", BACKEND_URL = "http://127.0.0.1:" .. up.port },
    }
  end)
  teardown(function()
    if g then g:cleanup() end
    if up then up:stop() end
  end)

  it("serves a known key and refuses an unknown one", function()
    local res = assert(g:get("/api/echo/1", { ["X-Api-Key"] = "k-123" }))
    assert.equal(200, res.status)
    local echoed = cjson.decode(res.body)
    assert.equal("/echo/1", echoed.path)
    assert.equal("alice", echoed.headers["eg-consumer-id"])
    assert.equal(401, assert(g:get("/api/echo/1", { ["X-Api-Key"] = "nope" })).status)
  end)
end)
