-- luacheck: std +busted
-- What starts a reload: the config file changing (written in place, or
-- replaced by a rename as editors save), system.config.yml beside it, a
-- user's Lua policy, a key file the jwt policy reads; a burst of writes
-- gives one reload; SIGHUP; `tollgate reload`; tollgate.watch: false.
-- Every reload is observed by the workers' "configuration reloaded
-- (generation N)" lines and by what a request gets afterwards.

local H = require "spec.04-reload.helpers"
local gateway = require "spec.support.gateway"
local jwt = require "spec.support.jwt"
local process = require "spec.support.process"

describe("reload triggers", function()
  teardown(function() gateway.cleanup_all() end)

  local function start(opts)
    local r = H.start(opts)
    finally(function() r:cleanup() end)
    return r
  end

  it("an edit of the config file written in place", function()
    local r = start{ config = H.config{ steps = { H.terminate("one") } } }
    assert.equal("one", r:get("/").body)
    r:write(H.config{ steps = { H.terminate("two") } })
    r:wait_reload()
    assert.equal("two", r:get("/").body)
    assert.equal(1, r:count("master %d+: a configuration file changed: checking"))
  end)

  it("the config file replaced by a rename, as editors save", function()
    local r = start{ config = H.config{ steps = { H.terminate("one") } } }
    r:replace(H.config{ steps = { H.terminate("renamed") } })
    r:wait_reload()
    assert.equal("renamed", r:get("/").body)
    -- and again: the watch survives the replaced file
    r:replace(H.config{ steps = { H.terminate("renamed-again") } })
    r:wait_reload()
    assert.equal("renamed-again", r:get("/").body)
  end)

  it("an edit of system.config.yml beside it", function()
    -- the policy reads value.txt when it is built (that file is not
    -- watched): so the header shows that a reload did happen
    local r = start{
      config = H.config{ steps = { "      - hdr: { action: { file: value.txt } }",
                                   H.terminate("ok") } },
      files = { ["policies/hdr.lua"] = H.hdr_policy(), ["value.txt"] = "v1\n",
                ["system.config.yml"] = "crypto:\n  cipherKey: one\n" },
    }
    assert.equal("v1", r:get("/").headers["x-value"])
    r:write_file("value.txt", "v2\n")
    r:write_file("system.config.yml", "crypto:\n  cipherKey: two\n")
    r:wait_reload()
    assert.equal("v2", r:get("/").headers["x-value"])
  end)

  it("creating system.config.yml where there was none", function()
    local r = start{
      config = H.config{ steps = { "      - hdr: { action: { file: value.txt } }",
                                   H.terminate("ok") } },
      files = { ["policies/hdr.lua"] = H.hdr_policy(), ["value.txt"] = "v1\n" },
    }
    r:write_file("value.txt", "v2\n")
    r:write_file("system.config.yml", "db:\n  redis:\n    emulate: true\n")
    r:wait_reload()
    assert.equal("v2", r:get("/").headers["x-value"])
  end)

  it("an edit of a user's Lua policy in <dir>/policies/", function()
    local r = start{
      config = H.config{ steps = { "      - hdr:", H.terminate("ok") } },
      files = { ["policies/hdr.lua"] = H.hdr_policy("module-v1") },
    }
    assert.equal("module-v1", r:get("/").headers["x-value"])
    r:write_file("policies/hdr.lua", H.hdr_policy("module-v2"))
    r:wait_reload()
    assert.equal("module-v2", r:get("/").headers["x-value"])
    -- replaced by a rename too
    r:replace_file("policies/hdr.lua", H.hdr_policy("module-v3"))
    r:wait_reload()
    assert.equal("module-v3", r:get("/").headers["x-value"])
  end)

  it("a new key file for the jwt policy (secretOrPublicKeyFile)", function()
    local r = start{
      config = H.config{ steps = {
        "      - jwt:",
        "          - action:",
        "              secretOrPublicKeyFile: keys/secret",
        "              checkCredentialExistence: false",
        H.terminate("authorized"),
      } },
      files = { ["keys/secret"] = "first-secret" },
    }
    local claims = { sub = "alice", exp = os.time() + 600 }
    local old = jwt.sign(claims, "first-secret", "HS256")
    local new = jwt.sign(claims, "second-secret", "HS256")
    assert.equal(200, r:get("/", { Authorization = "Bearer " .. old }).status)
    assert.equal(401, r:get("/", { Authorization = "Bearer " .. new }).status)
    -- key rotation: the new key file moved into place
    r:replace_file("keys/secret", "second-secret")
    r:wait_reload()
    assert.equal(200, r:get("/", { Authorization = "Bearer " .. new }).status)
    assert.equal(401, r:get("/", { Authorization = "Bearer " .. old }).status)
  end)

  it("a burst of 5 quick writes gives one reload, of the last content", function()
    local r = start{ config = H.config{ steps = { H.terminate("zero") } } }
    for i = 1, 5 do r:write(H.config{ steps = { H.terminate("burst-" .. i) } }) end
    r:wait_reload()
    assert.equal("burst-5", r:get("/").body)
    -- the debounce is 0.3 s after the last event: nothing else may follow
    r:assert_no_reload(1.0)
    for _, pid in ipairs(r.workers) do
      assert.equal(1, r:count("worker " .. pid .. ": configuration reloaded"))
    end
    assert.equal(1, r:count("master %d+: a configuration file changed: checking"))
  end)

  it("SIGHUP to the master", function()
    local r = start{
      config = H.config{ steps = { "      - hdr: { action: { file: value.txt } }",
                                   H.terminate("ok") } },
      files = { ["policies/hdr.lua"] = H.hdr_policy(), ["value.txt"] = "v1\n" },
    }
    r:write_file("value.txt", "v2\n") -- not watched: nothing happens by itself
    assert.equal("v1", r:get("/").headers["x-value"])
    assert(r.g:signal("HUP"))
    r:wait_reload()
    assert.equal("v2", r:get("/").headers["x-value"])
    assert.equal(1, r:count("master %d+: SIGHUP: checking"))
  end)

  it("SIGHUP while a worker is still loading its config does not kill it", function()
    -- a policy that takes 0.5 s to build in a worker (a big config, a busy
    -- machine) but not in the master (its pid is in the pid file)
    local dir = process.tmpdir("tollgate-pid")
    finally(function() process.rm_rf(dir) end)
    local pidfile = dir .. "/tollgate.pid"
    local slow = ([[
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
return {
  name = "slowstart",
  new = function()
    local f = io.open(%q)
    local master = f and tonumber(f:read("*l"))
    if f then f:close() end
    if master and master ~= ffi.C.getpid() then
      local t = os.clock() + 0.5
      while os.clock() < t do end
    end
    return {}
  end,
  access = function() end,
}
]]):format(pidfile)
    local g = gateway.start{
      config = H.config{ tollgate = { "pidFile: " .. pidfile }, steps = { "      - slowstart:",
                                                                        H.terminate("ok") } },
      files = { ["policies/slowstart.lua"] = slow },
      workers = 1,
    }
    finally(function() g:cleanup() end)
    assert(g:signal("HUP")) -- the worker is still building its first generation
    g:wait_log("master %d+: worker 0 checked and applied it")
    local pid = g:wait_log("worker (%d+): worker 0 ready", { timeout = 10 })
    assert.is_nil(process.match_line(g:stderr(), "killed by signal", false))
    assert.equal(0, select(2, g:stderr():gsub("worker %d+ ready", "")) - 1)
    assert.equal("ok", assert(g:get("/")).body)
    assert.is_true(process.alive(tonumber(pid)))
  end)

  it("`tollgate reload -c FILE`: exit 0 and the gateway reloads", function()
    local r = start{ config = H.config{ tollgate = { "watch: false" },
                                        steps = { H.terminate("one") } } }
    r:write(H.config{ tollgate = { "watch: false" }, steps = { H.terminate("two") } })
    local code, out = r:reload_command()
    assert.equal(0, code, out)
    assert.matches("is valid; master " .. r.g.pid .. " is reloading it", out, 1, true)
    r:wait_reload()
    assert.equal("two", r:get("/").body)
  end)

  it("`tollgate reload -c FILE` on a bad config: exit 1 with the error, the gateway goes on",
    function()
    local r = start{ config = H.config{ tollgate = { "watch: false" },
                                        steps = { H.terminate("one") } } }
    local text, marks = H.config{ tollgate = { "watch: false" },
      steps = { "      - terminate: { action: { statusCode: 200, nope: 1 } }  # @bad" } }
    r:write(text)
    local code, out = r:reload_command()
    assert.equal(1, code, out)
    assert.matches(r.g.config_path .. ":" .. marks.bad ..
      ": pipelines.main.policies[1].terminate[1].action.nope: unknown option", out, 1, true)
    assert.equal(0, r:count("SIGHUP"))
    assert.equal("one", r:get("/").body)
    assert.is_true(r.g:alive())
    -- fixed, it applies
    r:write(H.config{ tollgate = { "watch: false" }, steps = { H.terminate("fixed") } })
    code, out = r:reload_command()
    assert.equal(0, code, out)
    r:wait_reload()
    assert.equal("fixed", r:get("/").body)
  end)

  it("`tollgate reload` finds the master through tollgate.pidFile, or -p", function()
    local dir = process.tmpdir("tollgate-pid")
    finally(function() process.rm_rf(dir) end)
    local pidfile = dir .. "/tollgate.pid"
    local function cfg(msg)
      return H.config{ tollgate = { "watch: false", "pidFile: " .. pidfile },
                       steps = { H.terminate(msg) } }
    end
    local r = start{ config = cfg("one") }
    assert.equal(tostring(r.g.pid), (process.read_file(pidfile) or ""):match("^(%d+)"))
    r:write(cfg("two"))
    local code, out = r:reload_command()
    assert.equal(0, code, out)
    r:wait_reload()
    assert.equal("two", r:get("/").body)
    r:write(cfg("three"))
    code, out = r:reload_command{ "-p", pidfile }
    assert.equal(0, code, out)
    r:wait_reload()
    assert.equal("three", r:get("/").body)
  end)

  it("tollgate.watch: false turns watching off; SIGHUP still reloads", function()
    local r = start{ config = H.config{ tollgate = { "watch: false" },
                                        steps = { H.terminate("one") } } }
    r:write(H.config{ tollgate = { "watch: false" }, steps = { H.terminate("two") } })
    r:assert_no_reload(1.0)
    assert.equal("one", r:get("/").body)
    assert(r.g:signal("HUP"))
    r:wait_reload()
    assert.equal("two", r:get("/").body)
  end)

  it("watch turned off by a reload stops watching; turned on again by SIGHUP, it watches",
    function()
    local r = start{ config = H.config{ steps = { H.terminate("one") } } }
    r:write(H.config{ tollgate = { "watch: false" }, steps = { H.terminate("two") } })
    r:wait_reload()
    assert.equal("two", r:get("/").body)
    r:write(H.config{ steps = { H.terminate("three") } })
    r:assert_no_reload(1.0)
    assert(r.g:signal("HUP"))
    r:wait_reload()
    assert.equal("three", r:get("/").body)
    r:write(H.config{ steps = { H.terminate("four") } })
    r:wait_reload()
    assert.equal("four", r:get("/").body)
  end)
end)
