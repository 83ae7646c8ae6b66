-- luacheck: std +busted
-- luacheck: max line length 140
-- tollgate.config: Express Gateway's gateway.config.yml into the model;
-- every error is "file:line: key.path: message".

local unit = require "spec.support.unit"
local config = require "tollgate.config"

local dedent = unit.dedent

local function names(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = e.name end
  return out
end

-- The Express Gateway getting-started config (`eg gateway create`, then
-- the key-auth step of the tutorial), with a rate-limit step and a
-- condition as the docs show them.
local TUTORIAL = dedent [[
  http:
    port: 8080
  admin:
    port: 9876
    host: localhost
  apiEndpoints:
    api:
      host: localhost
      paths: '/ip'
    admin-api:
      host: '*.example.com'
      paths: ['/admin', '/admin/*']
      methods: "GET, POST"
  serviceEndpoints:
    httpbin:
      url: 'https://httpbin.org'
    backend:
      urls:
        - http://10.0.0.1:3000/v1
        - http://10.0.0.2:3000/v1
  policies:
    - basic-auth
    - cors
    - expression
    - key-auth
    - log
    - oauth2
    - proxy
    - rate-limit
  pipelines:
    default:
      apiEndpoints:
        - api
      policies:
      # Uncomment `key-auth:` when instructed to in the Getting Started guide.
        - key-auth:
        - rate-limit:
            - action:
                max: 10
                windowMs: 60000
              condition:
                name: pathExact
                path: /ip
        - proxy:
            - action:
                serviceEndpoint: httpbin
                changeOrigin: true
    admin:
      apiEndpoints: [admin-api]
      policies:
        - proxy:
            action:
              serviceEndpoint: backend
]]

describe("config", function()
  teardown(unit.cleanup)

  describe("the Express Gateway tutorial config", function()
    local model, err, path

    setup(function()
      model, err, path = unit.load(TUTORIAL)
    end)

    it("loads", function()
      assert.is_nil(err)
      assert.is_table(model)
      assert.equal(path, model.file)
      assert.equal(path:match("^(.*)/"), model.dir)
    end)

    it("has http", function()
      assert.same({ port = 8080, hostname = "::" }, model.http)
    end)

    it("has the endpoints in order, with paths and methods normalised", function()
      assert.same({ "api", "admin-api" }, names(model.endpoints))
      local api, admin = model.endpoints[1], model.endpoints[2]
      assert.equal("localhost", api.host)
      assert.same({ "/ip" }, api.paths)
      assert.is_nil(api.methods)
      assert.equal("*.example.com", admin.host)
      assert.same({ "/admin", "/admin/*" }, admin.paths)
      assert.same({ "GET", "POST" }, admin.methods)
      assert.equal(api, model.endpoint_by_name.api[1])
    end)

    it("has the services, with parsed URLs", function()
      local h = model.services.httpbin
      assert.equal("httpbin", h.name)
      assert.equal(1, #h.urls)
      assert.same({ url = "https://httpbin.org", scheme = "https", host = "httpbin.org",
        port = 443, path = "/" }, h.urls[1])
      local b = model.services.backend
      assert.equal(2, #b.urls)
      assert.same({ "10.0.0.1", 3000, "/v1" }, { b.urls[1].host, b.urls[1].port, b.urls[1].path })
      assert.equal("10.0.0.2", b.urls[2].host)
    end)

    it("has the declared policies", function()
      for _, p in ipairs { "basic-auth", "cors", "expression", "key-auth", "log", "oauth2",
        "proxy", "rate-limit" } do
        assert.is_truthy(model.policies[p], p)
      end
      assert.is_nil(model.policies.terminate)
    end)

    it("has the pipelines, policies and steps in order", function()
      assert.same({ "default", "admin" }, names(model.pipelines))
      local d = model.pipelines[1]
      assert.same({ "api" }, d.endpoints)
      assert.same({ "key-auth", "rate-limit", "proxy" }, names(d.policies))
      -- key-auth with no steps: one step, no action, no condition
      assert.equal(1, #d.policies[1].steps)
      assert.is_nil(d.policies[1].steps[1].condition)
      local rl = d.policies[2].steps[1]
      assert.same({ max = 10, windowMs = 60000 }, rl.action)
      assert.same({ name = "pathExact", path = "/ip" }, rl.condition)
      assert.same({ serviceEndpoint = "httpbin", changeOrigin = true },
        d.policies[3].steps[1].action)
      -- a single step written as a mapping, not a list
      local a = model.pipelines[2]
      assert.same({ "admin-api" }, a.endpoints)
      assert.equal(1, #a.policies[1].steps)
      assert.same({ serviceEndpoint = "backend" }, a.policies[1].steps[1].action)
    end)

    it("warns that admin is ignored, and nothing else", function()
      assert.equal(1, #model.warnings)
      assert.matches("^" .. path:gsub("%p", "%%%0") .. ":3: admin: ", model.warnings[1])
    end)
  end)

  -- { name, yaml, line (a Lua pattern), message start (plain text) }
  local ERRORS = {
    { "http.port not a number", "http:\n  port: abc\n", "2",
      'http.port: expected a port number, got "abc"' },
    { "http.port out of range", "http:\n  port: 70000\n", "2",
      "http.port: expected a port number, got 70000" },
    { "http.port not an integer", "http:\n  port: 80.5\n", "2",
      "http.port: expected a port number" },
    { "http not a mapping", "http: 8080\n", "1", "http: expected a mapping" },
    { "unknown endpoint key", "apiEndpoints:\n  api:\n    host: x\n    bogus: 1\n", "4",
      "apiEndpoints.api.bogus: unknown key (known: host, hostRegex, methods, path, pathRegex, paths, scopes)" },
    { "unknown key in the second config of a list",
      "apiEndpoints:\n  api:\n    - host: a\n    - host: b\n      foo: 1\n", "5",
      "apiEndpoints.api[2].foo: unknown key" },
    { "host not a string", "apiEndpoints:\n  api:\n    host: [a, b]\n", "3",
      "apiEndpoints.api.host: expected a string" },
    { "paths item not a string", "apiEndpoints:\n  api:\n    paths: ['/a', {x: 1}]\n", "3",
      "apiEndpoints.api.paths[2]: expected a path string" },
    { "methods a number", "apiEndpoints:\n  api:\n    methods: 12\n", "3",
      "apiEndpoints.api.methods: expected a method" },
    { "methods with a bad name", "apiEndpoints:\n  api:\n    methods: 'GET, P OST'\n", "3",
      'apiEndpoints.api.methods: invalid method "P OST"' },
    { "service without url", "serviceEndpoints:\n  svc:\n    proxyOptions: {}\n", "[23]",
      "serviceEndpoints.svc: needs url or urls" },
    { "service with no value at all", "serviceEndpoints:\n  svc:\n", "2",
      "serviceEndpoints.svc: expected a mapping with url or urls" },
    { "endpoint not a mapping", "apiEndpoints:\n  api: /a\n", "2",
      "apiEndpoints.api: expected a mapping" },
    { "pipeline not a mapping", "pipelines:\n  p: 5\n", "2",
      "pipelines.p: expected a mapping with apiEndpoints and policies" },
    { "service URL with another scheme", "serviceEndpoints:\n  svc:\n    url: ftp://x\n", "3",
      'serviceEndpoints.svc.url: unsupported scheme ftp:// in "ftp://x"' },
    { "service URL without scheme", "serviceEndpoints:\n  svc:\n    url: localhost:3000\n", "3",
      'serviceEndpoints.svc.url: "localhost:3000" is not an absolute URL' },
    { "service URL with a bad port",
      "serviceEndpoints:\n  svc:\n    urls:\n      - http://a:1\n      - http://b:99999\n", "3",
      'serviceEndpoints.svc.urls[2]: invalid port in "http://b:99999"' },
    { "service URL with user:password",
      "serviceEndpoints:\n  svc:\n    url: http://u:p@h/\n", "3",
      "serviceEndpoints.svc.url: user:password@ in a service URL is not supported" },
    { "empty urls", "serviceEndpoints:\n  svc:\n    urls: []\n", "3",
      "serviceEndpoints.svc.urls: needs at least one URL" },
    { "policy used but not declared",
      "policies: [proxy]\npipelines:\n  p:\n    apiEndpoints: [a]\n    policies:\n      - terminate:\n",
      "6", "pipelines.p.policies[1]: terminate policy not declared in the 'policies' gateway.config section" },
    { "policy used with no policies section",
      "pipelines:\n  p:\n    apiEndpoints: [a]\n    policies:\n      - proxy: []\n",
      "5", "pipelines.p.policies[1]: proxy policy not declared in the 'policies' gateway.config section" },
    { "policy entry with two keys",
      "policies: [proxy, terminate]\npipelines:\n  p:\n    policies:\n      - proxy:\n        terminate:\n",
      "5", "pipelines.p.policies[1]: a policy entry names exactly one policy, got 2" },
    { "step with an unknown key",
      "policies: [proxy]\npipelines:\n  p:\n    policies:\n      - proxy:\n          - action: {}\n            foo: 1\n",
      "7", "pipelines.p.policies[1].proxy[1].foo: unknown key (known: action, condition)" },
    { "second step with an unknown key",
      "policies: [proxy]\npipelines:\n  p:\n    policies:\n      - proxy:\n          - action: {}\n          - actions: {}\n",
      "7", "pipelines.p.policies[1].proxy[2].actions: unknown key (known: action, condition)" },
    { "step not a mapping",
      "policies: [proxy]\npipelines:\n  p:\n    policies:\n      - proxy:\n          - just a string\n",
      "6", "pipelines.p.policies[1].proxy[1]: expected a mapping" },
    { "unknown pipeline key",
      "pipelines:\n  p:\n    apiEndpoints: [a]\n    polices: []\n", "4",
      "pipelines.p.polices: unknown key (known: apiEndpoint, apiEndpoints, policies, policy)" },
    { "policies not a list", "policies: proxy\n", "1", "policies: expected a list of policy names" },
    { "pipelines not a mapping", "pipelines: [a, b]\n", "1",
      "pipelines: expected a mapping of pipeline names" },
    { "error in the singular alias keeps its name",
      "pipeline:\n  p:\n    policy:\n      - proxy:\n", "4",
      "pipeline.p.policy[1]: proxy policy not declared" },
  }

  describe("errors name file:line and the key path:", function()
    for _, c in ipairs(ERRORS) do
      it(c[1], function()
        local model, err, path = unit.load(c[2])
        assert.is_nil(model)
        assert.is_string(err)
        local prefix = path .. ":"
        assert.equal(prefix, err:sub(1, #prefix), err)
        local line, msg = err:sub(#prefix + 1):match("^(%d+): (.*)$")
        assert.is_truthy(line, "no line number in: " .. err)
        assert.matches("^" .. c[3] .. "$", line, nil, false, err)
        assert.equal(c[4], msg:sub(1, #c[4]), err)
      end)
    end

    it("a YAML syntax error names file:line:column", function()
      local model, err, path = unit.load("http:\n  port: [1, 2\nx: 1\n")
      assert.is_nil(model)
      assert.matches("^" .. path:gsub("%p", "%%%0") .. ":%d+:%d+: ", err)
    end)
  end)

  describe("warnings", function()
    it("an unknown top-level key is a warning naming file:line, not an error", function()
      local model, err, path = unit.load("http:\n  port: 8080\nfoo: 1\n")
      assert.is_nil(err)
      assert.equal(8080, model.http.port)
      assert.equal(1, #model.warnings)
      local want = path .. ":3: foo: "
      assert.equal(want, model.warnings[1]:sub(1, #want))
    end)

    it("an https section without certificates is an error naming the line", function()
      local model, err, path = unit.load("https:\n  port: 8443\n")
      assert.is_nil(model)
      assert.equal(path .. ":2: https.tls: expected a mapping of host patterns (or default) " ..
        "to { key, cert }", err)
    end)

    it("https.tls entries keep their config order and resolve paths beside the config", function()
      local model, err, path = unit.load(table.concat({
        "https:",
        "  port: 8443",
        "  tls:",
        "    'b.example.com': { key: b.key, cert: b.pem }",
        "    '*.example.com': { key: /abs/w.key, cert: /abs/w.pem, ca: [ca.pem] }",
        "    default: { key: d.key, cert: d.pem }",
        "  options: { requestCert: true }",
      }, "\n") .. "\n")
      assert.is_nil(err)
      local dir = path:match("^(.*)/")
      local certs = model.https.certs
      assert.same({ "b.example.com", "*.example.com", "default" },
        { certs[1].pattern, certs[2].pattern, certs[3].pattern })
      assert.equal(dir .. "/b.key", certs[1].key)
      assert.equal("/abs/w.pem", certs[2].cert)
      assert.same({ dir .. "/ca.pem" }, certs[2].ca)
      assert.is_true(model.https.request_cert)
      assert.is_true(model.https.reject_unauthorized) -- Node's default when requesting
    end)
  end)

  -- { name, methods YAML, expected list (nil: every method) }
  local METHODS = {
    { "comma-separated string", '"GET, POST"', { "GET", "POST" } },
    { "no spaces", "GET,POST,PUT", { "GET", "POST", "PUT" } },
    { "empty items dropped", '"GET,, POST ,"', { "GET", "POST" } },
    { "list", "[GET, POST]", { "GET", "POST" } },
    { "list with spaces", "[' GET ', 'POST']", { "GET", "POST" } },
    { "single method", "DELETE", { "DELETE" } },
    { "star", "'*'", nil },
    { "lower case kept (the router upper-cases)", "get", { "get" } },
  }

  describe("methods", function()
    for _, c in ipairs(METHODS) do
      it(c[1], function()
        local model = assert(unit.load("apiEndpoints:\n  api:\n    methods: " .. c[2] .. "\n"))
        assert.same(c[3], model.endpoints[1].methods)
      end)
    end
  end)

  describe("shapes", function()
    it("accepts the singular aliases pipeline, apiEndpoint and policy", function()
      local model = assert(unit.load(dedent [[
        apiEndpoints:
          api: {paths: /a}
        policies: [terminate]
        pipeline:
          p:
            apiEndpoint: api
            policy:
              - terminate:
                  - action: {statusCode: 418}
      ]]))
      assert.equal(1, #model.pipelines)
      local p = model.pipelines[1]
      assert.equal("p", p.name)
      assert.same({ "api" }, p.endpoints)
      assert.same({ "terminate" }, names(p.policies))
      assert.same({ statusCode = 418 }, p.policies[1].steps[1].action)
    end)

    it("a policy entry with null steps is one step with an empty action", function()
      local model = assert(unit.load(dedent [[
        policies: [proxy, terminate]
        pipelines:
          p:
            apiEndpoints: [api]
            policies:
              - terminate:
              - proxy: []
      ]]))
      for i = 1, 2 do
        local steps = model.pipelines[1].policies[i].steps
        assert.equal(1, #steps)
        local action = steps[1].action
        assert.is_true(action == nil or (type(action) == "table" and next(action) == nil))
        assert.is_nil(steps[1].condition)
      end
    end)

    it("a pipeline with no policies has none", function()
      local model = assert(unit.load("pipelines:\n  p:\n    apiEndpoints: [a]\n"))
      assert.equal(0, #model.pipelines[1].policies)
    end)

    it("apiEndpoints whose value is a list of configs gives one endpoint per config", function()
      local model = assert(unit.load(dedent [[
        apiEndpoints:
          api:
            - host: a.com
              paths: /a
            - host: b.com
              paths: [/b, /c]
          other:
            host: c.com
      ]]))
      assert.same({ "api", "api", "other" }, names(model.endpoints))
      assert.same({ "a.com", "b.com", "c.com" },
        { model.endpoints[1].host, model.endpoints[2].host, model.endpoints[3].host })
      assert.same({ "/b", "/c" }, model.endpoints[2].paths)
      assert.equal(2, #model.endpoint_by_name.api)
      assert.equal(model.endpoints[2], model.endpoint_by_name.api[2])
    end)

    it("an apiEndpoint whose value is an empty list defines no route (Express Gateway)", function()
      -- EG: Array.isArray([]) -> [].forEach: nothing is mounted
      local model = assert(unit.load("apiEndpoints:\n  api: []\n  other:\n    host: x.com\n"))
      assert.same({ "other" }, names(model.endpoints))
    end)

    it("path is an alias of paths; a single path is a list of one", function()
      local model = assert(unit.load("apiEndpoints:\n  a:\n    path: /x\n  b:\n    paths: /y\n"))
      assert.same({ "/x" }, model.endpoints[1].paths)
      assert.same({ "/y" }, model.endpoints[2].paths)
    end)

    it("coerces a quoted port, and a null port means any free port", function()
      assert.equal(8080, assert(unit.load("http:\n  port: '8080'\n")).http.port)
      assert.equal(0, assert(unit.load("http:\n  port:\n")).http.port)
      assert.equal("127.0.0.1",
        assert(unit.load("http:\n  port: 1\n  hostname: 127.0.0.1\n")).http.hostname)
    end)

    it("url wins over urls, as in Express Gateway", function()
      local model = assert(unit.load(
        "serviceEndpoints:\n  s:\n    url: http://one\n    urls: [http://two, http://three]\n"))
      assert.equal(1, #model.services.s.urls)
      assert.equal("one", model.services.s.urls[1].host)
    end)

    it("an empty file is an empty config", function()
      local model = assert(unit.load(""))
      assert.equal(0, #model.endpoints)
      assert.equal(0, #model.pipelines)
      assert.is_nil(model.http)
    end)
  end)

  describe("declaration order", function()
    it("endpoints and pipelines keep YAML order", function()
      local model = assert(unit.load(dedent [[
        apiEndpoints:
          zeta: {paths: /z}
          alpha: {paths: /a}
          mid: {paths: /m}
          beta: {paths: /b}
          "10": {paths: /10}
          "2": {paths: /2}
        pipelines:
          second: {apiEndpoints: [zeta]}
          first: {apiEndpoints: [alpha]}
      ]]))
      assert.same({ "zeta", "alpha", "mid", "beta", "10", "2" }, names(model.endpoints))
      assert.same({ "second", "first" }, names(model.pipelines))
    end)

    it("JSON input with several keys on one line keeps its order", function()
      local json = '{"http": {"port": 8080}, "apiEndpoints": {"z": {"host": "z.com"}, ' ..
        '"a": {"host": "a.com"}, "m": {"host":"m.com", "paths":["/m"]}}, ' ..
        '"serviceEndpoints": {"s": {"url": "http://s:1"}}, "policies": ["proxy"], ' ..
        '"pipelines": {"q": {"apiEndpoints": ["m"], "policies": [{"proxy": ' ..
        '[{"action": {"serviceEndpoint": "s"}}]}]}, "p": {"apiEndpoints": ["z", "a"]}}}'
      local model = assert(unit.load(json, { name = "gateway.config.json" }))
      assert.same({ "z", "a", "m" }, names(model.endpoints))
      assert.same({ "/m" }, model.endpoints[3].paths)
      assert.same({ "q", "p" }, names(model.pipelines))
      assert.equal(8080, model.http.port)
    end)

    it("a JSON error names the file and line", function()
      local json = '{"apiEndpoints": {\n"a": {"host": "a.com", "bogus": 1}}}'
      local model, err, path = unit.load(json, { name = "gateway.config.json" })
      assert.is_nil(model)
      local want = path .. ":2: apiEndpoints.a.bogus: unknown key"
      assert.equal(want, err:sub(1, #want))
    end)
  end)

  -- { input, scheme, host, port, path } or { input, nil, error fragment }
  local URLS = {
    { "http://svc:3000", "http", "svc", 3000, "/" },
    { "http://svc", "http", "svc", 80, "/" },
    { "https://svc", "https", "svc", 443, "/" },
    { "HTTP://SVC.Example:8080/Base/", "http", "svc.example", 8080, "/Base/" },
    { "http://svc/v1?x=1#frag", "http", "svc", 80, "/v1?x=1" },
    { "http://[::1]:9000/x", "http", "[::1]", 9000, "/x" },
    { "http://10.0.0.1:1/", "http", "10.0.0.1", 1, "/" },
    { "ftp://svc", nil, "unsupported scheme" },
    { "svc:3000", nil, "not an absolute URL" },
    { "/relative", nil, "not an absolute URL" },
    { "http://:80/", nil, "no host" },
    { "http://svc:0", nil, "invalid port" },
    { "http://svc:65536", nil, "invalid port" },
    { "http://svc:12ab", nil, "invalid port" },
  }

  describe("parse_url", function()
    for _, c in ipairs(URLS) do
      it(c[1], function()
        local u, err = config.parse_url(c[1])
        if c[2] then
          assert.is_nil(err)
          assert.same({ url = c[1], scheme = c[2], host = c[3], port = c[4], path = c[5] }, u)
        else
          assert.is_nil(u)
          assert.matches(c[3], err, 1, true)
        end
      end)
    end
  end)
end)
