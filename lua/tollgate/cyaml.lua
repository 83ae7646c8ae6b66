-- tollgate.cyaml outside the gateway binary: the C YAML loader
-- (runtime/yamlcfg.c), taken from libtollgate.so. Inside the binary the
-- module is registered by runtime/bridge.c and this file is not used.

local core = require "tollgate.core"

if not core.lib_path then
    error("tollgate.cyaml needs the C core: build it (make) or set TOLLGATE_LIB to libtollgate.so")
end
local open, err = package.loadlib(core.lib_path, "luaopen_tollgate_cyaml")
if not open then error("tollgate.cyaml: " .. tostring(err)) end
local m = open()
m.home = os.getenv("TOLLGATE_HOME") or core.home or "."
return m
