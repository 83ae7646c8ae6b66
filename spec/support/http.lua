-- The project's specs use the public test kit: see lua/tollgate/testing/http.lua.
return require "tollgate.testing.http"
