-- luacheck: std +busted
-- luacheck: max line length 140
-- tollgate.schema: policy and condition parameters, validated with
-- defaults applied (what ajv with useDefaults and coerceTypes does for
-- Express Gateway's policy schemas).

require "spec.support.unit"
local schema = require "tollgate.schema"
local cyaml = require "tollgate.cyaml"

local S = {
  properties = {
    statusCode = { type = "integer", default = 400, minimum = 100, maximum = 599 },
    message = { type = "string", default = "Terminated" },
    ratio = { type = "number", minimum = 0, maximum = 1 },
    enabled = { type = "boolean", default = false },
    mode = { type = "string", enum = { "fast", "safe" }, default = "safe" },
    methods = { type = { "string", "array" }, items = { type = "string" } },
    ports = { type = "array", items = { type = "integer", minimum = 1 }, min_items = 1 },
    tags = { type = "array" },
    name = { type = "string", pattern = "^[a-z]+$", pattern_message = "lower-case letters only" },
    anything = { type = "any" },
    headers = { type = "object", additional = true },
    limits = { type = "object", properties = {
      max = { type = "integer", default = 5 },
      window = { type = "number", required = true, description = "ms per window" },
      inner = { type = "object", properties = { deep = { type = "boolean", default = true } } },
    } },
  },
}

local function v(value, spec)
  return schema.validate(spec or S, value, "action")
end

-- { case, input, key, expected value of that key after validation }
local OK = {
  { "default integer", {}, "statusCode", 400 },
  { "default string", {}, "message", "Terminated" },
  { "default boolean false is applied", {}, "enabled", false },
  { "default enum value", {}, "mode", "safe" },
  { "no default, absent stays nil", {}, "ratio", nil },
  { "given value wins", { statusCode = 403 }, "statusCode", 403 },
  { "null is absent: the default applies", { statusCode = cyaml.null }, "statusCode", 400 },
  { "numeric string -> integer", { statusCode = "404" }, "statusCode", 404 },
  { "numeric string -> number", { ratio = "0.25" }, "ratio", 0.25 },
  { "integer given as 3.0", { statusCode = 403.0 }, "statusCode", 403 },
  { "number -> string", { message = 42 }, "message", "42" },
  { "boolean -> string", { message = true }, "message", "true" },
  { "string true -> boolean", { enabled = "true" }, "enabled", true },
  { "string false -> boolean", { enabled = "false" }, "enabled", false },
  { "enum value", { mode = "fast" }, "mode", "fast" },
  { "string or array: string", { methods = "GET" }, "methods", "GET" },
  { "string or array: array", { methods = { "GET", "PUT" } }, "methods", { "GET", "PUT" } },
  { "string or array: a number becomes a string", { methods = 12 }, "methods", "12" },
  { "array items coerced", { ports = { "80", 443 } }, "ports", { 80, 443 } },
  { "array without item type", { tags = { 1, "a", true } }, "tags", { 1, "a", true } },
  { "pattern ok", { name = "abc" }, "name", "abc" },
  { "any", { anything = { 1, 2 } }, "anything", { 1, 2 } },
  { "free-form object", { headers = { ["X-A"] = "1", ["x-b"] = 2 } }, "headers", { ["X-A"] = "1", ["x-b"] = 2 } },
  { "empty object as free-form object", { headers = {} }, "headers", {} },
  { "nested defaults", { limits = { window = 1000 } }, "limits",
    { max = 5, window = 1000, inner = nil } },
  { "nested coercion and deeper defaults", { limits = { window = "10", max = "7", inner = {} } }, "limits",
    { max = 7, window = 10, inner = { deep = true } } },
  { "minimum is inclusive", { statusCode = 100 }, "statusCode", 100 },
  { "maximum is inclusive", { statusCode = 599 }, "statusCode", 599 },
}

describe("schema.validate", function()
  for _, c in ipairs(OK) do
    it(c[1], function()
      local out, err = v(c[2])
      assert.is_nil(err)
      assert.same(c[4], out[c[3]])
    end)
  end

  it("nil and null are an empty mapping (defaults only)", function()
    for _, input in ipairs { false, true } do
      local out = assert(schema.validate(S, input and cyaml.null or nil, "action"))
      assert.same({ statusCode = 400, message = "Terminated", enabled = false, mode = "safe" }, out)
    end
  end)

  it("does not change its input", function()
    local input = { statusCode = "404" }
    assert(v(input))
    assert.same({ statusCode = "404" }, input)
  end)

  it("a table default is copied for each validation", function()
    local spec = { properties = { list = { type = "array", default = { "a" } } } }
    local a = assert(schema.validate(spec, {}))
    a.list[2] = "changed"
    local b = assert(schema.validate(spec, {}))
    assert.same({ "a" }, b.list)
    assert.same({ "a" }, spec.properties.list.default)
  end)

  it("additional = true keeps unknown keys", function()
    local spec = { additional = true, properties = { a = { type = "integer", default = 1 } } }
    assert.same({ a = 1, extra = "x" }, assert(schema.validate(spec, { extra = "x" })))
  end)

  it("a schema without properties takes anything, unless additional = false", function()
    assert.same({ x = 1 }, assert(schema.validate({}, { x = 1 })))
    local out, err = schema.validate({ additional = false }, { x = 1 }, "action")
    assert.is_nil(out)
    assert.equal("action: takes no options", err)
  end)

  it("check() sees the validated values, defaults included", function()
    local seen
    local spec = { properties = { a = { type = "integer", default = 3 } },
      check = function(conf) seen = conf.a; return true end }
    assert(schema.validate(spec, {}))
    assert.equal(3, seen)
  end)
end)

-- { case, input, expected message (exact), at key }
local ERRORS = {
  { "required", { limits = {} }, "action.limits.window: is required (ms per window)", "window" },
  { "required, null", { limits = { window = cyaml.null } }, "action.limits.window: is required (ms per window)", "window" },
  { "unknown key, with the known keys",
    { statsCode = 1 },
    "action.statsCode: unknown option (known: anything, enabled, headers, limits, message, methods, mode, name, " ..
      "ports, ratio, statusCode, tags)", "statsCode" },
  { "unknown key in a nested object", { limits = { window = 1, bogus = 1 } },
    "action.limits.bogus: unknown option (known: inner, max, window)", "bogus" },
  { "unknown keys: the first in order is named", { zz = 1, aa = 2 }, "action.aa: unknown option", "aa" },
  { "enum", { mode = "slow" }, 'action.mode: must be one of fast, safe, got "slow"', "mode" },
  { "minimum", { statusCode = 99 }, "action.statusCode: must be at least 100", "statusCode" },
  { "maximum", { statusCode = 600 }, "action.statusCode: must be at most 599", "statusCode" },
  { "minimum after coercion", { statusCode = "99" }, "action.statusCode: must be at least 100", "statusCode" },
  { "integer refuses a fraction", { statusCode = 400.5 }, "action.statusCode: expected integer, got 400.5", "statusCode" },
  { "integer refuses a non-numeric string", { statusCode = "abc" },
    'action.statusCode: expected integer, got "abc"', "statusCode" },
  { "number refuses an empty string", { ratio = "" }, 'action.ratio: expected number, got ""', "ratio" },
  { "boolean refuses yes", { enabled = "yes" }, 'action.enabled: expected boolean, got "yes"', "enabled" },
  { "string refuses a list", { message = { "a" } }, "action.message: expected string, got a list", "message" },
  { "string refuses a mapping", { message = { a = 1 } }, "action.message: expected string, got a mapping", "message" },
  { "object refuses a list", { headers = { "a" } }, "action.headers: expected object, got a list", "headers" },
  { "array refuses a mapping", { ports = { a = 1 } }, "action.ports: expected array, got a mapping", "ports" },
  { "array refuses a string", { ports = "80" }, 'action.ports: expected array, got "80"', "ports" },
  { "maximum of a number", { ratio = 2 }, "action.ratio: must be at most 1", "ratio" },
  { "number refuses the string nan (no NaN past min/max)", { ratio = "nan" },
    'action.ratio: expected number, got "nan"', "ratio" },
  { "array item type", { ports = { 80, "x" } }, 'action.ports[2]: expected integer, got "x"', 2 },
  { "array item minimum", { ports = { 0 } }, "action.ports[1]: must be at least 1", 1 },
  { "string-or-array item type", { methods = { "GET", true, {} } }, "action.methods[3]: expected string, got a list", 3 },
  { "min_items", { ports = {} }, "action.ports: needs at least 1 item(s)", nil },
  { "pattern", { name = "ABC" }, "action.name: lower-case letters only", "name" },
  { "deep nested type", { limits = { window = 1, inner = { deep = "maybe" } } },
    'action.limits.inner.deep: expected boolean, got "maybe"', "deep" },
}

describe("schema.validate errors", function()
  for _, c in ipairs(ERRORS) do
    it(c[1], function()
      local out, err, at = v(c[2])
      assert.is_nil(out)
      if c[1]:find("first in order", 1, true) then
        assert.equal(c[3], err:sub(1, #c[3]))
      else
        assert.equal(c[3], err)
      end
      assert.is_table(at)
      if c[4] ~= nil then assert.equal(c[4], at[2]) end
    end)
  end

  it("the location points into the input (for line numbers)", function()
    local limits = { window = 1, bogus = 1 }
    local _, _, at = v { limits = limits }
    assert.equal(limits, at[1])
    assert.equal("bogus", at[2])
    local ports = { 80, "x" }
    _, _, at = v { ports = ports }
    assert.equal(ports, at[1])
    assert.equal(2, at[2])
  end)

  it("a non-table value is refused as a whole", function()
    local out, err = schema.validate(S, "fast", "action")
    assert.is_nil(out)
    assert.equal('action: expected a mapping of options, got "fast"', err)
  end)

  -- { case, value, message }
  local CHECKS = {
    { "cross-field rule fails", { a = 1, b = 1 }, "action: a and b cannot both be set" },
    { "cross-field rule passes", { a = 1 }, nil },
  }
  for _, c in ipairs(CHECKS) do
    it("check(): " .. c[1], function()
      local spec = {
        properties = { a = { type = "integer" }, b = { type = "integer" } },
        check = function(conf)
          if conf.a and conf.b then return nil, "a and b cannot both be set" end
          return true
        end,
      }
      local out, err = schema.validate(spec, c[2], "action")
      assert.equal(c[3], err)
      if not c[3] then assert.same(c[2], out) end
    end)
  end

  it("check() in a nested object names the nested path", function()
    local spec = { properties = { o = { type = "object", properties = { x = { type = "integer" } },
      check = function(conf) return conf.x == 1, "x must be 1" end } } }
    local _, err = schema.validate(spec, { o = { x = 2 } }, "action")
    assert.equal("action.o: x must be 1", err)
  end)

  it("with no path, the message starts with the key / the sentence", function()
    local _, err = schema.validate(S, { statusCode = 1 })
    assert.equal("statusCode: must be at least 100", err)
    local _, err2 = schema.validate({ properties = {}, check = function() return nil, "no" end }, {})
    assert.equal("no", err2)
  end)
end)

describe("schema helpers", function()
  -- { value, is_array }
  local ARRAYS = {
    { {}, true },
    { { 1, 2, 3 }, true },
    { { a = 1 }, false },
    { { 1, 2, x = 1 }, false },
    { { [1] = 1, [3] = 3 }, false },
    { { [0] = 1 }, false },
    { "s", false },
  }
  for i, c in ipairs(ARRAYS) do
    it("is_array #" .. i, function()
      assert.equal(c[2], schema.is_array(c[1]))
    end)
  end

  it("is_null: nil and the YAML null", function()
    assert.is_true(schema.is_null(nil))
    assert.is_true(schema.is_null(cyaml.null))
    assert.is_true(schema.NULL == cyaml.null)
    assert.is_false(schema.is_null(false))
    assert.is_false(schema.is_null(0))
    assert.is_false(schema.is_null(""))
  end)

  it("describe", function()
    assert.equal('"x"', schema.describe("x"))
    assert.equal("null", schema.describe(cyaml.null))
    assert.equal("a list", schema.describe({ 1 }))
    assert.equal("a mapping", schema.describe({ a = 1 }))
    assert.equal("12", schema.describe(12))
  end)
end)
