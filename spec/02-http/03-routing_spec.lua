-- luacheck: std +busted
-- apiEndpoints matching (Express Gateway semantics) through the real binary.
-- Every endpoint has its own pipeline with a terminate policy answering a
-- distinct status and message, so the answer names the endpoint that won.

local gateway = require "spec.support.gateway"
local h = require "spec.02-http.helpers"

-- Declaration order matters (first match wins): keep this list in order.
--   name, host, paths (YAML), pathRegex, methods (YAML), status;
--   message = name;  nopipe: no pipeline serves the endpoint.
local ENDPOINTS = {
  { name = "host-exact", host = "example.com", paths = "/h/exact", status = 201 },
  { name = "host-wild", host = "*.company.com", paths = "/h/wild", status = 202 },
  { name = "host-star", host = "*", paths = "/h/star", status = 203 },
  { name = "host-wild2", host = "*.*.deep.com", paths = "/h/wild2", status = 207 },
  { name = "exact", paths = "/exact", status = 210 },
  { name = "prefix", paths = "/pre/*", status = 211 },
  { name = "param", paths = "/item/:id", status = 212 },
  { name = "list", paths = "['/l1', '/l2/:x']", status = 213 },
  { name = "regex", pathRegex = "'^/re/[0-9]+$'", status = 214 },
  { name = "regex-unanchored", pathRegex = "'mid[0-9]'", status = 215 },
  { name = "post-only", paths = "/m", methods = "[POST]", status = 216 },
  { name = "get-only", paths = "/g", methods = "[GET]", status = 217 },
  { name = "methods-string", paths = "/ms", methods = "'PUT,DELETE'", status = 218 },
  { name = "order-first", paths = "/order", status = 220 },
  { name = "order-second", paths = "/order", status = 221 },
  { name = "order-prefix", paths = "/ord/*", status = 222 },
  { name = "order-specific", paths = "/ord/special", status = 223 },
  { name = "order-host-exact", host = "example.com", paths = "/oh", status = 224 },
  { name = "order-host-any", host = "*", paths = "/oh", status = 225 },
  { name = "order-any-first", host = "*", paths = "/oa", status = 226 },
  { name = "order-exact-second", host = "example.com", paths = "/oa", status = 227 },
  { name = "nopipe", paths = "/nopipe", status = 0, nopipe = true },
}

-- method, host, path -> status (and body: the endpoint's name, or for 404
-- the Express page "Cannot METHOD /path"; "Not Found" for nopipe)
local CASES = {
  -- hosts
  { "GET", "example.com", "/h/exact", 201 },
  { "GET", "EXAMPLE.com", "/h/exact", 201 },
  { "GET", "example.com:8080", "/h/exact", 201 },
  { "GET", "other.com", "/h/exact", 404 },
  { "GET", "www.example.com", "/h/exact", 404 },
  { "GET", "example.com.evil", "/h/exact", 404 },
  { "GET", "a.company.com", "/h/wild", 202 },
  { "GET", "A.Company.COM:99", "/h/wild", 202 },
  { "GET", "a.b.company.com", "/h/wild", 404 },
  { "GET", "company.com", "/h/wild", 404 },
  { "GET", "acompany.com", "/h/wild", 404 },
  { "GET", "whatever.org", "/h/star", 203 },
  { "GET", "127.0.0.1:1234", "/h/star", 203 },
  { "GET", "a.b.deep.com", "/h/wild2", 207 },
  { "GET", "a.deep.com", "/h/wild2", 404 },
  -- paths
  { "GET", "x", "/exact", 210 },
  { "GET", "x", "/exact/", 210 },
  { "GET", "x", "/EXACT", 210 },
  { "GET", "x", "/exact?q=1", 210 },
  { "GET", "x", "/exact/x", 404 },
  { "GET", "x", "/exactly", 404 },
  { "GET", "x", "/pre/x", 211 },
  { "GET", "x", "/pre/x/y", 211 },
  { "GET", "x", "/PRE/x", 211 },
  { "GET", "x", "/pre", 404 },
  { "GET", "x", "/prefix", 404 },
  { "GET", "x", "/item/42", 212 },
  { "GET", "x", "/item/42/", 212 },
  { "GET", "x", "/Item/42", 212 },
  { "GET", "x", "/item/a%2Fb", 212 },
  { "GET", "x", "/item/x/y", 404 },
  { "GET", "x", "/item", 404 },
  { "GET", "x", "/l1", 213 },
  { "GET", "x", "/l2/z", 213 },
  { "GET", "x", "/l2", 404 },
  { "GET", "x", "/l3", 404 },
  { "GET", "x", "/re/123", 214 },
  { "GET", "x", "/re/123?x=abc", 214 },
  { "GET", "x", "/re/abc", 404 },
  { "GET", "x", "/re/123/x", 404 },
  { "GET", "x", "/RE/123", 404 },
  { "GET", "x", "/zz/mid5/zz", 215 },
  { "GET", "x", "/zz/MID5", 404 },
  -- methods
  { "POST", "x", "/m", 216 },
  { "GET", "x", "/m", 404 },
  { "GET", "x", "/g", 217 },
  { "HEAD", "x", "/g", 217 },
  { "POST", "x", "/g", 404 },
  { "PUT", "x", "/ms", 218 },
  { "DELETE", "x", "/ms", 218 },
  { "GET", "x", "/ms", 404 },
  -- declaration order
  { "GET", "x", "/order", 220 },
  { "GET", "x", "/ord/special", 222 },
  { "GET", "x", "/ord/other", 222 },
  { "GET", "example.com", "/oh", 224 },
  { "GET", "other.com", "/oh", 225 },
  { "GET", "example.com", "/oa", 226 },
  -- no match / no pipeline
  { "GET", "x", "/nothing/here", 404 },
  { "POST", "x", "/nothing/here", 404 },
  { "GET", "x", "/nopipe", 404, nopipe = true },
}

local function config()
  local eps, pipes = { "apiEndpoints:" }, { "pipelines:" }
  for _, e in ipairs(ENDPOINTS) do
    eps[#eps + 1] = "  " .. e.name .. ":"
    eps[#eps + 1] = "    host: '" .. (e.host or "*") .. "'"
    if e.paths then eps[#eps + 1] = "    paths: " .. e.paths end
    if e.pathRegex then eps[#eps + 1] = "    pathRegex: " .. e.pathRegex end
    if e.methods then eps[#eps + 1] = "    methods: " .. e.methods end
    if not e.nopipe then
      pipes[#pipes + 1] = "  p-" .. e.name .. ":"
      pipes[#pipes + 1] = "    apiEndpoints: [" .. e.name .. "]"
      pipes[#pipes + 1] = "    policies:"
      pipes[#pipes + 1] = "      - terminate:"
      pipes[#pipes + 1] = "          - action:"
      pipes[#pipes + 1] = "              statusCode: " .. e.status
      pipes[#pipes + 1] = "              message: " .. e.name
    end
  end
  return h.head() .. table.concat(eps, "\n") .. "\npolicies: [terminate]\n"
         .. table.concat(pipes, "\n") .. "\n"
end

local NAME_OF = {}
for _, e in ipairs(ENDPOINTS) do NAME_OF[e.status] = e.name end

describe("routing", function()
  local g

  setup(function()
    g = gateway.start{ config = config() }
  end)

  teardown(function()
    gateway.cleanup_all()
  end)

  for _, c in ipairs(CASES) do
    local method, host, path, status = c[1], c[2], c[3], c[4]
    it(("%s %s (Host: %s) -> %d"):format(method, path, host, status), function()
      local res = assert(g:request{ method = method, path = path, host = host })
      assert.equal(status, res.status)
      if method == "HEAD" then
        assert.equal("", res.body)
        assert.equal(tostring(#NAME_OF[status]), res.headers["content-length"])
      elseif status ~= 404 then
        assert.equal(NAME_OF[status], res.body)
        assert.matches("^text/html", res.headers["content-type"])
      elseif c.nopipe then
        assert.equal("Not Found", res.body)
      else
        local shown = path:gsub("%?.*", "")
        assert.matches("<pre>Cannot " .. method .. " " .. shown .. "</pre>", res.body, 1, true)
        assert.matches("^text/html", res.headers["content-type"])
      end
    end)
  end

  it("answers HEAD on a GET endpoint without sending a body", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("HEAD /g HTTP/1.1\r\nHost: x\r\n\r\nGET /exact HTTP/1.1\r\nHost: x\r\n\r\n"))
    local head = assert(conn:read_response{ method = "HEAD" })
    assert.equal(217, head.status)
    local res = assert(conn:read_response{ method = "GET" })
    assert.equal(210, res.status)
    assert.equal("exact", res.body)
  end)

  it("routes an HTTP/1.0 request without Host to '*' endpoints only", function()
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:send("GET /h/star HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
    local res = assert(conn:read_response{ method = "GET" })
    assert.equal(203, res.status)
    assert.equal("host-star", res.body)
    assert(conn:send("GET /h/exact HTTP/1.0\r\n\r\n"))
    res = assert(conn:read_response{ method = "GET" })
    assert.equal(404, res.status)
    assert.matches("Cannot GET /h/exact", res.body, 1, true)
  end)

  it("answers OPTIONS on a path routed for other methods with 200 and Allow", function()
    local res = assert(g:request{ method = "OPTIONS", path = "/m", host = "x" })
    assert.equal(200, res.status)
    assert.equal("POST", res.headers["allow"])
  end)
end)
