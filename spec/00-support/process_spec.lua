-- luacheck: std +busted
-- Specs for tollgate.testing.process (spec/support/process.lua).

local process = require "spec.support.process"
local socket = require "socket"

local now = socket.gettime

describe("process helpers", function()
  local dir

  before_each(function()
    dir = process.tmpdir()
  end)

  after_each(function()
    process.kill_all()
    if dir then process.rm_rf(dir) end
  end)

  it("tmpdir creates a fresh directory and rm_rf removes it", function()
    local other = process.tmpdir("tollgate-x")
    assert.not_equal(dir, other)
    assert(process.write_file(other .. "/f", "data"))
    assert.equal("data", process.read_file(other .. "/f"))
    assert(process.rm_rf(other))
    assert.is_nil(io.open(other .. "/f"))
  end)

  it("rm_rf refuses dangerous paths", function()
    for _, p in ipairs{ "/", "/tmp", "relative/dir", "/tmp/../etc", "" } do
      local ok, err = process.rm_rf(p)
      assert.is_nil(ok)
      assert.matches("refusing", err)
    end
  end)

  it("start returns the pid of the command itself, wait_exit its exit code", function()
    local out = dir .. "/out"
    local pid = assert(process.start{ cmd = { "sh", "-c", "echo $$; exit 3" }, stdout = out })
    assert.equal(3, process.wait_exit(pid, 5))
    assert.equal(tostring(pid) .. "\n", process.read_file(out))
    -- repeated calls give the same status
    local code, how = process.wait_exit(pid, 0)
    assert.equal(3, code)
    assert.equal("exited", how)
    assert.is_false(process.alive(pid))
  end)

  it("passes env, cwd and separate stdout/stderr", function()
    local pid = assert(process.start{
      cmd = { "sh", "-c", "echo \"$TG_A/$TG_B\"; pwd; echo err >&2" },
      env = { TG_A = "a", TG_B = false }, cwd = dir,
      stdout = dir .. "/o", stderr = dir .. "/e",
    })
    assert.equal(0, process.wait_exit(pid, 5))
    local real_dir = io.popen("cd " .. process.quote(dir) .. " && pwd -P"):read("*l")
    assert.equal("a/\n" .. real_dir .. "\n", process.read_file(dir .. "/o"))
    assert.equal("err\n", process.read_file(dir .. "/e"))
  end)

  it("writes stdout and stderr to one file when the paths are equal", function()
    local f = dir .. "/both"
    local pid = assert(process.start{ cmd = { "sh", "-c", "echo 1; echo 2 >&2; echo 3" },
                                      stdout = f, stderr = f })
    assert.equal(0, process.wait_exit(pid, 5))
    assert.equal("1\n2\n3\n", process.read_file(f))
  end)

  it("reports exec and chdir failures at once", function()
    local pid, err = process.start{ cmd = { dir .. "/no-such-program" } }
    assert.is_nil(pid)
    assert.matches("exec .* failed: No such file or directory", err)
    pid, err = process.start{ cmd = { "true" }, cwd = dir .. "/missing" }
    assert.is_nil(pid)
    assert.matches("chdir", err)
  end)

  it("does not leak the spec's sockets into children", function()
    local held = assert(socket.bind("127.0.0.1", 0))
    finally(function() held:close() end)
    local out = dir .. "/fds"
    local pid = assert(process.start{ cmd = { "sh", "-c", "ls -l /proc/$$/fd" }, stdout = out })
    assert.equal(0, process.wait_exit(pid, 5))
    local text = process.read_file(out)
    assert.is_nil(text:find("socket:", 1, true), text)
    assert.is_nil(text:find(" 3 %-> "), text)
  end)

  it("signals reach the program; signal deaths are reported as 128+n", function()
    local pid = assert(process.start{ cmd = { "sleep", "30" } })
    assert.is_true(process.alive(pid))
    assert(process.kill(pid, "TERM"))
    local code, how, sig = process.wait_exit(pid, 5)
    assert.equal(143, code)
    assert.equal("signaled", how)
    assert.equal(15, sig)
  end)

  it("the program's own SIGTERM handler runs (no shell in between)", function()
    local f = dir .. "/o"
    local pid = assert(process.start{
      cmd = { "sh", "-c", "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done" },
      stdout = f,
    })
    process.wait_file_match(f, "^ready$", 5)
    local code = process.stop(pid)
    assert.equal(7, code)
    assert.equal("ready\nbye\n", process.read_file(f))
  end)

  it("stop falls back to SIGKILL of the process group", function()
    local f = dir .. "/o"
    local pid = assert(process.start{
      cmd = { "sh", "-c", "trap '' TERM; sleep 30 & echo $!; echo ready; wait" },
      stdout = f,
    })
    local grandchild = tonumber((process.wait_file_match(f, "^(%d+)$", 5)))
    process.wait_file_match(f, "^ready$", 5)
    local t0 = now()
    local code, how, sig, killed = process.stop(pid, "TERM", 0.3)
    assert.is_true(now() - t0 < 5)
    assert.equal(137, code)
    assert.equal("signaled", how)
    assert.equal(9, sig)
    assert.is_true(killed)
    process.wait_for(function() return not process.alive(grandchild) end, 5, "grandchild to die")
  end)

  it("wait_exit returns nil, 'timeout' while the process runs", function()
    local pid = assert(process.start{ cmd = { "sleep", "30" } })
    local t0 = now()
    local code, err = process.wait_exit(pid, 0.1)
    assert.is_nil(code)
    assert.equal("timeout", err)
    assert.is_true(now() - t0 >= 0.1)
    process.stop(pid)
  end)

  it("kill_all kills what is still running", function()
    local p1 = assert(process.start{ cmd = { "sleep", "30" } })
    local p2 = assert(process.start{ cmd = { "sleep", "30" } })
    assert.same({ p1, p2 }, process.running())
    assert.equal(2, process.kill_all())
    assert.is_false(process.alive(p1))
    assert.is_false(process.alive(p2))
    assert.same({}, process.running())
  end)

  it("run returns the exit code and the combined output", function()
    local code, out = process.run{ cmd = { "sh", "-c", "echo a; echo b >&2; exit 4" } }
    assert.equal(4, code)
    assert.equal("a\nb\n", out)
    assert.has_error(function()
      process.run{ cmd = { "sleep", "30" }, timeout = 0.2 }
    end)
  end)

  describe("wait_for", function()
    it("returns what fn returned once truthy", function()
      local n = 0
      local a, b = process.wait_for(function()
        n = n + 1
        if n >= 3 then return "yes", n end
      end, 1, "n to reach 3")
      assert.equal("yes", a)
      assert.equal(3, b)
    end)

    it("raises with `what` and the last error after the timeout", function()
      local t0 = now()
      local ok, err = pcall(process.wait_for, function() return nil, "not yet" end, 0.1, "the thing")
      assert.is_false(ok)
      assert.matches("timed out after 0.1s waiting for the thing %(last: not yet%)", err)
      assert.is_true(now() - t0 >= 0.1)
    end)
  end)

  describe("wait_file_match", function()
    it("returns captures of the first complete matching line", function()
      local f = dir .. "/log"
      process.write_file(f, "x\nport=12")
      -- the incomplete last line does not count
      assert.has_error(function() process.wait_file_match(f, "^port=(%d+)$", 0.05) end)
      process.write_file(f, "x\nport=1234\nport=99\n")
      assert.equal("1234", process.wait_file_match(f, "^port=(%d+)$", 1))
      local a, b = process.wait_file_match(f, "^(%a+)=(%d+)$", 1)
      assert.equal("port", a)
      assert.equal("1234", b)
    end)

    it("waits for a line written later by another process", function()
      local f = dir .. "/log"
      local pid = assert(process.start{ cmd = { "sh", "-c", "sleep 0.2; echo done=1" }, stdout = f })
      assert.equal("1", process.wait_file_match(f, "^done=(%d)$", 5))
      process.wait_exit(pid, 5)
    end)

    it("fails fast with the file content when the process exits", function()
      local f = dir .. "/log"
      local pid = assert(process.start{ cmd = { "sh", "-c", "echo fatal: bad config; exit 1" },
                                        stdout = f })
      local t0 = now()
      local ok, err = pcall(process.wait_file_match, f, "^listening", 10, { pid = pid })
      assert.is_false(ok)
      assert.matches("exited %(status 1%)", err)
      assert.matches("fatal: bad config", err)
      assert.is_true(now() - t0 < 5)
    end)

    it("times out with the file content", function()
      local f = dir .. "/log"
      process.write_file(f, "something else\n")
      local ok, err = pcall(process.wait_file_match, f, "^never$", 0.1)
      assert.is_false(ok)
      assert.matches("timed out", err)
      assert.matches("something else", err)
    end)
  end)

  it("free_port, port_open and wait_port", function()
    local port = process.free_port()
    assert.is_true(port > 0)
    assert.is_false(process.port_open(port))
    local s = assert(socket.bind("127.0.0.1", port))
    finally(function() s:close() end)
    assert.is_true(process.port_open(port))
    assert.is_true(process.wait_port(port, 1))
  end)

  it("repo_root points at the repository", function()
    local root = process.repo_root()
    assert.is_truthy(io.open(root .. "/spec/support/process.lua"))
  end)
end)
