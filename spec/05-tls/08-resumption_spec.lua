-- https listener: session resumption (tickets with keys shared by the
-- workers), and resumption never getting around client-certificate checks.
-- LuaSec cannot resume sessions: these use `openssl s_client -sess_out /
-- -sess_in`.

local H = require "spec.05-tls.helpers"
local certs = require "spec.support.certs"
local process = require "spec.support.process"

local CONFIG = [[
http:
  hostname: 127.0.0.1
  port: 0
https:
  hostname: 127.0.0.1
  port: 0
  tls:
    two.test:
      key: tls/two.key
      cert: tls/two.pem
      ca: tls/rogue_ca.pem
    default:
      key: tls/default.key
      cert: tls/default.pem
      ca: tls/ca.pem
${OPTIONS}
tollgate:
  accessLog: off
apiEndpoints:
  api: { paths: '/*' }
policies: [terminate]
pipelines:
  main:
    apiEndpoints: [api]
    policies:
      - terminate:
          - condition: { name: tlsClientAuthenticated }
            action: { statusCode: 200, message: client-verified }
          - action: { statusCode: 200, message: client-anonymous }
]]

local REQUIRED = [[
  options:
    requestCert: true
    rejectUnauthorized: true]]

describe("https: session resumption", function()
  local c, g, reqfile

  setup(function()
    c = certs.generate()
    reqfile = c:path("request.txt")
    assert(process.write_file(reqfile, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
  end)

  teardown(function()
    if c then c:cleanup() end
  end)

  local function start(options)
    local files = H.tls_files(c, { "two", "default" })
    files["tls/rogue_ca.pem"] = assert(process.read_file(c.rogue_ca.cert))
    g = H.start{ config = CONFIG, vars = { OPTIONS = options or "" }, files = files,
                 workers = 2 }
    return g
  end

  after_each(function()
    if g then g:cleanup() end
    g = nil
  end)

  -- One request with openssl s_client.  args: extra arguments.  Returns
  -- { reused = bool, body = "client-verified" | "client-anonymous" | nil
  -- (no response), output = text }.
  local function s_client(args)
    local cmd = { "openssl", "s_client", "-connect", "127.0.0.1:" .. g.tls_port, "-ign_eof" }
    for _, a in ipairs(args) do cmd[#cmd + 1] = a end
    local _, out = process.run{ cmd = cmd, stdin = reqfile, timeout = 10 }
    local body
    for _, b in ipairs{ "client-verified", "client-anonymous" } do
      if out:find("HTTP/1.1 200 OK\r\n", 1, true) and out:find("\r\n\r\n" .. b, 1, true) then
        body = b
      end
    end
    -- the lines that tell what happened, for failure messages
    local summary = {}
    for line in out:gmatch("[^\n]+") do
      if line:find("^New, ") or line:find("^Reused, ") or line:find("alert")
         or line:find("^HTTP/") or line:find("client%-") then
        summary[#summary + 1] = line
      end
    end
    return {
      reused = out:find("\nReused, ", 1, true) ~= nil,
      new = out:find("\nNew, ", 1, true) ~= nil,
      body = body,
      output = "openssl s_client " .. table.concat(args, " ") .. ":\n" ..
               table.concat(summary, "\n"),
    }
  end

  local function with_cert(name, args)
    args[#args + 1] = "-cert"
    args[#args + 1] = c[name].cert
    args[#args + 1] = "-key"
    args[#args + 1] = c[name].key
    return args
  end

  for _, proto in ipairs{ "-tls1_2", "-tls1_3" } do
    it(proto .. ": a session resumes, on either worker (shared ticket keys)", function()
      start()
      local sess = c:path("sess" .. proto)
      local r = s_client{ proto, "-sess_out", sess }
      assert.is_true(r.new, r.output)
      assert.equal("client-anonymous", r.body, r.output)
      for _ = 1, 6 do
        r = s_client{ proto, "-sess_in", sess }
        assert.is_true(r.reused, r.output)
        assert.equal("client-anonymous", r.body, r.output)
      end
    end)

    -- TLS 1.3 only: a TLS 1.2 client keeps its ticket (and s_client writes
    -- no -sess_out after a resumed TLS 1.2 session)
    if proto == "-tls1_3" then it(proto .. ": each resumption hands out a fresh session, " ..
       "and the chain keeps resuming (TLS 1.3 clients use a ticket once)", function()
      start()
      local prev = c:path("chain0" .. proto)
      local r = s_client{ proto, "-sess_out", prev }
      assert.is_true(r.new, r.output)
      for i = 1, 4 do
        local nxt = c:path("chain" .. i .. proto)
        local _, out = process.run{ cmd = { "openssl", "s_client", "-connect",
          "127.0.0.1:" .. g.tls_port, "-ign_eof", "-msg", proto, "-sess_in", prev,
          "-sess_out", nxt }, stdin = reqfile, timeout = 10 }
        assert.truthy(out:find("\nReused, ", 1, true), "connection " .. i .. " not resumed")
        -- without a new ticket on a resumed connection, a TLS 1.3 client
        -- falls back to a full handshake every other connection
        assert.truthy(out:find("NewSessionTicket", 1, true),
          "no new session ticket on resumed connection " .. i)
        prev = nxt
      end
    end) end

    it(proto .. ": a session from before requestCert/rejectUnauthorized were turned on " ..
       "does not get around them", function()
      start()
      local sess = c:path("before" .. proto)
      local r = s_client{ proto, "-sess_out", sess }
      assert.equal("client-anonymous", r.body, r.output)

      local cfg = g.config_path
      assert(process.write_file(cfg .. ".new", (CONFIG:gsub("%${OPTIONS}", REQUIRED))))
      assert(os.rename(cfg .. ".new", cfg))
      process.wait_for(function()
        return H.count_log(g, "configuration reloaded %(generation 2%)") >= 2
      end, 10, "both workers to reload")

      -- a new session without a certificate is refused
      r = s_client{ proto }
      assert.is_nil(r.body, r.output)
      -- and so is the old session: no response without a certificate
      for _ = 1, 2 do
        r = s_client{ proto, "-sess_in", sess }
        assert.is_nil(r.body, "served on a resumed session without a certificate:\n" ..
                              r.output)
      end
    end)

    it(proto .. ": a session verified under one pattern's CA is not verified under a pattern " ..
       "trusting another CA", function()
      start(REQUIRED)
      local sess = c:path("verified" .. proto)
      -- default.test trusts the test CA, which signed the client's certificate
      local r = s_client(with_cert("client", { proto, "-servername", "default.test",
                                               "-sess_out", sess }))
      assert.equal("client-verified", r.body, r.output)
      -- two.test trusts only the rogue CA: the same certificate is refused there
      r = s_client(with_cert("client", { proto, "-servername", "two.test" }))
      assert.is_nil(r.body, r.output)
      -- resuming the default.test session under two.test must not make it verified
      r = s_client{ proto, "-servername", "two.test", "-sess_in", sess }
      assert.is_not.equal("client-verified", r.body,
                          "resumed as verified under two.test:\n" .. r.output)
    end)
  end
end)
