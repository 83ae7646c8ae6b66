-- The project's specs use the public test kit: see lua/tollgate/testing/ws.lua.
return require "tollgate.testing.ws"
