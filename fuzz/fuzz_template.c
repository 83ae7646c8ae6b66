/*
 * fuzz_template.c: the ${...} template and expression compiler
 * (lua/tollgate/template.lua), in a LuaJIT state as the gateway's. The
 * input is an option value as a config would give it. Byte 0 picks how
 * it is compiled (bit 0: compile_template, as "${req.ip}-${req.user.sub}";
 * else compile_expression, as "req.headers['x-key'] || req.ip"), and
 * through compile_value (bit 1) or directly; the rest is the string.
 *
 * Compiling either gives a function or nil and a message (a string; never
 * a raised error); a compiled function is then evaluated against fake
 * requests (a full one, and one with nothing set) and must not raise
 * either; a template always yields a string. A Lua error that escapes is a
 * finding.
 */
#include "fuzz_lua.h"

static lua_State *L;

static const char HARNESS[] =
    "local template = require 'tollgate.template'\n"
    "local function header(self, name) return self.headers[name] end\n"
    "local full = {\n"
    "  ip = '192.0.2.1', method = 'POST', url = '/orders/7?size=large&x=%41+b',\n"
    "  original_url = '/api/orders/7?size=large', path = '/orders/7', host = 'shop.test:8080',\n"
    "  protocol = 'https', id = 'req-1',\n"
    "  query = 'size=large&x=%41+b&empty=&flag&%zz=1&&a=%E2%82%AC',\n"
    "  headers = { ['x-api-key'] = 'k', host = 'shop.test:8080', ['content-type'] = 'text/plain' },\n"
    "  user = { sub = 'alice', scope = 'read', nested = { a = { b = 1 } }, list = { 'x', 'y' } },\n"
    "  params = { id = '7', deep = { x = true } },\n"
    "  endpoint = { name = 'orders', paths = { '/orders/*' } },\n"
    "  header = header,\n"
    "}\n"
    "local empty = { headers = {}, header = header }\n"
    "return function(text, mode)\n"
    "  local kind = mode % 2 == 1 and 'template' or 'expression'\n"
    "  local fn, err\n"
    "  if mode >= 2 then\n"
    "    fn, err = template.compile_value(text, kind, 'fuzz')\n"
    "  elseif kind == 'template' then\n"
    "    fn, err = template.compile_template(text)\n"
    "  else\n"
    "    fn, err = template.compile_expression(text)\n"
    "  end\n"
    "  if not fn then\n"
    "    assert(type(err) == 'string', 'compile: no message')\n"
    "    return\n"
    "  end\n"
    "  assert(type(fn) == 'function', 'compile: not a function')\n"
    "  for _, req in ipairs({ full, empty }) do\n"
    "    local v = fn(req)\n"
    "    if kind == 'template' then\n"
    "      assert(type(v) == 'string', 'a template gave a ' .. type(v))\n"
    "    end\n"
    "    template.js_string(v)\n"
    "  end\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    L = fuzz_lua_new(HARNESS, "=fuzz_template");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_lua_run(L, data + 1, size - 1, data[0] & 3);
    return 0;
}
