-- The integration kit's own promises: tollgate.testing.server.start of a
-- small gateway (YAML or Lua) returns, listening, in well under a second,
-- and g:stop() stops it cleanly (exit 0) by its PID.

local H = require "spec.06-lua.helpers"

local now = H.now

local CASES = {
  { what = "a small YAML gateway", name = "gateway.config.yml", config = H.HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
policies: [terminate]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - terminate: { action: { statusCode: 200, message: up } }
]] },
  { what = "a small Lua gateway", name = "gateway.lua", config = [[
return {
  http = { hostname = "127.0.0.1", port = 0 },
  apiEndpoints = { { name = "api", paths = { "/*" } } },
  pipelines = { { name = "p", apiEndpoints = { "api" }, policies = {
    function() return 200, "up" end,
  } } },
}
]] },
}

describe("tollgate.testing.server", function()
  for _, c in ipairs(CASES) do
    it("starts " .. c.what .. " in well under a second, and stops it with exit 0", function()
      for round = 1, 3 do
        local t0 = now()
        local g = H.start{ config = c.config, config_name = c.name }
        local took = now() - t0
        assert.is_true(took < 1, ("round %d: server.start took %.3f s"):format(round, took))
        assert.is_number(g.port)
        local res = assert(g:get("/"))
        assert.equal(200, res.status)
        assert.equal("up", res.body)
        t0 = now()
        assert.equal(0, g:stop())
        assert.is_true(now() - t0 < 2, ("g:stop() took %.3f s"):format(now() - t0))
        assert.is_false(g:alive())
      end
    end)
  end
end)
