-- luacheck: max line length 140
-- request-size-limit on requests parsed by the gateway's C: bodies with a
-- Content-Length, chunked bodies, and none.

local testing = require "tollgate.testing"

local function chunked(pieces)
  local raw = { "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" }
  for _, p in ipairs(pieces) do raw[#raw + 1] = ("%x\r\n%s\r\n"):format(#p, p) end
  raw[#raw + 1] = "0\r\n\r\n"
  return { raw = table.concat(raw) }
end

local function post(n) return { method = "POST", path = "/up", body = ("b"):rep(n) } end

-- { case, action, request, expected status (200: went upstream), expected upstream body length }
local CASES = {
  { "a Content-Length at the limit", { maxSize = 10 }, post(10), 200, 10 },
  { "a Content-Length over the limit", { maxSize = 10 }, post(11), 413 },
  { "no body", { maxSize = 0 }, { path = "/" }, 200, 0 },
  { "Content-Length: 0 with a zero limit", { maxSize = 0 }, post(0), 200, 0 },
  { "a chunked body within the limit goes upstream whole", { maxSize = 10 }, chunked { "abc", "defg" }, 200, 7 },
  { "a chunked body at the limit", { maxSize = 10 }, chunked { "abcde", "fghij" }, 200, 10 },
  { "a chunked body over the limit", { maxSize = 10 }, chunked { "abcdef", "ghijk" }, 413 },
  { "requireContentLength refuses a chunked body", { maxSize = 10, requireContentLength = true },
    chunked { "a" }, 411 },
  { "requireContentLength lets a Content-Length through", { maxSize = 10, requireContentLength = true },
    post(3), 200, 3 },
  { "a unit", { maxSize = "1kb" }, post(1025), 413 },
}

describe("request-size-limit", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = testing.policy("request-size-limit", c[2]):run(c[3])
      assert.equal(c[4], res.status)
      if c[4] == 200 then
        assert.equal(c[5], #res.upstream.body)
        if c[5] > 0 then assert.equal(tostring(c[5]), res.upstream.headers["content-length"]) end
        assert.is_nil(res.upstream.headers["transfer-encoding"])
      else
        assert.is_nil(res.upstream)
        assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
        assert.equal(c[4] == 413 and "Payload Too Large" or "Length Required", res.body)
        assert.truthy(res.req.error:find("request-size-limit: ", 1, true))
      end
    end)
  end

  it("answers with the configured status and message", function()
    local res = testing.policy("request-size-limit", { maxSize = 1, statusCode = 400, message = "too big" }):run(post(2))
    assert.equal(400, res.status)
    assert.equal("too big", res.body)
  end)

  it("refuses by Content-Length without reading the body", function()
    local p = testing.policy("request-size-limit", { maxSize = 5 })
    local req = testing.request(post(1000))
    local reads = 0
    req.body = function() reads = reads + 1 return "" end
    local res = p:run(req)
    assert.equal(413, res.status)
    assert.equal(0, reads)
    assert.equal("request-size-limit: body of 1000 bytes, more than 5", res.req.error)
  end)
end)
