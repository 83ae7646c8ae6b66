-- Test helper for the unit specs (spec/01-unit): runs the Lua framework in
-- plain busted, without the gateway binary.
--
--   local unit = require "spec.support.unit"
--   local config = require "tollgate.config"
--
-- On require it
--   * puts <repo>/lua/?.lua, <repo>/lua/?/init.lua and <repo>/?.lua first
--     on package.path (tollgate.* modules, and policies.* for the stock
--     policies);
--   * loads the C core (build/libtollgate.so, from `make`) through
--     tollgate.core, and tollgate.cyaml from it, with `home` = the repo root
--     as the gateway sets it
--     (tollgate.policies finds the stock policies under home/policies).
--     `tollgate.core` needs nothing: core.in_gateway is false here.
--
-- The gateway binary registers the same module itself (runtime/bridge.c);
-- this is only for the specs. Everything about building it stays here.
--
-- Helpers:
--   unit.root                      absolute path of the repo
--   unit.tmpdir()                  a fresh directory, removed by unit.cleanup()
--   unit.write(path, text)         writes a file (creating its directory)
--   unit.config_dir(files)         tmpdir with files { ["gateway.config.yml"] = text, ... }
--   unit.load(text, opts)          writes text as gateway.config.yml (opts.name,
--                                  opts.files for more files) and config.load()s it;
--                                  returns model, err, path
--   unit.build(text, opts)         unit.load + generation.build; returns gen, err, path
--   unit.env(tbl)                  a getenv function reading tbl
--   unit.setenv(name, value|nil)   sets or unsets a process environment variable
--   unit.cleanup()                 removes the tmpdirs made so far

local ffi = require "ffi"

local _M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function popen_read(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

-- ---- repo root and package.path -------------------------------------------------

local function repo_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  if src:sub(1, 1) ~= "/" then
    local cwd = os.getenv("PWD") or popen_read("pwd"):gsub("%s+$", "")
    src = cwd .. "/" .. src:gsub("^%./", "")
  end
  local root = src:match("^(.*)/spec/support/[^/]+$")
  assert(root, "spec/support/unit.lua: cannot find the repo root from " .. src)
  return root
end

local root = repo_root()
_M.root = root

do
  local add = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/?.lua;"
  if package.path:sub(1, #add) ~= add then
    package.path = add .. package.path
  end
end

-- ---- the C core ------------------------------------------------------------------------
-- tollgate.core loads build/libtollgate.so (built by `make`); tollgate.cyaml
-- comes from it too. `home` (where the stock policies are) is the repo.

do
  local core = require "tollgate.core"
  assert(core.has_c, "spec/support/unit.lua: build/libtollgate.so is missing: run make")
  local cyaml = require "tollgate.cyaml"
  cyaml.home = root
end

-- ---- files and environment ------------------------------------------------------------

local dirs = {}

function _M.tmpdir()
  local base = os.getenv("TMPDIR") or "/tmp"
  local d = popen_read("mktemp -d " .. shell_quote(base .. "/tollgate-unit-XXXXXX")):gsub("%s+$", "")
  assert(d ~= "", "mktemp -d failed")
  dirs[#dirs + 1] = d
  return d
end

function _M.write(path, text)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then assert(run("mkdir -p " .. shell_quote(dir))) end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

function _M.config_dir(files)
  local d = _M.tmpdir()
  for name, text in pairs(files or {}) do
    _M.write(d .. "/" .. name, text)
  end
  return d
end

function _M.load(text, opts)
  opts = opts or {}
  local files = {}
  for k, v in pairs(opts.files or {}) do files[k] = v end
  local name = opts.name or "gateway.config.yml"
  files[name] = text
  local d = _M.config_dir(files)
  local path = d .. "/" .. name
  local model, err = require("tollgate.config").load(path)
  return model, err, path
end

function _M.build(text, opts)
  local model, err, path = _M.load(text, opts)
  if not model then return nil, err, path end
  local gen, gerr = require("tollgate.generation").build(model)
  return gen, gerr, path
end

function _M.cleanup()
  for i = #dirs, 1, -1 do
    local d = dirs[i]
    if d:match("/tollgate%-unit%-[%w]+$") then
      run("rm -rf " .. shell_quote(d))
    end
    dirs[i] = nil
  end
end

function _M.env(tbl)
  return function(name) return tbl[name] end
end

pcall(ffi.cdef, [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]])

function _M.setenv(name, value)
  if value == nil then
    ffi.C.unsetenv(name)
  else
    ffi.C.setenv(name, tostring(value), 1)
  end
end

-- Strips leading indentation common to all non-blank lines, so configs
-- can be written indented inside the specs.
function _M.dedent(text)
  local min
  for line in text:gmatch("[^\n]+") do
    if line:find("%S") then
      local ind = #line:match("^ *")
      if not min or ind < min then min = ind end
    end
  end
  if not min or min == 0 then return text end
  local out = text:gsub("^" .. (" "):rep(min), ""):gsub("\n" .. (" "):rep(min), "\n")
  return out
end

return _M
