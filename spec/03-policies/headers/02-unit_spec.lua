-- luacheck: max line length 140
-- headers on requests parsed by the gateway's C: what goes upstream.

local testing = require "tollgate.testing"
local core = require "tollgate.core"

-- { case, action, request, expected upstream headers (false: absent) }
local CASES = {
  { "a literal, with the prefix", { headersPrefix = "X-Gw-", forwardHeaders = { Source = "'tollgate'" } },
    { path = "/" }, { ["x-gw-source"] = "tollgate" } },
  { "the name as written, no prefix", { forwardHeaders = { ["X-Method"] = "req.method" } },
    { method = "DELETE", path = "/" }, { ["x-method"] = "DELETE" } },
  { "the request id, as eg-request-id carries it", { forwardHeaders = { ["X-Id"] = "egContext.requestID" } },
    { path = "/" }, { ["x-id"] = "=eg-request-id" } },
  { "requestID alone", { forwardHeaders = { ["X-Id"] = "requestID" } }, { path = "/" }, { ["x-id"] = "=eg-request-id" } },
  { "the client address", { forwardHeaders = { ["X-Client"] = "req.ip" } }, { path = "/", client = "192.0.2.7" },
    { ["x-client"] = "192.0.2.7" } },
  { "another request header", { forwardHeaders = { ["X-Copy"] = "req.headers['x-orig']" } },
    { path = "/", headers = { ["X-Orig"] = "v1" } }, { ["x-copy"] = "v1", ["x-orig"] = "v1" } },
  { "a missing value adds nothing", { forwardHeaders = { ["X-Copy"] = "req.headers['x-none']" } },
    { path = "/" }, { ["x-copy"] = false } },
  { "|| falls back", { forwardHeaders = { ["X-Key"] = "req.headers['x-key'] || 'anonymous'" } },
    { path = "/" }, { ["x-key"] = "anonymous" } },
  { "a number", { forwardHeaders = { ["X-N"] = 42 } }, { path = "/" }, { ["x-n"] = "42" } },
  { "the hostname without the port", { forwardHeaders = { ["X-Host"] = "req.hostname" } },
    { path = "/", host = "api.example:8080" }, { ["x-host"] = "api.example" } },
  { "a query parameter", { forwardHeaders = { ["X-Q"] = "req.query.lang" } }, { path = "/a?lang=fr%20CA&x=1" },
    { ["x-q"] = "fr CA" } },
  { "Lua", { forwardHeaders = { ["X-Lua"] = { lua = "req.method:lower() .. '-' .. req.path" } } },
    { method = "POST", path = "/p", body = "" }, { ["x-lua"] = "post-/p" } },
  { "the client's header of that name is replaced",
    { forwardHeaders = { ["X-From"] = "'gateway'" } },
    { path = "/", headers = { ["x-from"] = "client" } }, { ["x-from"] = "gateway" } },
}

describe("headers", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = testing.policy("headers", c[2]):run(c[3])
      assert.equal(200, res.status)
      assert.is_table(res.upstream)
      for name, v in pairs(c[4]) do
        if v == false then
          assert.is_nil(res.upstream.headers[name], name)
        elseif v:sub(1, 1) == "=" then
          assert.is_string(res.upstream.headers[v:sub(2)])
          assert.equal(res.upstream.headers[v:sub(2)], res.upstream.headers[name], name)
        else
          assert.equal(v, res.upstream.headers[name], name)
        end
      end
    end)
  end

  it("one header is sent once, even when the client sent it twice", function()
    local res = testing.policy("headers", { forwardHeaders = { ["X-A"] = "'new'" } }):run{
      path = "/", headers = { { "X-A", "1" }, { "x-a", "2" } } }
    local n = 0
    for _, kv in ipairs(res.upstream.header_list) do
      if kv[1]:lower() == "x-a" then n = n + 1; assert.equal("new", kv[2]) end
    end
    assert.equal(1, n)
  end)

  it("a claim of the authenticated user", function()
    local req = testing.request{ path = "/" }
    req.user = { sub = "alice", id = 7 }
    local res = testing.policy("headers", { forwardHeaders = { ["X-User"] = "req.user.sub",
      ["X-Consumer"] = "consumer.id" } }):run(req)
    assert.equal("alice", res.upstream.headers["x-user"])
    assert.equal("7", res.upstream.headers["x-consumer"])
  end)

  it("a Lua error answers 500, is logged, and nothing goes upstream", function()
    local log = stub(core, "log_error")
    finally(function() log:revert() end)
    local res = testing.policy("headers", { forwardHeaders = { ["X-A"] = { lua = "req.nothing.field" } } })
      :run{ path = "/" }
    assert.equal(500, res.status)
    assert.is_nil(res.upstream)
    assert.stub(log).was_called(1)
    assert.truthy(log.calls[1].vals[1]:find("policy headers (access): forwardHeaders.X-A:1: attempt to index",
      1, true))
  end)
end)
