-- The project's specs use the public test kit: see lua/tollgate/testing/mock.lua.
return require "tollgate.testing.mock"
