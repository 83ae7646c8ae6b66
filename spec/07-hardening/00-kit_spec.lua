-- luacheck: std +busted
-- The pieces the hardening specs stand on, checked directly: the mock
-- upstream's failure behaviours added for them (/endless-head, /never-read,
-- the `completed` counter) and the helpers' /proc probes and raw sockets.

local mock = require "spec.support.mock"
local http = require "spec.support.http"
local H = require "spec.07-hardening.helpers"

describe("hardening kit", function()
  local up

  setup(function()
    up = mock.start{ name = "kit" }
  end)

  teardown(function()
    mock.stop_all()
  end)

  it("mock /endless-head sends header lines without end", function()
    local conn = assert(http.connect(up.port))
    finally(function() conn:close() end)
    assert(conn:request{ path = "/endless-head" })
    local got = 0
    local first = ""
    while got < 200000 do
      local data = assert(conn:receive_some(65536))
      if #first < 4096 then first = first .. data end
      got = got + #data
    end
    assert.matches("^HTTP/1%.1 200 OK\r\nX%-Pad%-1: x+\r\nX%-Pad%-2: ", first)
    assert.is_nil(first:find("\r\n\r\n", 1, true))
  end)

  it("mock /never-read reads the head, not the body, and never answers", function()
    local before = assert(up:count())
    local conn = assert(http.connect(up.port, nil, { timeout = 0.5 }))
    finally(function() conn:close() end)
    -- far more than the socket buffers hold: the send stalls
    local ok, err = conn:request{ method = "POST", path = "/never-read",
                                  headers = { ["Content-Length"] = 64 * 1024 * 1024 },
                                  body = http.source_bytes(64 * 1024 * 1024) }
    assert.is_nil(ok)
    assert.equal("timeout", err)
    assert.is_false(conn:closed())
    local after = assert(up:count())
    assert.equal(before.requests + 2, after.requests) -- this one and /count
    assert.equal(before.completed + 1, after.completed) -- only /count
  end)

  it("mock counts completed requests (whole body read)", function()
    local before = assert(up:count())
    local res = assert(http.request(up.port, { method = "POST", path = "/upload", body = "abc" }))
    assert.equal(200, res.status)
    local conn = assert(http.connect(up.port))
    assert(conn:send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"))
    conn:close()
    -- requests - completed: the cut request is the only one not completed
    H.process.wait_for(function()
      local c = assert(up:count())
      return c.requests - c.completed == before.requests - before.completed + 1
    end, 5, "the mock to count the cut request as read but not completed")
  end)

  it("finds a descriptor count, an RSS and CPU ticks in /proc", function()
    local pid = up.pid
    assert.is_true(H.fd_count(pid) >= 3)
    assert.is_true(H.rss_kb(pid) > 0)
    assert.is_number(H.cpu_ticks(pid))
    assert.matches("0 %-> ", H.fd_list(pid))
    assert.is_nil(H.fd_count(999999999))
  end)

  it("builds a listener whose connects hang", function()
    local l = H.full_backlog_listener()
    finally(function() l.close() end)
    local fd = assert(H.raw_connect(l.port))
    finally(function() H.raw_close(fd) end)
    local ok, err = H.raw_wait_connected(fd, 0.3)
    assert.is_nil(ok)
    assert.equal("timeout", err)
  end)
end)
