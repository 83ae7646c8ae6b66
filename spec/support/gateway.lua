-- The project's specs use the public test kit: see lua/tollgate/testing/server.lua.
return require "tollgate.testing.server"
