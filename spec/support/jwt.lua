-- The project's specs use the public test kit: see lua/tollgate/testing/jwt.lua.
return require "tollgate.testing.jwt"
