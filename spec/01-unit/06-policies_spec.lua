-- luacheck: std +busted
-- luacheck: max line length 140
-- Stock policies (proxy, terminate) and user policies, loaded the way the
-- gateway loads them: config.load, then generation.build.

local unit = require "spec.support.unit"
local policies = require "tollgate.policies"

local dedent = unit.dedent

-- Pipeline steps written indented in the spec, indented 6 for pipeline_config.
local function steps(text)
  return (dedent(text):gsub("[^\n]+", "      %0"))
end

local function starts(prefix, s)
  assert.is_string(s)
  assert.equal(prefix, s:sub(1, #prefix), s)
end

-- A config with one pipeline "p" serving endpoint "api" (paths given),
-- the policies declared, and the steps given as YAML (indented 6).
local function pipeline_config(t)
  return dedent([[
    http:
      port: 0
    apiEndpoints:
      api:
        paths: ]] .. (t.paths or "'*'") .. [[

    serviceEndpoints:
      backend:
        url: http://127.0.0.1:3000/v1
      pair:
        urls: [http://127.0.0.1:3001/one, http://127.0.0.1:3002/two]
      root:
        url: http://127.0.0.1:3003
    policies: ]] .. (t.declare or "[proxy, terminate]") .. [[

    pipelines:
      p:
        apiEndpoints: [api]
        policies:
]]) .. t.steps
end

local function first_step(gen)
  return gen.pipelines[1].steps[1]
end

-- A fake request for access(): what proxy reads and what it calls.
local function fake_req(t)
  local r = { path = t.path, query = t.query, params = t.params, headers = {} }
  if t.url then r.url = t.url end
  function r.set_header(self, k, val) self.headers[k] = val end
  function r.proxy(self, peer, target, flags, timeout)
    self.proxied = { peer = peer, target = target, flags = flags, timeout = timeout }
    return 0
  end
  return setmetatable(r, { __index = function(self, k)
    if k == "url" then
      return rawget(self, "path") .. (rawget(self, "query") and ("?" .. rawget(self, "query")) or "")
    end
  end })
end

describe("policies", function()
  teardown(unit.cleanup)

  describe("terminate", function()
    it("defaults to 400 Terminated, text/html", function()
      local gen, err = unit.build(pipeline_config { steps = "      - terminate:\n" })
      assert.is_nil(err)
      local st = first_step(gen)
      assert.equal("terminate", st.name)
      local status, body, headers = st.access(st.inst, {})
      assert.equal(400, status)
      assert.equal("Terminated", body)
      assert.same({ ["Content-Type"] = "text/html; charset=utf-8" }, headers)
    end)

    it("takes statusCode (coerced) and message", function()
      local gen = assert(unit.build(pipeline_config { steps = steps [[
              - terminate:
                  - action:
                      statusCode: "403"
                      message: Forbidden here
      ]] }))
      local st = first_step(gen)
      local status, body = st.access(st.inst, {})
      assert.equal(403, status)
      assert.equal("Forbidden here", body)
    end)

    it("an out-of-range statusCode names file:line and key path", function()
      local gen, err, path = unit.build(pipeline_config { steps = steps [[
              - terminate:
                  - action:
                      statusCode: 99
      ]] })
      assert.is_nil(gen)
      starts(path .. ":20: pipelines.p.policies[1].terminate[1].action.statusCode: must be at least 100",
        err)
    end)
  end)

  describe("proxy", function()
    it("builds with Express Gateway's defaults", function()
      local gen = assert(unit.build(pipeline_config { steps = steps [[
              - proxy:
                  - action:
                      serviceEndpoint: backend
      ]] }))
      local inst = first_step(gen).inst
      assert.equal(1, inst.n)
      assert.equal("/v1", inst.urls[1].path)
      assert.is_false(inst.strip)
      assert.is_false(inst.ignore)
      assert.equal(1 + 4, inst.flags) -- changeOrigin on, xfwd off, ws on
      assert.equal(0, inst.timeout)
    end)

    it("proxyTimeout is in ms, xfwd and changeOrigin set the flags", function()
      local gen = assert(unit.build(pipeline_config { steps = steps [[
              - proxy:
                  - action:
                      serviceEndpoint: backend
                      proxyTimeout: 2500
                      changeOrigin: false
                      xfwd: true
      ]] }))
      local inst = first_step(gen).inst
      assert.equal(2.5, inst.timeout)
      assert.equal(2 + 4, inst.flags) -- xfwd, ws
    end)

    -- { case, action YAML (indented 10), line, message after "file:line: " }
    local ERRORS = {
      { "unknown option", "serviceEndpoint: backend\n          stripPaths: true\n", 21,
        "pipelines.p.policies[1].proxy[1].action.stripPaths: unknown option (known: " },
      { "followRedirects: true refused", "serviceEndpoint: backend\n          followRedirects: true\n", nil,
        "pipelines.p.policies[1].proxy[1].action: followRedirects: not supported by tollgate" },
      { "missing service endpoint (Express Gateway's message)", "serviceEndpoint: nope\n", nil,
        "pipelines.p.policies[1].proxy[1].action.serviceEndpoint: service endpoint nope " ..
          "(referenced in proxy policy configuration) does not exist" },
      { "changeOrigin not a boolean", "serviceEndpoint: backend\n          changeOrigin: maybe\n", 21,
        'pipelines.p.policies[1].proxy[1].action.changeOrigin: expected boolean, got "maybe"' },
      { "strategy not round-robin", "serviceEndpoint: pair\n          strategy: random\n", 21,
        'pipelines.p.policies[1].proxy[1].action.strategy: must be one of round-robin, got "random"' },
      { "unknown key in the deprecated proxyOptions",
        "serviceEndpoint: backend\n          proxyOptions:\n            bogus: 1\n", nil,
        "pipelines.p.policies[1].proxy[1].action: proxyOptions.bogus: unknown proxy option" },
    }

    for _, c in ipairs(ERRORS) do
      it("error: " .. c[1], function()
        local gen, err, path = unit.build(pipeline_config {
          steps = "      - proxy:\n          - action:\n              " ..
            c[2]:gsub("\n          ", "\n              "),
        })
        assert.is_nil(gen)
        local line, msg = err:sub(#path + 2):match("^(%d+): (.*)$")
        starts(path .. ":", err)
        assert.is_truthy(line, err)
        if c[3] then assert.equal(c[3], tonumber(line), err) end
        starts(c[4], msg)
      end)
    end

    it("followRedirects: false is accepted", function()
      assert(unit.build(pipeline_config { steps = steps [[
              - proxy:
                  - action: {serviceEndpoint: backend, followRedirects: false}
      ]] }))
    end)

    it("without serviceEndpoint answers 502 Bad Gateway as text/plain", function()
      local gen = assert(unit.build(pipeline_config { steps = "      - proxy:\n" }))
      local st = first_step(gen)
      local status, body, headers = st.access(st.inst, fake_req { path = "/x" })
      assert.equal(502, status)
      assert.equal("Bad Gateway", body)
      assert.same({ ["Content-Type"] = "text/plain; charset=utf-8" }, headers)
    end)

    it("proxyOptions of the service endpoint are merged", function()
      local cfg = pipeline_config { steps = steps [[
              - proxy:
                  - action: {serviceEndpoint: backend}
      ]] }:gsub("url: http://127.0.0.1:3000/v1\n",
        "url: http://127.0.0.1:3000/v1\n    proxyOptions: {xfwd: true, proxyTimeout: 1000}\n")
      local gen = assert(unit.build(cfg))
      local inst = first_step(gen).inst
      assert.equal(3 + 4, inst.flags) -- changeOrigin, xfwd, ws
      assert.equal(1, inst.timeout)
    end)

    it("auth becomes a basic Authorization header upstream", function()
      local gen = assert(unit.build(pipeline_config { steps = steps [[
              - proxy:
                  - action:
                      serviceEndpoint: backend
                      auth: "user:pass"
                      headers: {X-Extra: "1"}
      ]] }))
      local st = first_step(gen)
      local r = fake_req { path = "/x" }
      assert.is_nil(st.access(st.inst, r))
      assert.equal("Basic dXNlcjpwYXNz", r.headers.Authorization)
      assert.equal("1", r.headers["X-Extra"])
    end)

    -- { auth, base64 }
    local B64 = {
      { "a:b", "YTpi" },
      { "ab:c", "YWI6Yw==" },
      { "ab:cd", "YWI6Y2Q=" },
      { "Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ==" },
    }
    for _, c in ipairs(B64) do
      it("auth " .. c[1] .. " is sent as Basic " .. c[2], function()
        local gen = assert(unit.build(pipeline_config {
          steps = "      - proxy:\n          - action: {serviceEndpoint: backend, auth: '" .. c[1] .. "'}\n",
        }))
        local st = first_step(gen)
        local r = fake_req { path = "/x" }
        st.access(st.inst, r)
        assert.equal("Basic " .. c[2], r.headers.Authorization)
      end)
    end

    it("round-robin over urls, per step", function()
      local gen = assert(unit.build(pipeline_config { steps = steps [[
              - proxy:
                  - action: {serviceEndpoint: pair}
      ]] }))
      local st = first_step(gen)
      local seen = {}
      for i = 1, 3 do
        local r = fake_req { path = "/x" }
        st.access(st.inst, r)
        seen[i] = r.proxied.target
      end
      assert.same({ "/one/x", "/two/x", "/one/x" }, seen)
    end)
  end)

  -- http-proxy 1.18 common.urlJoin(targetPath, req.url):
  -- { service path, request url, upstream path }
  local JOIN = {
    { "/", "/api", "/api" },
    { "/v1", "/api/users?x=1", "/v1/api/users?x=1" },
    { "/v1/", "/api", "/v1/api" },
    { "/v1/", "/api/", "/v1/api/" },
    { "/", "/", "/" },
    { "/v1", "/", "/v1/" },
    { "/v1", "", "/v1" },
    { "/v1", "?x=1", "/v1?x=1" },
    { "/", "?x=1", "/?x=1" },
    { "/v1", "/a//b", "/v1/a/b" },
    { "/v1//", "//a", "/v1/a" },
    { "/v1", "/a?u=http://x//y", "/v1/a?u=http://x//y" },
    { "/v1", "/a?x=1?y=2", "/v1/a?x=1?y=2" },
    { "/v1", "/a?", "/v1/a?" },
    { "/v1", "users/1?x=1", "/v1/users/1?x=1" },
    { "/base?k=v", "/api", "/base?k=v/api" },
    { "/", "/fetch/http://example.com/x", "/fetch/http://example.com/x" },
  }

  describe("proxy join (http-proxy urlJoin)", function()
    local join
    setup(function()
      local mod = assert(policies.load_file(unit.root .. "/policies/proxy.lua", "proxy"))
      join = mod.join
    end)
    for _, c in ipairs(JOIN) do
      it(("%q + %q"):format(c[1], c[2]), function()
        assert.equal(c[3], join(c[1], c[2]))
      end)
    end
  end)

  describe("proxy upstream path", function()
    -- { case, endpoint paths, action (YAML flow), request path, query, upstream target (nil: as sent) }
    local TARGETS = {
      { "default: service path + url", "'/api/*'", "{serviceEndpoint: backend}", "/api/users", "x=1",
        "/v1/api/users?x=1" },
      { "stripPath with /api/*", "'/api/*'", "{serviceEndpoint: backend, stripPath: true}", "/api/users/1", "x=1",
        "/v1/users/1?x=1" },
      { "stripPath keeps the rest percent-encoded (EG decodes it)", "'/api/*'", "{serviceEndpoint: backend, stripPath: true}",
        "/api/a%2Fb", nil, "/v1/a%2Fb" },
      { "stripPath with /api: only the service path", "/api", "{serviceEndpoint: backend, stripPath: true}",
        "/api", "x=1", "/v1?x=1" },
      { "stripPath with /api/:id: only the service path (EG)", "'/api/:id'",
        "{serviceEndpoint: backend, stripPath: true}", "/api/42", "x=1", "/v1?x=1" },
      { "stripPath with * strips nothing", "'*'", "{serviceEndpoint: backend, stripPath: true}",
        "/a/b", nil, "/v1/a/b" },
      { "ignorePath: the service path only", "'*'", "{serviceEndpoint: backend, ignorePath: true}",
        "/a/b", "q=1", "/v1" },
      { "prependPath false drops the service path", "'*'", "{serviceEndpoint: backend, prependPath: false}",
        "/a//b", "q=1", "/a/b?q=1" },
      { "root service, clean path: sent as is", "'*'", "{serviceEndpoint: root}", "/a/b", "q=1", nil },
      { "root service, // in the path collapsed", "'*'", "{serviceEndpoint: root}", "/a//b", nil, "/a/b" },
    }
    for _, c in ipairs(TARGETS) do
      it(c[1], function()
        local gen = assert(unit.build(pipeline_config {
          paths = c[2], steps = "      - proxy:\n          - action: " .. c[3] .. "\n" }))
        local route, params = gen.router:match("h", c[4], "GET")
        assert.is_table(route)
        local st = first_step(gen)
        local r = fake_req { path = c[4], query = c[5], params = params }
        assert.is_nil(st.access(st.inst, r))
        assert.equal(c[6], r.proxied.target)
      end)
    end
  end)

  describe("user policies", function()
    local HELLO = [[
      return {
        name = "hello",
        schema = { properties = { greeting = { type = "string", default = "hi" } } },
        new = function(conf, env) return { greeting = conf.greeting, dir = env.dir } end,
        access = function(self) return 200, self.greeting end,
      }
    ]]

    it("are found in <configdir>/policies/NAME.lua", function()
      local gen, err, path = unit.build(pipeline_config {
        declare = "[hello]", steps = "      - hello:\n          - action: {greeting: hello there}\n      - hello:\n",
      }, { files = { ["policies/hello.lua"] = HELLO } })
      assert.is_nil(err)
      local list = gen.pipelines[1].steps
      assert.equal(2, #list)
      assert.equal("hello there", select(2, list[1].access(list[1].inst)))
      assert.equal("hi", select(2, list[2].access(list[2].inst)))
      assert.equal(path:match("^(.*)/"), list[1].inst.dir)
    end)

    it("a user policy named like a stock one wins", function()
      local gen = assert(unit.build(pipeline_config { declare = "[terminate]", steps = "      - terminate:\n" },
        { files = { ["policies/terminate.lua"] = "return { access = function() return 299, 'mine' end }" } }))
      local st = first_step(gen)
      assert.equal(299, (st.access(st.inst)))
    end)

    it("are found in tollgate.policyPaths", function()
      local cfg = pipeline_config { declare = "[hello]", steps = "      - hello:\n" } ..
        "tollgate:\n  policyPaths: [lib/pol]\n"
      local gen, err = unit.build(cfg, { files = { ["lib/pol/hello.lua"] = HELLO } })
      assert.is_nil(err)
      assert.equal("hi", select(2, first_step(gen).access(first_step(gen).inst)))
    end)

    it("a syntax error names the policy file and line", function()
      local gen, err, path = unit.build(pipeline_config { declare = "[broken]", steps = "      - broken:\n" },
        { files = { ["policies/broken.lua"] = "return {\n  access = function()\n    return 200,,\n  end,\n}\n" } })
      assert.is_nil(gen)
      local file = path:match("^(.*)/") .. "/policies/broken.lua"
      assert.matches(file:gsub("%p", "%%%0") .. ":3:", err)
      -- and the config line that declares it
      starts(path .. ":13: policies: broken: ", err)
    end)

    it("an error while loading names the policy file and line", function()
      local _, err, path = unit.build(pipeline_config { declare = "[boom]", steps = "      - boom:\n" },
        { files = { ["policies/boom.lua"] = "local x = 1\nerror('cannot start')\n" } })
      local file = path:match("^(.*)/") .. "/policies/boom.lua"
      assert.matches(file:gsub("%p", "%%%0") .. ":2: cannot start", err)
    end)

    it("a module that is not a policy is refused", function()
      local _, err = unit.build(pipeline_config { declare = "[odd]", steps = "      - odd:\n" },
        { files = { ["policies/odd.lua"] = "return { name = 'odd' }" } })
      assert.matches("policies/odd.lua: a policy needs at least one of access, response, log", err, 1, true)
    end)

    it("an error in new() names the step", function()
      local _, err, path = unit.build(pipeline_config { declare = "[bad]", steps = "      - bad:\n" },
        { files = { ["policies/bad.lua"] = "return { new = function() return nil, 'no way' end, " ..
          "access = function() end }" } })
      starts(path .. ":", err)
      assert.matches("pipelines.p.policies[1].bad[1].action: no way", err, 1, true)
    end)

    it("an unknown policy names the declaration", function()
      local gen, err, path = unit.build(pipeline_config { declare = "[proxy, nope]", steps = "      - proxy:\n" })
      assert.is_nil(gen)
      starts(path .. ":13: policies: unknown policy \"nope\"", err)
    end)
  end)

  describe("generation", function()
    it("binds endpoints to their pipeline, and conditions compile", function()
      local gen = assert(unit.build(pipeline_config { steps = steps [[
              - terminate:
                  - action: {statusCode: 401}
                    condition: {name: pathExact, path: /secret}
                  - action: {statusCode: 200}
      ]] }))
      local route = gen.router:match("h", "/any", "GET")
      assert.equal("p", route.endpoint.pipeline.name)
      local list = gen.pipelines[1].steps
      assert.equal(2, #list)
      assert.is_true(list[1].cond { url = "/secret" })
      assert.is_false(list[1].cond { url = "/public" })
      assert.is_nil(list[2].cond)
    end)

    it("a condition error names file:line and the step's key path", function()
      local _, err, path = unit.build(pipeline_config { steps = steps [[
              - terminate:
                  - action: {}
                    condition:
                      name: pathMatch
      ]] })
      starts(path .. ":21: pipelines.p.policies[1].terminate[1].condition.pattern: is required", err)
    end)

    it("a nested condition error names the nested key path once", function()
      local _, err, path = unit.build(pipeline_config { steps = steps [[
              - terminate:
                  - condition:
                      name: not
                      condition:
                        name: bogus
      ]] })
      starts(path .. ":22: pipelines.p.policies[1].terminate[1].condition.condition.name: unknown condition",
        err)
    end)

    -- Express Gateway accepts it silently; tollgate refuses it (README, "Coming from
    -- Express Gateway"): a misspelt endpoint name must not leave a route unserved.
    it("a pipeline naming an apiEndpoint that does not exist is an error naming it", function()
      local cfg = pipeline_config { steps = "      - terminate:\n" }:gsub("apiEndpoints: %[api%]",
        "apiEndpoints: [api, ghost]")
      local gen, err = unit.build(cfg)
      assert.is_nil(gen)
      assert.matches('gateway%.config%.yml:%d+: pipelines%.p%.apiEndpoints%[2%]: no apiEndpoint named "ghost"', err)
    end)

    it("an endpoint in two pipelines is served by the last, with a warning", function()
      local cfg = pipeline_config { steps = "      - terminate:\n" } ..
        "  q:\n    apiEndpoints: [api]\n    policies:\n      - proxy:\n"
      local gen = assert(unit.build(cfg))
      assert.equal("q", gen.router:match("h", "/x", "GET").endpoint.pipeline.name)
      assert.equal(1, #gen.warnings)
      assert.matches("apiEndpoints.api is used by pipelines p and q", gen.warnings[1], 1, true)
    end)

    it("settings defaults from an empty tollgate section", function()
      local gen = assert(unit.build(pipeline_config { steps = "      - terminate:\n" }))
      local s = gen.settings
      assert.equal(0, s.workers)
      assert.equal("stdout", s.access_log)
      assert.equal(60, s.head_timeout)
      assert.equal(32768, s.max_head_size)
      assert.same({ { host = "::", port = 0 } }, s.listen)
    end)

    it("a bad tollgate setting names file:line and key path", function()
      local cfg = pipeline_config { steps = "      - terminate:\n" } ..
        "tollgate:\n  client:\n    maxHeadSize: 10\n"
      local _, err, path = unit.build(cfg)
      starts(path .. ":21: tollgate.client.maxHeadSize: must be at least 1024", err)
    end)
  end)
end)
