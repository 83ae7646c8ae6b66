-- luacheck: std +busted
-- Graceful shutdown under load: clients send requests continuously
-- (keep-alive connections back to back and a connection per request; a
-- third of the requests wait 200 ms at the upstream, a third are 200 KB
-- responses) through two workers; SIGTERM to the master.  Every request
-- the gateway accepted gets a whole, correct response (none is cut: what
-- the access log and the upstream saw was answered completely), requests
-- in flight at the signal are finished, new connections are refused once
-- it stops (and stay refused), and it exits 0.
-- The clients are spec/07-hardening/load_client.lua, one process.

local mock = require "spec.support.mock"
local gateway = require "spec.support.gateway"
local H = require "spec.07-hardening.helpers"

local now = H.now
local process = H.process

local LOAD = process.repo_root() .. "/spec/07-hardening/load_client.lua"

local function start_load(port, opts)
  local dir = process.tmpdir("tollgate-shutdown-load")
  local pid = assert(process.start{
    cmd = { os.getenv("LUAJIT") or "luajit", LOAD, "--port", tostring(port),
            "--keepalive", tostring(opts.keepalive), "--fresh", tostring(opts.fresh),
            "--stopfile", dir .. "/stop", "--out", dir .. "/out.json",
            "--progress", dir .. "/progress", "--max-seconds", "60" },
    stdout = dir .. "/log", stderr = dir .. "/log",
  })
  local l = { pid = pid, dir = dir }
  function l.complete()
    return tonumber((process.read_file(dir .. "/progress") or ""):match("^(%d+)")) or 0
  end
  function l.finish()
    assert(process.write_file(dir .. "/stop", ""))
    local code = process.wait_exit(pid, 20)
    local out = process.read_file(dir .. "/out.json")
    assert(code == 0 and out, "load_client failed (" .. tostring(code) .. "): "
                              .. (process.read_file(dir .. "/log") or ""))
    return require("cjson").decode(out)
  end
  function l.cleanup()
    if process.alive(pid) then process.stop(pid, "KILL", 2) end
    process.rm_rf(dir)
  end
  return l
end

describe("graceful shutdown under load", function()
  teardown(function()
    gateway.cleanup_all()
    mock.stop_all()
  end)

  it("answers every accepted request completely, refuses new connections, exits 0", function()
    local up = mock.start{ name = "a", verbose = true }
    local g = H.gateway(up, { workers = 2, shutdownTimeout = 5000 })
    finally(function() g:cleanup() end)
    H.workers(g, 2)
    local load = start_load(g.port, { keepalive = 6, fresh = 4 })
    finally(function() load.cleanup() end)
    process.wait_for(function()
      assert(process.alive(load.pid), "load_client exited: "
             .. (process.read_file(load.dir .. "/log") or ""))
      return load.complete() >= 200
    end, 20, "200 complete responses under load")

    local t_term = now()
    assert(g:signal("TERM"))
    local code, how = g:wait_exit(15)
    assert.equal("exited", how)
    assert.equal(0, code)
    local out = load.finish()

    -- what the clients saw
    local by_path, counts = {}, {}
    local in_flight, slow_in_flight = 0, 0
    local problems = {}
    for _, r in ipairs(out.requests) do
      by_path[r.path] = r
      counts[r.outcome] = (counts[r.outcome] or 0) + 1
      if r.outcome == "cut" or r.outcome == "bad" or r.outcome == "timeout" then
        problems[#problems + 1] = ("%s %s: %s after %d bytes (%s)"):format(
          r.outcome, r.path, tostring(r.status), r.got or 0, tostring(r.err))
      end
      if r.outcome == "complete" and r.t_sent < t_term and r.t_done > t_term then
        in_flight = in_flight + 1
        if r.path:find("^/slow/") then slow_in_flight = slow_in_flight + 1 end
      end
    end
    local summary = ("%d requests: %s"):format(#out.requests, require("cjson").encode(counts))
    if os.getenv("TOLLGATE_SPEC_VERBOSE") then
      io.stderr:write(("%s; %d in flight at SIGTERM (%d slow); first refusal %.3fs after\n")
        :format(summary, in_flight, slow_in_flight, (out.refused[1] or t_term) - t_term))
    end
    assert.same({}, problems, summary)
    assert.is_true((counts.complete or 0) >= 200, summary)
    -- requests in flight at the signal were finished, not dropped
    assert.is_true(in_flight > 0 and slow_in_flight > 0,
      ("%d requests (%d slow) in flight at SIGTERM were answered; %s")
        :format(in_flight, slow_in_flight, summary))

    -- every request the gateway took (access log) or sent on (upstream)
    -- was answered completely
    local log = H.access_log(g)
    assert.is_true(#log >= (counts.complete or 0), "access log lines: " .. #log)
    for _, e in ipairs(log) do
      local r = by_path[e.path]
      assert.is_truthy(r, "the access log has a request no client sent: " .. tostring(e.path))
      assert.is_nil(e.aborted, "logged as aborted: " .. e.path)
      assert.equal("complete", r.outcome, e.path .. " was logged (" .. e.status .. ") but "
                   .. r.outcome .. " at the client")
    end
    local upstream_saw = 0
    for target in up:logs():gmatch("conn %d+: GET (%S+) HTTP/1%.1") do
      local r = by_path[target]
      assert.is_truthy(r, "the upstream got a request no client sent: " .. target)
      assert.equal("complete", r.outcome, target .. " reached the upstream but was "
                   .. r.outcome .. " at the client")
      upstream_saw = upstream_saw + 1
    end
    assert.equal(#log, upstream_saw)

    -- new connections are refused once stopping, and stay refused
    assert.is_true(#out.refused > 0, "no connection was refused after SIGTERM")
    assert.is_true(out.refused[1] >= t_term)
    assert.is_true(out.refused[1] - t_term < 2,
      ("connections accepted for %.2fs after SIGTERM"):format(out.refused[1] - t_term))
    assert.equal(0, out.accepted_after_refused)
  end)
end)
