-- The Lua engine inside the real binary: user policies found beside the
-- config, every phase, yielding (sleep) without holding up other requests,
-- errors in a policy, the FFI declarations, Lua config files, and upstream
-- host names resolved off the loop.

local gateway = require "spec.support.gateway"
local http = require "spec.support.http"
local mock = require "spec.support.mock"
local process = require "spec.support.process"
local cjson = require "cjson"

local HEAD = [[
http:
  hostname: 127.0.0.1
  port: 0
tollgate:
  accessLog: stdout
]]

-- A policy that uses every phase; sleeps in access and log when asked.
local PHASES = [[
return {
  name = "phases",
  schema = { properties = { sleep = { type = "number", default = 0 } } },
  new = function(conf) return { sleep = conf.sleep } end,
  access = function(self, req)
    if self.sleep > 0 then req:sleep(self.sleep) end
    req.ctx.seen = "access"
    req:set_header("X-From-Access", "yes")
  end,
  response = function(self, req)
    req.response:set_header("X-Phase", req.ctx.seen .. "+response")
    if self.sleep > 0 then req:sleep(self.sleep) end
  end,
  log = function(self, req)
    if self.sleep > 0 then req:sleep(self.sleep) end
  end,
}
]]

local BOOM = [[
return {
  name = "boom",
  access = function(self, req)
    local t = nil
    return t.field
  end,
}
]]

-- Answers 200 when every FFI symbol tollgate.core declares resolves.
local FFI_CHECK = [[
local ffi = require "ffi"
local core = require "tollgate.core"
return {
  name = "fficheck",
  access = function(self, req)
    local missing = {}
    for _, name in ipairs(core.SYMBOLS) do
      local ok = pcall(function() return ffi.C[name] end)
      if not ok then missing[#missing + 1] = name end
    end
    if #missing > 0 then return 500, table.concat(missing, ",") end
    return 200, tostring(#core.SYMBOLS) .. " symbols"
  end,
}
]]

-- Reads the request body whole, and tells what X-Trailer it saw after that.
local READ_BODY = [[
return {
  name = "readbody",
  access = function(self, req)
    req.ctx.body = req:body()
    req.ctx.trailer = req:header("x-trailer") or "none"
  end,
  response = function(self, req)
    req.response:set_header("X-Seen-Trailer", req.ctx.trailer)
  end,
}
]]

describe("Lua policies in the binary", function()
  local up
  setup(function() up = mock.start{ name = "lua-up" } end)
  teardown(function() gateway.cleanup_all(); mock.stop_all() end)

  local function start(extra_policies, pipeline_policies, files)
    local g = gateway.start{
      config = HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
serviceEndpoints:
  backend: { url: 'http://127.0.0.1:${UP}' }
policies: [proxy, terminate]] .. extra_policies .. [[]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
]] .. pipeline_policies,
      vars = { UP = tostring(up.port) },
      files = files,
    }
    finally(function() g:cleanup() end)
    return g
  end

  it("runs access, response and log phases, sharing req.ctx", function()
    local g = start(", phases", [[
      - phases:
      - proxy: { action: { serviceEndpoint: backend } }
]], { ["policies/phases.lua"] = PHASES })
    local res = assert(g:get("/echo/x"))
    assert.equal(200, res.status)
    assert.equal("access+response", res.headers["x-phase"])
    local body = cjson.decode(res.body)
    assert.equal("yes", body.headers["x-from-access"])
  end)

  it("a policy sleeping 100 ms does not hold up other requests on the same worker", function()
    local g = start(", phases", [[
      - phases:
          - condition: { name: pathExact, path: /slow }
            action: { sleep: 0.1 }
      - terminate: { action: { statusCode: 200, message: done } }
]], { ["policies/phases.lua"] = PHASES })
    -- one worker; a slow request first, then a fast one on another connection
    local slow = assert(http.connect(g.port))
    assert(slow:request{ path = "/slow" })
    local t0 = process.now()
    local fast = assert(g:get("/fast"))
    local fast_elapsed = process.now() - t0
    assert.equal(200, fast.status)
    local res = assert(slow:read_response())
    local slow_elapsed = process.now() - t0
    assert.equal(200, res.status)
    assert.is_true(slow_elapsed >= 0.1, "the slow request slept")
    assert.is_true(fast_elapsed < slow_elapsed, "the fast request was not queued behind it")
    assert.is_true(fast_elapsed < 0.09, "the fast request took " .. fast_elapsed .. " s")
    slow:close()
  end)

  it("an error in a policy gives a 500 and names the pipeline, policy, file and line", function()
    local g = start(", boom", [[
      - boom:
      - terminate: { action: { statusCode: 200 } }
]], { ["policies/boom.lua"] = BOOM })
    local res = assert(g:get("/x"))
    assert.equal(500, res.status)
    assert.equal("Internal Server Error", res.body)
    local where = g:wait_log("pipeline p, policy boom %(access%): .-(boom%.lua:%d+):")
    assert.equal("boom.lua:5", where:match("boom%.lua:%d+"))
    -- the worker survived
    local again = assert(g:get("/x"))
    assert.equal(500, again.status)
  end)

  it("a chunked request's trailer fields never become headers, when a policy read the body too",
     function()
    local g = start(", readbody", [[
      - readbody:
      - proxy: { action: { serviceEndpoint: backend } }
]], { ["policies/readbody.lua"] = READ_BODY })
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("POST /echo/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .. "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"))
    local res = assert(conn:read_response{ method = "POST" })
    assert.equal(200, res.status)
    assert.equal("none", res.headers["x-seen-trailer"])
    local e = cjson.decode(res.body)
    assert.equal("hello", e.body)
    assert.is_nil(e.headers["x-trailer"])
  end)

  it("every FFI function tollgate.core declares exists in the binary", function()
    local g = start(", fficheck", "      - fficheck:\n", { ["policies/fficheck.lua"] = FFI_CHECK })
    local res = assert(g:get("/"))
    assert.equal(200, res.status, res.body)
  end)
end)

describe("config forms", function()
  local up
  setup(function() up = mock.start{ name = "lua-cfg" } end)
  teardown(function() gateway.cleanup_all(); mock.stop_all() end)

  it("a Lua config file describing the same model serves like the YAML", function()
    local g = gateway.start{ config_name = "gateway.lua", config = ([[
return {
  http = { port = 0, hostname = "127.0.0.1" },
  apiEndpoints = { api = { host = "*", paths = { "/api/*" } } },
  serviceEndpoints = { backend = { url = "http://127.0.0.1:%d" } },
  policies = { "proxy" },
  pipelines = {
    main = {
      apiEndpoints = { "api" },
      policies = { { proxy = { { action = { serviceEndpoint = "backend", stripPath = true } } } } },
    },
  },
}
]]):format(up.port) }
    finally(function() g:cleanup() end)
    local res = assert(g:get("/api/echo/lua"))
    assert.equal(200, res.status)
    assert.equal("/echo/lua", cjson.decode(res.body).path)
  end)

  it("resolves an upstream host name (localhost) without blocking and proxies to it", function()
    local g = gateway.start{
      config = HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
serviceEndpoints:
  backend: { url: 'http://localhost:${UP}' }
policies: [proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - proxy: { action: { serviceEndpoint: backend } }
]],
      vars = { UP = tostring(up.port) },
    }
    finally(function() g:cleanup() end)
    local res = assert(g:get("/echo/dns"))
    assert.equal(200, res.status)
    assert.equal("localhost:" .. up.port, cjson.decode(res.body).headers.host)
  end)

  it("an unresolvable upstream host gives 502", function()
    local g = gateway.start{
      config = HEAD .. [[
apiEndpoints:
  api: { paths: '/*' }
serviceEndpoints:
  backend: { url: 'http://no-such-host.invalid:80' }
policies: [proxy]
pipelines:
  p:
    apiEndpoints: [api]
    policies:
      - proxy: { action: { serviceEndpoint: backend } }
]],
    }
    finally(function() g:cleanup() end)
    local res = assert(g:get("/x"))
    assert.equal(502, res.status)
    assert.equal("Bad gateway.", res.body)
  end)
end)
