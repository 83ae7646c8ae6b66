-- luacheck: max line length 140
-- request-transformer on requests parsed by the gateway's C: the headers
-- and the body that go upstream.

local testing = require "tollgate.testing"

local JSON = { ["Content-Type"] = "application/json" }
local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

local function post(body, headers)
  return { method = "POST", path = "/r", headers = headers or JSON, body = body }
end

-- { case, action, request, expected upstream: body (exact), headers (false: absent) }
local CASES = {
  -- headers
  { "adds a header", { headers = { add = { ["X-A"] = "'1'" } } }, { path = "/" },
    { headers = { ["x-a"] = "1" } } },
  { "an added header replaces the client's", { headers = { add = { ["X-A"] = "'new'" } } },
    { path = "/", headers = { ["x-a"] = "old" } }, { headers = { ["x-a"] = "new" } } },
  { "removes a header, whatever the case", { headers = { remove = { "X-Secret" } } },
    { path = "/", headers = { ["x-secret"] = "s", ["X-Keep"] = "k" } },
    { headers = { ["x-secret"] = false, ["x-keep"] = "k" } } },
  { "add then remove: removed", { headers = { add = { ["X-A"] = "'1'" }, remove = { "x-a" } } },
    { path = "/" }, { headers = { ["x-a"] = false } } },
  { "a value that evaluates to nothing is not added", { headers = { add = { ["X-A"] = "req.headers['x-none']" } } },
    { path = "/" }, { headers = { ["x-a"] = false } } },
  { "a value from another header", { headers = { add = { ["X-Copy"] = "req.headers.authorization" } } },
    { path = "/", headers = { Authorization = "Bearer t" } }, { headers = { ["x-copy"] = "Bearer t" } } },

  -- JSON bodies
  { "adds fields at the end, keeping the others byte for byte",
    { body = { add = { s = "'x'", n = 5 } } },
    post('{ "b" : [1, 2 ,3], "a":{"z":1.50} }'), { body = '{"b":[1, 2 ,3],"a":{"z":1.50},"n":5,"s":"x"}' } },
  { "replaces an existing field in place", { body = { add = { a = "'new'" } } },
    post('{"a":1,"b":2}'), { body = '{"a":"new","b":2}' } },
  { "removes fields (exact names)", { body = { remove = { "password", "Token" } } },
    post('{"user":"u","password":"p","token":"t"}'), { body = '{"user":"u","token":"t"}' } },
  { "removes every duplicate of a name", { body = { remove = { "a" } } },
    post('{"a":1,"b":2,"a":3}'), { body = '{"b":2}' } },
  { "add then remove of the same field: removed", { body = { add = { a = "'1'" }, remove = { "a" } } },
    post('{"b":2}'), { body = '{"b":2}' } },
  { "a dotted name is one field", { body = { add = { ["a.b"] = "'x'" } } },
    post('{"a":{"b":1}}'), { body = '{"a":{"b":1},"a.b":"x"}' } },
  { "strings are escaped as JSON, slashes kept", { body = { add = { u = "req.url" } } },
    { method = "POST", path = "/p/q?x=\"1\"", headers = JSON, body = "{}" }, { body = '{"u":"/p/q?x=\\"1\\""}' } },
  { "numbers keep their precision", { body = { add = { big = 9007199254740991, f = 0.1 } } },
    post('{"id":12345678901234567890}'), { body = '{"id":12345678901234567890,"big":9007199254740991,"f":0.1}' } },
  { "a boolean", { body = { add = { ok = true } } }, post('{}'), { body = '{"ok":true}' } },
  { "a value that evaluates to nothing is not added", { body = { add = { k = "req.headers['x-none']" } } },
    post('{"a":1}'), { body = '{"a":1}' } },
  { "an empty JSON body counts as {}", { body = { add = { a = "'1'" } } }, post(""), { body = '{"a":"1"}' } },
  { "application/*+json with a charset is JSON",
    { body = { remove = { "a" } } }, post('{"a":1,"b":2}', { ["Content-Type"] = "application/merge-patch+json; charset=utf-8" }),
    { body = '{"b":2}', headers = { ["content-type"] = "application/merge-patch+json; charset=utf-8" } } },
  { "Content-Length follows the new body", { body = { add = { name = "'a longer value'" } } },
    post('{}'), { body = '{"name":"a longer value"}', headers = { ["content-length"] = "25" } } },
  { "a JSON array is left alone", { body = { add = { a = "'1'" } } }, post('[1,2]'), { body = "[1,2]" } },
  { "invalid JSON is left alone", { body = { add = { a = "'1'" } } }, post('{"a":'), { body = '{"a":' } },
  { "a text body is left alone", { body = { add = { a = "'1'" } } },
    post("hello", { ["Content-Type"] = "text/plain" }), { body = "hello" } },
  { "a body without Content-Type is left alone", { body = { add = { a = "'1'" } } },
    post("{}", {}), { body = "{}" } },

  -- forms
  { "a form: fields added and removed, others kept as sent",
    { body = { add = { src = "'gw one'", a = "'x&y'" }, remove = { "pw" } } },
    post("a=1&pw=secret&b=hello+world%21", FORM), { body = "a=x%26y&b=hello+world%21&src=gw%20one" } },
  { "a form with a charset", { body = { remove = { "b" } } },
    post("a=1&b=2", { ["Content-Type"] = "application/x-www-form-urlencoded; charset=UTF-8" }), { body = "a=1" } },
  { "a look-alike type is not a form", { body = { remove = { "b" } } },
    post("a=1&b=2", { ["Content-Type"] = "application/x-www-form-urlencoded-ish" }), { body = "a=1&b=2" } },
  { "a form with bracketed names is left alone", { body = { add = { a = "'1'" } } },
    post("user[name]=bob", FORM), { body = "user[name]=bob" } },
}

describe("request-transformer", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      local res = testing.policy("request-transformer", c[2]):run(c[3])
      assert.equal(200, res.status)
      local up = assert(res.upstream)
      if c[4].body then assert.equal(c[4].body, up.body) end
      for name, v in pairs(c[4].headers or {}) do
        if v == false then assert.is_nil(up.headers[name], name)
        else assert.equal(v, up.headers[name], name) end
      end
      if up.body ~= "" or up.headers["content-length"] then
        assert.equal(tostring(#up.body), up.headers["content-length"])
      end
    end)
  end

  it("a chunked JSON body goes upstream transformed, with a Content-Length", function()
    local res = testing.policy("request-transformer", { body = { add = { a = "'1'" } } }):run{
      raw = "POST /r HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "4\r\n{\"b\"\r\n4\r\n:2}\n\r\n0\r\n\r\n" }
    assert.equal('{"b":2,"a":"1"}', res.upstream.body)
    assert.equal("15", res.upstream.headers["content-length"])
    assert.is_nil(res.upstream.headers["transfer-encoding"])
  end)

  it("the added values see the user set by an earlier policy", function()
    local req = testing.request(post('{"x":1}'))
    req.user = { sub = "alice" }
    local res = testing.policy("request-transformer", { body = { add = { owner = "req.user.sub" } },
      headers = { add = { ["X-Owner"] = "consumer.sub" } } }):run(req)
    assert.equal('{"x":1,"owner":"alice"}', res.upstream.body)
    assert.equal("alice", res.upstream.headers["x-owner"])
  end)
end)
