-- The project's specs use the public test kit: see lua/tollgate/testing/certs.lua.
return require "tollgate.testing.certs"
