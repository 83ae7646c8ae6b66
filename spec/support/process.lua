-- The project's specs use the public test kit: see lua/tollgate/testing/process.lua.
return require "tollgate.testing.process"
