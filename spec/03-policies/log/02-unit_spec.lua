-- luacheck: max line length 140
-- log on requests parsed by the gateway's C: the line logged at info, and
-- the request going on.

local testing = require "tollgate.testing"
local core = require "tollgate.core"

-- { case, message option, request, expected line (a function of the result for request ids) }
local CASES = {
  { "plain text", "hello", { path = "/" }, "hello" },
  { "method and URL with the query", "${req.method} ${req.url}", { method = "DELETE", path = "/x?y=1" },
    "DELETE /x?y=1" },
  { "a header", "ua=${req.headers['user-agent']}", { path = "/", headers = { ["User-Agent"] = "curl/8" } },
    "ua=curl/8" },
  { "a missing value prints undefined", "k=${req.headers['x-key']}", { path = "/" }, "k=undefined" },
  { "|| falls back", "k=${req.headers['x-key'] || 'anonymous'}", { path = "/" }, "k=anonymous" },
  { "the client address and host name", "${req.ip} ${req.hostname}",
    { path = "/", client = "198.51.100.4", host = "api.example:8443" }, "198.51.100.4 api.example" },
  { "a query parameter", "q=${req.query.q}", { path = "/s?q=a+b" }, "q=a b" },
  { "the request id", "id=${egContext.requestID}", { path = "/" },
    function(res) return "id=" .. res.upstream.headers["eg-request-id"] end },
  { "Lua", { lua = "('%s has %d bytes'):format(req.path, #req:body())" },
    { method = "POST", path = "/up", body = "12345" }, "/up has 5 bytes" },
}

describe("log", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local info = stub(core, "log_info")
      finally(function() info:revert() end)
      local res = testing.policy("log", { message = c[2] }):run(c[3])
      assert.equal(200, res.status)
      assert.is_table(res.upstream)
      local want = type(c[4]) == "function" and c[4](res) or c[4]
      assert.stub(info).was_called(1)
      assert.stub(info).was_called_with(want)
    end)
  end

  it("a failing message is logged as an error and the request goes on", function()
    local info, err = stub(core, "log_info"), stub(core, "log_error")
    finally(function() info:revert(); err:revert() end)
    local res = testing.policy("log", { message = { lua = "req.user.name" } }):run{ path = "/" }
    assert.equal(200, res.status)
    assert.is_table(res.upstream)
    assert.stub(info).was_not_called()
    assert.stub(err).was_called(1)
    assert.truthy(err.calls[1].vals[1]:find("log policy: failed to build log message: ", 1, true))
  end)

  it("the user set by an earlier policy", function()
    local info = stub(core, "log_info")
    finally(function() info:revert() end)
    local req = testing.request{ path = "/" }
    req.user = { sub = "alice" }
    testing.policy("log", { message = "user ${req.user.sub}" }):run(req)
    assert.stub(info).was_called_with("user alice")
  end)
end)
