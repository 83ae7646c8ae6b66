-- luacheck: max line length 140
-- ip-restriction on requests from given client addresses (the C test kit
-- sets the peer address, IPv4 or IPv6).

local testing = require "tollgate.testing"

local LAN = { allow = { "10.0.0.0/8", "192.168.1.20", "2001:db8::/32", "::1" }, deny = { "10.0.13.0/24" } }

-- { case, action, client address, allowed }
local CASES = {
  { "in an allowed network", LAN, "10.200.3.4", true },
  { "an allowed single address", LAN, "192.168.1.20", true },
  { "next to an allowed single address", LAN, "192.168.1.21", false },
  { "outside every allowed network", LAN, "11.0.0.1", false },
  { "deny wins over allow", LAN, "10.0.13.77", false },
  { "just outside the denied /24", LAN, "10.0.14.1", true },
  { "an allowed IPv6 network", LAN, "2001:db8:abcd::1", true },
  { "outside the IPv6 network", LAN, "2001:db9::1", false },
  { "IPv6 loopback", LAN, "::1", true },
  { "an IPv4-mapped client matches IPv4 entries", LAN, "::ffff:10.1.1.1", true },
  { "an IPv4-mapped client is denied by IPv4 entries", LAN, "::ffff:10.0.13.1", false },
  { "deny only: others pass", { deny = { "203.0.113.0/24" } }, "198.51.100.1", true },
  { "deny only: a denied one", { deny = { "203.0.113.0/24" } }, "203.0.113.200", false },
  { "a prefix that is not a multiple of 8 (/20)", { allow = { "172.16.0.0/20" } }, "172.16.15.255", true },
  { "outside the /20", { allow = { "172.16.0.0/20" } }, "172.16.16.0", false },
  { "host bits in the entry are ignored", { allow = { "10.1.2.3/8" } }, "10.9.9.9", true },
  { "/0 matches every IPv4 address", { deny = { "0.0.0.0/0" } }, "8.8.8.8", false },
  { "/0 IPv4 does not match native IPv6", { deny = { "0.0.0.0/0" } }, "2001:db8::1", true },
  { "an IPv6 /127", { allow = { "2001:db8::/127" } }, "2001:db8::1", true },
  { "outside the IPv6 /127", { allow = { "2001:db8::/127" } }, "2001:db8::2", false },
  { "an IPv6 entry in a mapped form", { allow = { "::ffff:192.0.2.0/120" } }, "192.0.2.9", true },
  { "upper-case IPv6 entry", { allow = { "2001:DB8::/32" } }, "2001:db8::5", true },
  { "an empty allow list refuses all", { allow = {} }, "10.0.0.1", false },
}

describe("ip-restriction", function()
  for _, c in ipairs(CASES) do
    it(c[1] .. " (" .. c[3] .. ")", function()
      local res = testing.policy("ip-restriction", c[2]):run{ path = "/", client = c[3] }
      if c[4] then
        assert.equal(200, res.status)
        assert.is_table(res.upstream)
      else
        assert.equal(403, res.status)
        assert.equal("Forbidden", res.body)
        assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
        assert.is_nil(res.upstream)
        assert.equal("ip-restriction: client " .. c[3] .. " refused", res.req.error)
      end
    end)
  end

  it("answers with the configured status and message", function()
    local res = testing.policy("ip-restriction", { deny = { "127.0.0.0/8" }, statusCode = 401, message = "go away" })
      :run{ path = "/" }
    assert.equal(401, res.status)
    assert.equal("go away", res.body)
  end)

  -- { address, 16 bytes as hex (nil: invalid) }
  local ADDRESSES = {
    { "1.2.3.4", "00000000000000000000ffff01020304" },
    { "::", "00000000000000000000000000000000" },
    { "::1", "00000000000000000000000000000001" },
    { "1::", "00010000000000000000000000000000" },
    { "1:2:3:4:5:6:7::", "00010002000300040005000600070000" },
    { "::ffff:1.2.3.4", "00000000000000000000ffff01020304" },
    { "2001:db8:0:0:1:0:0:1", "20010db8000000000001000000000001" },
    { "1:2:3:4:5:6:7:8:9", nil },
    { ":1", nil },
    { "1.2.3", nil },
    { "12345::", nil },
  }
  local mod = testing.policy("ip-restriction", { deny = {} }).module
  for _, c in ipairs(ADDRESSES) do
    it("parses " .. c[1], function()
      local bytes = mod.parse_ip(c[1])
      if c[2] then
        assert.equal(c[2], (bytes:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)))
      else
        assert.is_nil(bytes)
      end
    end)
  end
end)
