-- ip-restriction: lets requests through, or refuses them, by client address
-- (not in Express Gateway):
--
--   - ip-restriction:
--       - action:
--           allow: [10.0.0.0/8, 192.168.1.20, "2001:db8::/32", "::1"]
--           deny: [10.0.13.0/24]
--
-- Entries are IPv4 or IPv6 addresses, or networks in CIDR notation (bits
-- after the prefix are ignored: 10.1.2.3/8 is 10.0.0.0/8). IPv4 entries also
-- match IPv4-mapped IPv6 clients (::ffff:10.1.2.3), as a dual-stack listener
-- sees them. A client in `deny` is refused, even when it is also in `allow`;
-- otherwise, when `allow` is given, a client not in it is refused. A refused
-- request gets statusCode (403) with message as text/plain, and the access
-- log's error says which address was refused. The address is the TCP peer's:
-- behind a load balancer that is the balancer, and X-Forwarded-For is not
-- consulted. Bad entries are refused at load.

local tonumber, ipairs, type, tostring = tonumber, ipairs, type, tostring
local byte, char, sub, find, match, rep, lower = string.byte, string.char, string.sub,
    string.find, string.match, string.rep, string.lower
local concat = table.concat
local floor = math.floor

local V4_PREFIX = rep("\0", 10) .. "\255\255"

-- An IPv4 address as 4 bytes, or nil.
local function parse_v4(s)
    local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil end
    local out = {}
    for i, part in ipairs { a, b, c, d } do
        if #part > 3 or (#part > 1 and sub(part, 1, 1) == "0") then return nil end
        local n = tonumber(part)
        if n > 255 then return nil end
        out[i] = char(n)
    end
    return concat(out)
end

-- An IPv6 address as 16 bytes, or nil.
local function parse_v6(s)
    if find(s, "[^%x:%.]") then return nil end
    local head, tail = s, nil
    local dc = find(s, "::", 1, true)
    if dc then
        head, tail = sub(s, 1, dc - 1), sub(s, dc + 2)
        if find(tail, "::", 1, true) then return nil end
    end
    local function groups(part, allow_v4)
        local out = {}
        if part == "" then return out end
        local fields = {}
        for f in (part .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = f end
        for i, f in ipairs(fields) do
            if i == #fields and allow_v4 and find(f, ".", 1, true) then
                local v4 = parse_v4(f)
                if not v4 then return nil end
                out[#out + 1] = sub(v4, 1, 2)
                out[#out + 1] = sub(v4, 3, 4)
            else
                if not match(f, "^%x%x?%x?%x?$") then return nil end
                local n = tonumber(f, 16)
                out[#out + 1] = char(floor(n / 256), n % 256)
            end
        end
        return out
    end
    local hg = groups(head, tail == nil)
    if not hg then return nil end
    if tail == nil then
        if #hg ~= 8 then return nil end
        return concat(hg)
    end
    local tg = groups(tail, true)
    if not tg then return nil end
    local missing = 8 - #hg - #tg
    if missing < 1 then return nil end
    return concat(hg) .. rep("\0\0", missing) .. concat(tg)
end

-- An address as 16 bytes (IPv4 mapped into ::ffff:0:0/96), or nil.
local function parse_ip(s)
    if type(s) ~= "string" then return nil end
    local v4 = parse_v4(s)
    if v4 then return V4_PREFIX .. v4, true end
    return parse_v6(lower(s)), false
end

-- A network { bytes, bits } from "addr" or "addr/bits", or nil, err.
local function parse_cidr(s)
    local addr, bits = match(s, "^%s*([^/%s]+)%s*/%s*(%d+)%s*$")
    if not addr then addr = match(s, "^%s*([^/%s]+)%s*$") end
    if not addr then return nil, "\"" .. s .. "\" is not an address or a CIDR network" end
    local bytes, is_v4 = parse_ip(addr)
    if not bytes then return nil, "\"" .. s .. "\" is not a valid IPv4 or IPv6 address" end
    local max = is_v4 and 32 or 128
    local n = bits and tonumber(bits) or max
    if n > max then
        return nil, "\"" .. s .. "\": the prefix length is at most " .. max
    end
    if is_v4 then n = n + 96 end
    return { bytes = bytes, bits = n }
end

-- Whether the 16-byte address is in the network.
local function contains(net, addr)
    local bits = net.bits
    local whole = floor(bits / 8)
    if whole > 0 and sub(addr, 1, whole) ~= sub(net.bytes, 1, whole) then return false end
    local rest = bits - whole * 8
    if rest == 0 then return true end
    local shift = 2 ^ (8 - rest)
    return floor(byte(addr, whole + 1) / shift) == floor(byte(net.bytes, whole + 1) / shift)
end

local function compile_list(list, name)
    local nets = {}
    for i, s in ipairs(list or {}) do
        local net, err = parse_cidr(s)
        if not net then return nil, name .. "[" .. i .. "]: " .. err end
        nets[#nets + 1] = net
    end
    return nets
end

local function in_list(nets, addr)
    for i = 1, #nets do
        if contains(nets[i], addr) then return true end
    end
    return false
end

local function new(conf)
    local allow, err = compile_list(conf.allow, "allow")
    if not allow then return nil, err end
    local deny, derr = compile_list(conf.deny, "deny")
    if not deny then return nil, derr end
    return {
        allow = conf.allow and allow or nil,
        deny = deny,
        status = conf.statusCode,
        body = conf.message,
        headers = { ["Content-Type"] = "text/plain; charset=utf-8" },
    }
end

local function access(self, req)
    local ip = req.ip
    local addr = parse_ip(ip)
    local ok
    if not addr then
        ok = false
    elseif in_list(self.deny, addr) then
        ok = false
    elseif self.allow then
        ok = in_list(self.allow, addr)
    else
        ok = true
    end
    if not ok then
        req:log_error("ip-restriction: client " .. tostring(ip) .. " refused")
        return self.status, self.body, self.headers
    end
end

return {
    name = "ip-restriction",
    schema = {
        description = "Allows or refuses requests by client IP address (IPv4 and IPv6, CIDR).",
        properties = {
            allow = { type = "array", items = { type = "string" },
                description = "addresses or CIDR networks allowed; when given, others are refused" },
            deny = { type = "array", items = { type = "string" },
                description = "addresses or CIDR networks refused (deny wins over allow)" },
            statusCode = { type = "integer", default = 403, minimum = 400, maximum = 599,
                description = "status of a refused request" },
            message = { type = "string", default = "Forbidden",
                description = "body of a refused request (text/plain)" },
        },
        check = function(c)
            if c.allow == nil and c.deny == nil then
                return nil, "needs allow or deny (a list of addresses or CIDR networks)"
            end
            return true
        end,
    },
    new = new,
    access = access,
    parse_ip = parse_ip,
    parse_cidr = parse_cidr,
    contains = contains,
}
