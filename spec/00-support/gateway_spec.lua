-- luacheck: std +busted
-- Specs for tollgate.testing.server (spec/support/gateway.lua), run against a stand-in gateway
-- (spec/00-support/fixtures/fake-tollgate.sh: nginx behind the gateway's
-- command line and log line) because they test the helper, not Tollgate.

local gateway = require "spec.support.gateway"
local mock = require "spec.support.mock"
local process = require "spec.support.process"
local http = require "spec.support.http"
local cjson = require "cjson"
local socket = require "socket"

local now = socket.gettime

local function have_nginx()
  local ok = os.execute("command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx")
  return ok == true or ok == 0
end

-- nginx comes with `make deps`; without it these specs fail rather than skip.
assert(have_nginx(), "the gateway helper specs need nginx for the stand-in gateway (make deps)")

local FAKE = process.repo_root() .. "/spec/00-support/fixtures/fake-tollgate.sh"

describe("gateway helper (with a stand-in gateway)", function()
  local saved_bin, saved_path

  setup(function()
    saved_bin = gateway.bin
    gateway.bin = { "sh", FAKE }
    saved_path = os.getenv("PATH")
  end)

  teardown(function()
    gateway.bin = saved_bin
    gateway.cleanup_all()
    mock.stop_all()
  end)

  local function env()
    -- nginx lives in /usr/sbin, which is not always in PATH
    return { PATH = (saved_path or "/usr/bin:/bin") .. ":/usr/sbin:/sbin" }
  end

  it("starts, proxies to the mocks named in vars, and stops with the exit code", function()
    local a = mock.start{ name = "a" }
    local b = mock.start{ name = "b" }
    finally(function() a:stop(); b:stop() end)
    local g = gateway.start{
      config = [[
http:
  port: ${GATEWAY_PORT}
upstreams:
  - 127.0.0.1:${A_PORT}
  - 127.0.0.1:${B_PORT}
]],
      vars = { A_PORT = a.port, B_PORT = b.port },
      env = env(),
      workers = 2,
    }
    finally(function() g:cleanup() end)

    assert.is_number(g.port)
    assert.is_number(g.pid)
    assert.is_true(g:alive())
    assert.equal("http://127.0.0.1:" .. g.port .. "/x", g:url("/x"))
    local cfg = process.read_file(g.dir .. "/gateway.config.yml")
    assert.matches("127.0.0.1:" .. a.port, cfg, 1, true)
    assert.matches("port: 0", cfg, 1, true)

    -- round-robin between the upstreams is visible through X-Upstream
    local seen = {}
    for _ = 1, 6 do
      local res = assert(g:get("/echo"))
      assert.equal(200, res.status)
      seen[res.headers["x-upstream"]] = true
    end
    assert.same({ a = true, b = true }, seen)

    -- a raw connection through the gateway
    local conn = assert(g:connect())
    finally(function() conn:close() end)
    assert(conn:request{ method = "POST", path = "/upload", body = string.rep("z", 100000) })
    assert.equal(100000, cjson.decode(assert(conn:read_response()).body).received)

    assert.matches("listening on http://127%.0%.0%.1:" .. g.port, g:logs())
    assert.equal(tostring(g.port), g:wait_log("listening on http://127%.0%.0%.1:(%d+)"))

    local code, how = g:stop()
    assert.equal(0, code)
    assert.equal("exited", how)
    assert.is_false(g:alive())
    assert.equal(0, g:stop()) -- idempotent
    assert.matches("exiting with status 0", g:stderr())
  end)

  it("writes extra files beside the config, with vars filled in", function()
    local g = gateway.start{
      config = "http:\n  port: 0\n",
      files = { ["policy.lua"] = "return ${N}", ["sub/dir/x.txt"] = "${KEEP_ME}" },
      vars = { N = 42 },
      env = env(),
    }
    finally(function() g:cleanup() end)
    assert.equal("return 42", process.read_file(g.dir .. "/policy.lua"))
    -- placeholders not in vars are left for the gateway's own substitution
    assert.equal("${KEEP_ME}", process.read_file(g.dir .. "/sub/dir/x.txt"))
    local res = assert(http.get(g.port, "/"))
    assert.equal("fake-tollgate", res.body)
  end)

  it("cleanup stops a running gateway and removes its directory", function()
    local g = gateway.start{ config = "http:\n", env = env() }
    local pid, dir = g.pid, g.dir
    g:cleanup()
    assert.is_false(process.alive(pid))
    assert.is_nil(io.open(dir .. "/gateway.config.yml"))
    g:cleanup() -- idempotent
  end)

  it("start fails fast with the gateway's output when it exits", function()
    local t0 = now()
    local ok, err = pcall(gateway.start, {
      config = "http:\nfake_fail_start: true\n", env = env(), timeout = 10,
    })
    assert.is_false(ok)
    assert.matches("gateway did not start", err)
    assert.matches("exited with status 1", err)
    assert.matches("cannot start %(fake_fail_start%)", err)
    assert.is_true(now() - t0 < 5)
  end)

  it("start fails with a clear error when the binary is missing", function()
    gateway.bin = "/nonexistent/tollgate"
    finally(function() gateway.bin = { "sh", FAKE } end)
    local ok, err = pcall(gateway.start, { config = "http:\n" })
    assert.is_false(ok)
    assert.matches("cannot start gateway: exec /nonexistent/tollgate failed", err)
  end)

  it("stop raises and SIGKILLs when the gateway ignores SIGTERM", function()
    local g = gateway.start{ config = "http:\nfake_ignore_term: true\n", env = env() }
    finally(function() g:cleanup() end)
    local t0 = now()
    local ok, err = pcall(g.stop, g, { timeout = 0.3 })
    assert.is_false(ok)
    assert.matches("did not exit within 0.3s after SIGTERM", err)
    assert.matches("listening on", err)
    assert.is_true(now() - t0 < 5)
    assert.is_false(g:alive())
    -- nginx (the stand-in's child, same process group) is gone too
    process.wait_for(function() return not process.port_open(g.port) end, 5, "port to close")
  end)

  it("check runs -t and returns the exit code and output", function()
    local code, out = gateway.check("http:\n  port: 0\n", { env = env() })
    assert.equal(0, code)
    assert.matches("is ok", out)
    code, out = gateway.check("invalid: [\n", { env = env() })
    assert.equal(1, code)
    assert.matches("invalid configuration", out)
  end)

  it("substitute replaces only the given names", function()
    assert.equal("a=1 b=${B} c=x", gateway.substitute("a=${A} b=${B} c=${C}", { A = 1, C = "x" }))
  end)
end)
