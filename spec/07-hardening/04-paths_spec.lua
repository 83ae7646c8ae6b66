-- luacheck: std +busted
-- Request targets against routing: path tricks (dot segments, encoded
-- dots and slashes, encoded letters, repeated slashes, case, trailing dots
-- and other suffixes), absolute-form targets (routed by the URL's host,
-- which also goes upstream as Host), asterisk-form, and HTTP/1.0 without
-- Host.
--
-- The rule: what routing saw and what the upstream gets are the same
-- resource.  The gateway normalizes the path before routing (runtime/
-- http1_request.c normalize_path: "." and ".." segments resolved, also spelled
-- %2e, never above the root; runs of "/" merged; other escapes kept) and
-- forwards that path.  Each upstream here serves one endpoint, and every
-- answer is checked twice: against the case table (which endpoint, which
-- path), and against the path the upstream received, normalized the way
-- RFC 3986 says two URIs are the same (section 6.2.2: percent-encoded
-- unreserved characters decoded, dot segments removed; and slashes merged,
-- as many servers do), which must still route to that same endpoint.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local cjson = require "cjson"
local H = require "spec.07-hardening.helpers"

-- Endpoints (declaration order), each with its own upstream (the mock's
-- name is the endpoint's):
--   admin    /admin, /admin/*   -> mock "admin"
--   api      /api/*             -> mock "api"
--   strip    /strip/*           -> mock "strip", service URL /base/, stripPath
--   default  everything else    -> mock "default"
local CONFIG = [[
apiEndpoints:
  admin: { host: '*', paths: ['/admin', '/admin/*'] }
  api: { host: '*', paths: '/api/*' }
  strip: { host: '*', paths: '/strip/*' }
  default: { host: '*' }
serviceEndpoints:
  admin: { url: 'http://127.0.0.1:${ADMIN}' }
  api: { url: 'http://127.0.0.1:${API}' }
  strip: { url: 'http://127.0.0.1:${STRIP}/base/' }
  default: { url: 'http://127.0.0.1:${DEFAULT}' }
policies: [proxy]
pipelines:
  admin: { apiEndpoints: [admin], policies: [ { proxy: [ { action: { serviceEndpoint: admin } } ] } ] }
  api: { apiEndpoints: [api], policies: [ { proxy: [ { action: { serviceEndpoint: api } } ] } ] }
  strip:
    apiEndpoints: [strip]
    policies: [ { proxy: [ { action: { serviceEndpoint: strip, stripPath: true } } ] } ]
  default:
    apiEndpoints: [default]
    policies: [ { proxy: [ { action: { serviceEndpoint: default } } ] } ]
]]

-- target -> endpoint (= upstream) that must serve it, and the target the
-- upstream must receive (nil: not pinned, only the consistency rule)
local PATHS = {
  { "/api/x", "api", "/api/x" },
  { "/api/../admin", "admin", "/admin" },
  { "/api/../admin/x", "admin", "/admin/x" },
  { "/api/%2e%2e/admin", "admin", "/admin" },
  { "/api/%2E%2e/admin", "admin", "/admin" },
  { "/api/.%2e/admin", "admin", "/admin" },
  { "/api/%2e./admin", "admin", "/admin" },
  { "/api/./../admin", "admin", "/admin" },
  { "/api/x/./../../admin?q=/../x", "admin", "/admin?q=/../x" },
  { "/%2e%2e/admin", "admin", "/admin" },
  { "/../admin", "admin", "/admin" },
  { "/../../admin", "admin", "/admin" },
  { "//admin", "admin", "/admin" },
  { "//admin//x", "admin", "/admin/x" },
  { "/./admin", "admin", "/admin" },
  { "/admin/.", "admin", "/admin/" },
  { "/ADMIN", "admin", "/ADMIN" },
  { "/Admin/X", "admin", "/Admin/X" },
  { "/admin/..", "default", "/" },
  { "/admin/../api/x", "api", "/api/x" },
  { "/api/..", "default", "/" },
  { "/api/.", "api", "/api/" },
  -- encoded slashes stay encoded: one segment, for routing and upstream
  { "/api%2fadmin", "default", "/api%2fadmin" },
  { "/api%2Fx", "default", "/api%2Fx" },
  { "/api/%2e%2e%2fadmin", "api", "/api/%2e%2e%2fadmin" },
  { "/api/..%2fadmin", "api", "/api/..%2fadmin" },
  { "/admin%2f", "default", "/admin%2f" },
  -- suffixes that make another resource
  { "/admin.", "default", "/admin." },
  { "/admin..", "default", "/admin.." },
  { "/admin./x", "default", "/admin./x" },
  { "/admin%2e", "default", "/admin%2e" },
  { "/admin%20", "default", "/admin%20" },
  { "/admin;x", "default", "/admin;x" },
  { "/api/...", "api", "/api/..." },
  { "/api/.../admin", "api", "/api/.../admin" },
  { "/api/%252e%252e/admin", "api", "/api/%252e%252e/admin" },
  -- encoded unreserved characters are the same URI as the characters
  -- (RFC 3986 6.2.2.2): /%61dmin is /admin
  { "/%61dmin", "admin", "/admin" },
  { "/%41DMIN/x", "admin", "/ADMIN/x" },
  { "/adm%69n/x", "admin", "/admin/x" },
  { "/api/%2e%2e/%61dmin", "admin", "/admin" },
  { "/%61pi/x", "api", "/api/x" },
  { "/%2561dmin", "default", "/%2561dmin" },
  -- stripPath: the rest joined under the service's /base/
  { "/strip/x", "strip", "/base/x" },
  { "/strip//x", "strip", "/base/x" },
  { "/strip/x/../y", "strip", "/base/y" },
  { "/strip/..", "default", "/" },
  { "/strip/../admin", "admin", "/admin" },
  { "/strip/%2e%2e/%2e%2e/secret", "default", "/secret" },
  { "/strip/..%2f..%2fsecret", "strip", "/base/..%2f..%2fsecret" },
}

-- ---- the RFC 3986 view of a path ------------------------------------------

local UNRESERVED = "[%w%-%._~]"

local function decode_unreserved(p)
  return (p:gsub("%%(%x%x)", function(hex)
    local c = string.char(tonumber(hex, 16))
    if c:find(UNRESERVED) then return c end
    return "%" .. hex:upper()
  end))
end

-- RFC 3986 5.2.4 remove_dot_segments
local function remove_dots(input)
  local out = {}
  local i = 1
  local trailing = false
  for seg in (input .. "/"):gmatch("([^/]*)/") do
    if i > 1 then
      if seg == ".." then
        if #out > 0 then out[#out] = nil end
        trailing = true
      elseif seg == "." then
        trailing = true
      else
        out[#out + 1] = seg
        trailing = false
      end
    end
    i = i + 1
  end
  local p = "/" .. table.concat(out, "/")
  if trailing and p:sub(-1) ~= "/" then p = p .. "/" end
  return p
end

local function rfc_normalize(path)
  path = path:gsub("%?.*$", "")
  path = decode_unreserved(path)
  path = remove_dots(path)
  return (path:gsub("/+", "/"))
end

-- The endpoint a normalized upstream path belongs to (upstream paths of
-- strip are under /base/).
local function endpoint_of(p, upstream)
  local l = p:lower()
  if upstream == "strip" then
    return l:find("^/base/") and "strip" or "outside /base/"
  end
  if l == "/admin" or l == "/admin/" or l:find("^/admin/") then return "admin" end
  if l:find("^/api/") then return "api" end
  if l:find("^/strip/") then return "strip" end
  return "default"
end

describe("paths against routing", function()
  local g
  local mocks = {}

  setup(function()
    local vars = {}
    for _, name in ipairs{ "admin", "api", "strip", "default" } do
      mocks[name] = mock.start{ name = name }
      vars[name:upper()] = mocks[name].port
    end
    g = gateway.start{ config = H.config(CONFIG), vars = vars }
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  for _, case in ipairs(PATHS) do
    local target, want, want_path = case[1], case[2], case[3]
    it(("routes %s to %s consistently"):format(target, want), function()
      local conn = assert(g:connect())
      finally(function() conn:close() end)
      assert(conn:send("GET " .. target .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
      H.served(g)
      local res = assert(conn:read_response())
      assert.equal(200, res.status)
      local upstream = res.headers["x-upstream"]
      local got = cjson.decode(res.body).path
      -- consistency: the upstream that answered serves what it received
      assert.equal(upstream, endpoint_of(rfc_normalize(got), upstream),
        ("upstream %s received %s (RFC 3986: %s), which routing would not send it")
          :format(upstream, got, rfc_normalize(got)))
      assert.equal(want, upstream)
      if want_path then assert.equal(want_path, got) end
    end)
  end
end)

-- ---- absolute-form, asterisk-form, HTTP/1.0 without Host ----------------------

local FORMS_CONFIG = [[
apiEndpoints:
  hosted: { host: 'admin.example', paths: '/h/*' }
  anyhost: { host: '*', paths: '/h/*' }
  rest: { host: '*' }
serviceEndpoints:
  admin: { url: 'http://127.0.0.1:${ADMIN}' }
  default: { url: 'http://127.0.0.1:${DEFAULT}' }
policies: [proxy]
pipelines:
  hosted:
    apiEndpoints: [hosted]
    policies: [ { proxy: [ { action: { serviceEndpoint: admin, changeOrigin: false } } ] } ]
  anyhost:
    apiEndpoints: [anyhost]
    policies: [ { proxy: [ { action: { serviceEndpoint: default, changeOrigin: false } } ] } ]
  rest:
    apiEndpoints: [rest]
    policies: [ { proxy: [ { action: { serviceEndpoint: default, changeOrigin: false } } ] } ]
]]

-- raw request -> upstream, "METHOD target" it receives, its Host
-- (DEFAULT: the default upstream's own host:port), or a status the gateway
-- answers itself
local FORMS = {
  { "GET http://admin.example/h/a HTTP/1.1\r\nHost: public.example\r\n\r\n",
    "admin", "GET /h/a", "admin.example" },
  { "GET http://public.example/h/b HTTP/1.1\r\nHost: admin.example\r\n\r\n",
    "default", "GET /h/b", "public.example" },
  { "GET http://ADMIN.Example/h/c HTTP/1.1\r\nHost: x\r\n\r\n", "admin", "GET /h/c", "ADMIN.Example" },
  { "GET http://admin.example:8080/h/c HTTP/1.1\r\nHost: x\r\n\r\n",
    "admin", "GET /h/c", "admin.example:8080" },
  { "GET http://[::1]:8080/h/c HTTP/1.1\r\nHost: x\r\n\r\n", "default", "GET /h/c", "[::1]:8080" },
  { "GET http://admin.example HTTP/1.1\r\nHost: x\r\n\r\n", "default", "GET /", "admin.example" },
  { "GET http://admin.example?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", "default", "GET /?x=1",
    "admin.example" },
  { "GET http://admin.example/h/../x HTTP/1.1\r\nHost: x\r\n\r\n", "default", "GET /x",
    "admin.example" },
  { "GET http://admin.example/h/d HTTP/1.0\r\n\r\n", "admin", "GET /h/d", "admin.example" },
  { "OPTIONS * HTTP/1.1\r\nHost: admin.example\r\n\r\n", "default", "OPTIONS *", "admin.example" },
  { "OPTIONS * HTTP/1.0\r\n\r\n", "default", "OPTIONS *", "DEFAULT" },
  { "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
  { "POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400 },
  { "OPTIONS *foo HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
  { "GET /h/g HTTP/1.0\r\n\r\n", "default", "GET /h/g", "DEFAULT" },
  { "GET /h/g HTTP/1.0\r\nHost: admin.example\r\n\r\n", "admin", "GET /h/g", "admin.example" },
  { "GET /h/g HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "default", "GET /h/g", "DEFAULT" },
}

describe("request target forms", function()
  local g
  local mocks = {}

  setup(function()
    mocks.admin = mock.start{ name = "admin" }
    mocks.default = mock.start{ name = "default" }
    g = gateway.start{ config = H.config(FORMS_CONFIG),
                       vars = { ADMIN = mocks.admin.port, DEFAULT = mocks.default.port } }
  end)

  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  for _, case in ipairs(FORMS) do
    local raw, want, line, host = case[1], case[2], case[3], case[4]
    local name = raw:match("^[^\r]*") .. (raw:find("Host: ", 1, true) and
                 (" (Host: " .. raw:match("Host: ([^\r]*)") .. ")") or " (no Host)")
    it(("answers %s: %s"):format(name, type(want) == "number" and want or (want .. " " .. line)),
       function()
      local before = { admin = assert(mocks.admin:count()), default = assert(mocks.default:count()) }
      local conn = assert(g:connect())
      finally(function() conn:close() end)
      assert(conn:send(raw))
      H.served(g)
      local res = assert(conn:read_response{ method = raw:match("^%u+") })
      if type(want) == "number" then
        assert.equal(want, res.status)
        -- the gateway answered: neither upstream got it
        for n, m in pairs(mocks) do
          local c = assert(m:count())
          local served = n == "default" and 1 or 0
          assert.equal(before[n].requests + 1 + served, c.requests, n .. " got the request")
        end
        return
      end
      assert.equal(200, res.status)
      assert.equal(want, res.headers["x-upstream"])
      local e = cjson.decode(res.body)
      assert.equal(line, e.method .. " " .. e.path)
      if host == "DEFAULT" then host = "127.0.0.1:" .. mocks.default.port end
      -- exactly one Host header reaches the upstream (repeats would be joined)
      assert.equal(host, e.headers.host)
    end)
  end
end)
