-- Request paths are normalized in C before routing, and that normalized
-- path is what goes upstream: dot segments (also spelled %2e) resolved,
-- runs of "/" merged, other escapes (%2f) left alone, the query untouched.

local ffi = require "ffi"
local core = require "tollgate.core"

local C = core.C
local errbuf = ffi.new("char[256]")
local lenp = ffi.new("size_t[1]")

local function target(path)
  local raw = "GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n"
  local r = C.tg_test_request(raw, #raw, nil, errbuf, 256)
  assert(r ~= nil, ffi.string(errbuf))
  local got = ffi.string(C.tg_req_target(r, lenp), lenp[0])
  C.tg_test_request_free(r)
  return got
end

-- { request target, what routing and the upstream see }
local CASES = {
  { "/a/b", "/a/b" },
  { "/api/../admin", "/admin" },
  { "/api/%2e%2e/admin", "/admin" },
  { "/api/%2E./admin?x=/../y", "/admin?x=/../y" },
  { "//admin", "/admin" },
  { "/a//b/", "/a/b/" },
  { "/a/./b", "/a/b" },
  { "/a/b/..", "/a/" },
  { "/..", "/" },
  { "/../../x", "/x" },
  { "/a/b/.", "/a/b/" },
  { "/api%2fadmin", "/api%2fadmin" },
  { "/a/...", "/a/..." },
  { "/a/.b", "/a/.b" },
  { "/", "/" },
  { "/?q", "/?q" },
  { "/a/..?q=1", "/?q=1" },
}

describe("request path normalization", function()
  for _, c in ipairs(CASES) do
    it(c[1] .. " -> " .. c[2], function()
      assert.equal(c[2], target(c[1]))
    end)
  end
end)
