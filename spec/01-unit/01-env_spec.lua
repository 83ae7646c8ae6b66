-- luacheck: std +busted
-- luacheck: max line length 140
-- config.env_substitute: Express Gateway's envReplace (lib/config/config.js)
--   str.replace(/\$?\$\{([A-Za-z0-9_]+)(:-(.*?))?\}/g, ...)
-- on the raw text: a set variable wins even when empty, the default only
-- applies when the variable is unset (and is non-empty), unset without a
-- default gives the text "null", "$${X}" stays as written.

local unit = require "spec.support.unit"
local config = require "tollgate.config"

local ENV = {
  A = "alpha",
  B = "beta",
  EMPTY = "",
  PORT = "8080",
  URL = "http://up:3000/base",
  SPECIAL = "a%1$&b",
  X = "ex",
  _U = "underscore",
  V1 = "one",
}

-- { name, input, expected }
local CASES = {
  { "set variable", "port: ${PORT}", "port: 8080" },
  { "set variable, default ignored", "port: ${PORT:-9999}", "port: 8080" },
  { "set but empty: empty, not null", "v: '${EMPTY}'", "v: ''" },
  { "set but empty: empty, not the default", "v: '${EMPTY:-dflt}'", "v: ''" },
  { "unset with default", "port: ${NOPE:-9000}", "port: 9000" },
  { "unset without default", "port: ${NOPE}", "port: null" },
  { "unset, empty default", "port: ${NOPE:-}", "port: null" },
  { "inside a URL, unset", "url: http://${NOPE}/x", "url: http://null/x" },
  { "$${X} kept verbatim", "v: $${X}", "v: $${X}" },
  { "$${NOPE:-d} kept verbatim", "v: $${NOPE:-d}", "v: $${NOPE:-d}" },
  { "$$${X}: the last two dollars escape", "v: $$${X}", "v: $$${X}" },
  { "${req.ip} is not a variable", "rateLimitBy: '${req.ip}'", "rateLimitBy: '${req.ip}'" },
  { "${req.user.id} is not a variable", "k: ${req.user.id}", "k: ${req.user.id}" },
  { "default containing : and /", "url: ${NOPE:-http://h:8080/x}", "url: http://h:8080/x" },
  { "default stops at the first }", "v: ${NOPE:-a}b}", "v: ab}" },
  { "default may contain ${", "v: ${NOPE:-a${B}", "v: a${B" },
  { "several on one line", "${A}-${NOPE:-d}-${B}-${NOPE}", "alpha-d-beta-null" },
  { "adjacent", "${A}${B}", "alphabeta" },
  { "value inserted literally ($&, %1)", "v: ${SPECIAL}", "v: a%1$&b" },
  { "names with digits and underscore", "${_U} ${V1}", "underscore one" },
  { "unterminated ${", "v: ${A", "v: ${A" },
  { "unterminated default", "v: ${NOPE:-abc", "v: ${NOPE:-abc" },
  { "default does not cross a newline", "v: ${NOPE:-abc\n}", "v: ${NOPE:-abc\n}" },
  { "unterminated then a variable", "v: ${A ${B}", "v: ${A beta" },
  { "name followed by something else", "v: ${A-x} ${A:x}", "v: ${A-x} ${A:x}" },
  { "empty name", "v: ${}", "v: ${}" },
  { "lone dollar and brace", "$ { $x {A}", "$ { $x {A}" },
  { "in a comment too", "# ${A}\nv: 1", "# alpha\nv: 1" },
  { "in a key", "${A}: 1", "alpha: 1" },
  { "JSON text", '{"port": ${PORT}, "h": "${NOPE:-x}"}', '{"port": 8080, "h": "x"}' },
  { "no variables", "plain: text", "plain: text" },
}

describe("config.env_substitute", function()
  for _, c in ipairs(CASES) do
    it(c[1], function()
      assert.equal(c[3], config.env_substitute(c[2], unit.env(ENV)))
    end)
  end

  it("warns about each unknown variable, not about set or defaulted ones", function()
    local warned = {}
    config.env_substitute("${NOPE} ${A} ${OTHER:-d} ${MISSING:-} $${ESC}", unit.env(ENV),
      function(msg) warned[#warned + 1] = msg end)
    assert.equal(2, #warned)
    assert.matches("NOPE", warned[1], 1, true)
    assert.matches("MISSING", warned[2], 1, true)
  end)

  it("reads the process environment by default", function()
    unit.setenv("TOLLGATE_UNIT_ENV", "from-env")
    unit.setenv("TOLLGATE_UNIT_EMPTY", "")
    finally(function()
      unit.setenv("TOLLGATE_UNIT_ENV", nil)
      unit.setenv("TOLLGATE_UNIT_EMPTY", nil)
    end)
    assert.equal("from-env|||null",
      config.env_substitute("${TOLLGATE_UNIT_ENV}|${TOLLGATE_UNIT_EMPTY:-d}||" ..
        "${TOLLGATE_UNIT_UNSET}"))
  end)

  describe("before parsing (config.load)", function()
    teardown(unit.cleanup)

    it("substitutes in the raw text, then parses the YAML", function()
      unit.setenv("TOLLGATE_UNIT_PORT", "8123")
      finally(function() unit.setenv("TOLLGATE_UNIT_PORT", nil) end)
      local model = assert(unit.load(unit.dedent [[
        http:
          port: ${TOLLGATE_UNIT_PORT}
        serviceEndpoints:
          svc:
            url: http://${TOLLGATE_UNIT_NOPE}:${TOLLGATE_UNIT_SP:-3001}/x
      ]]))
      assert.equal(8123, model.http.port)
      assert.equal("null", model.services.svc.urls[1].host)
      assert.equal(3001, model.services.svc.urls[1].port)
    end)

    it("an unset port becomes YAML null, which means any free port", function()
      local model = assert(unit.load("http:\n  port: ${TOLLGATE_UNIT_NOPE}\n"))
      assert.equal(0, model.http.port)
    end)
  end)
end)
