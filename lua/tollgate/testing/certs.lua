-- Test-time certificates for the TLS specs, made with the openssl CLI into a
-- temp dir (EC P-256 keys: fast to make, and accepted everywhere).
--
--   local certs = require "tollgate.testing.certs"
--   local c = certs.generate()        -- a fresh set in its own temp dir
--   finally(function() c:cleanup() end)    -- or teardown
--
--   c.dir                     the temp dir
--   c.ca                      { cert, key, cn }: the test CA (cert = ca.pem)
--   c.one                     CN one.test, SAN DNS:one.test, DNS:*.one.test
--   c.two                     CN two.test, SAN DNS:two.test
--   c.default                 CN default.test, SAN DNS:default.test
--   c.client                  CN client.test, extendedKeyUsage clientAuth
--   c.upstream                CN 127.0.0.1, SAN IP:127.0.0.1, DNS:localhost
--   c.wrong                   CN wrong.example, SAN DNS:wrong.example
--   c.rogue_ca                another CA (not trusted by anything)
--   c.rogue_client            CN rogue-client.test, signed by rogue_ca
--   each leaf: { cert = path, key = path, cn = "...", name = "..." }
--
--   c:issue("name", { cn = "x.test", san = "DNS:x.test", key = path (reuse a key),
--                     ca = c.ca | c.rogue_ca | "self", client = true })
--     another certificate (e.g. a renewed one for the same key); returns the
--     leaf table, also stored as c[name].
--   c:path(name)              <dir>/<name>  (for files written by the spec)
--   certs.subject_cn(cert)    CN of a LuaSec x509 object's subject (nil if none)

local process = require "tollgate.testing.process"

local assert, error, setmetatable, tostring = assert, error, setmetatable, tostring
local ipairs = ipairs

local _M = {}

local Certs = {}
Certs.__index = Certs

local function openssl(dir, args)
  local cmd = { "openssl" }
  for _, a in ipairs(args) do cmd[#cmd + 1] = a end
  local code, out = process.run{ cmd = cmd, cwd = dir, timeout = 30 }
  if code ~= 0 then
    error("openssl failed (" .. tostring(code) .. "): " .. table.concat(cmd, " ") .. "\n" ..
          tostring(out), 3)
  end
  return out
end

local function newkey(dir, path)
  openssl(dir, { "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-pkeyopt", "ec_param_enc:named_curve", "-out", path })
end

function Certs:path(name)
  return self.dir .. "/" .. name
end

-- A CA: self-signed, CA:TRUE.
function Certs:make_ca(name, cn)
  local ca = { name = name, cn = cn, key = self:path(name .. ".key"),
               cert = self:path(name .. ".pem") }
  newkey(self.dir, ca.key)
  openssl(self.dir, { "req", "-x509", "-new", "-key", ca.key, "-out", ca.cert, "-days", "2",
                      "-subj", "/CN=" .. cn,
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign" })
  self[name] = ca
  return ca
end

-- A leaf certificate signed by opts.ca (default: the test CA).
function Certs:issue(name, opts)
  opts = opts or {}
  local leaf = { name = name, cn = opts.cn or name, cert = self:path(name .. ".pem") }
  if opts.key then
    leaf.key = opts.key
  else
    leaf.key = self:path(name .. ".key")
    newkey(self.dir, leaf.key)
  end
  local ext = self:path(name .. ".ext")
  local lines = {
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=" .. (opts.client and "clientAuth" or "serverAuth,clientAuth"),
  }
  if opts.san ~= false then
    lines[#lines + 1] = "subjectAltName=" .. (opts.san or ("DNS:" .. leaf.cn))
  end
  assert(process.write_file(ext, table.concat(lines, "\n") .. "\n"))
  local csr = self:path(name .. ".csr")
  openssl(self.dir, { "req", "-new", "-key", leaf.key, "-out", csr, "-subj", "/CN=" .. leaf.cn })
  local ca = opts.ca or self.ca
  self.serial = (self.serial or 1000) + 1
  openssl(self.dir, { "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
                      "-set_serial", tostring(self.serial), "-days", "2",
                      "-extfile", ext, "-out", leaf.cert })
  os.remove(csr)
  os.remove(ext)
  self[name] = leaf
  return leaf
end

function Certs:cleanup()
  if self.dir and not os.getenv("TOLLGATE_SPEC_KEEP") then process.rm_rf(self.dir) end
  self.dir = nil
end

-- A fresh set of certificates (see the top of this file).
function _M.generate()
  local self = setmetatable({ dir = process.tmpdir("tollgate-certs") }, Certs)
  self:make_ca("ca", "Tollgate Test CA")
  self:make_ca("rogue_ca", "Rogue Test CA")
  self:issue("one", { cn = "one.test", san = "DNS:one.test,DNS:*.one.test" })
  self:issue("two", { cn = "two.test" })
  self:issue("default", { cn = "default.test" })
  self:issue("client", { cn = "client.test", client = true, san = false })
  self:issue("upstream", { cn = "127.0.0.1", san = "IP:127.0.0.1,DNS:localhost" })
  self:issue("wrong", { cn = "wrong.example" })
  self:issue("rogue_client", { cn = "rogue-client.test", client = true, san = false,
                               ca = self.rogue_ca })
  return self
end

-- The CN of a LuaSec certificate's subject.
function _M.subject_cn(cert)
  if not cert then return nil end
  for _, entry in ipairs(cert:subject()) do
    if entry.oid == "2.5.4.3" or entry.name == "commonName" then return entry.value end
  end
end


return _M
