/*
 * Unit test for runtime/yamlcfg.c.  The implementation is included so its
 * static helpers are reachable.  Each case is a Lua chunk run against a
 * `yaml` table filled by tg_yaml_register; a case passes when its chunk
 * runs without error.  Output is TAP-like ("ok N - ..."); the exit status
 * is non-zero if any case failed.
 *
 * Build and run (from the repository root):
 *   gcc -O1 -g -Wall -Wextra -fsanitize=address,undefined \
 *       -I/usr/include/luajit-2.1 spec/c/test_yaml.c -o /tmp/test_yaml \
 *       -lyaml -lluajit-5.1 -lm && /tmp/test_yaml
 */
#include "../../runtime/yamlcfg.c"
#include "../../runtime/chunkcache.c"

#include <lualib.h>

#include <stdio.h>
#include <string.h>

static int count, failures;

static void report(int ok, const char *desc, const char *why)
{
    count++;
    printf("%s %d - %s\n", ok ? "ok" : "not ok", count, desc);
    if (!ok) {
        failures++;
        printf("#   %s\n", why);
    }
}

/* Runs one Lua test chunk. */
static void check(lua_State *L, const char *desc, const char *code)
{
    int top = lua_gettop(L);

    if (luaL_loadbuffer(L, code, strlen(code), desc) != 0 ||
        lua_pcall(L, 0, 0, 0) != 0) {
        report(0, desc, lua_tostring(L, -1));
    } else {
        report(1, desc, NULL);
    }
    lua_settop(L, top);
}

/* Helpers shared by the Lua cases. */
static const char prelude[] =
    "null = yaml.null\n"
    "function fmt(v)\n"
    "  if v == null then return 'null' end\n"
    "  if type(v) == 'string' then return string.format('%q', v) end\n"
    "  return tostring(v)\n"
    "end\n"
    "function eq(got, want, what)\n"
    "  if got ~= want or type(got) ~= type(want) then\n"
    "    error((what or 'value') .. ': got ' .. fmt(got) .. ' (' .. type(got)\n"
    "      .. '), want ' .. fmt(want) .. ' (' .. type(want) .. ')', 2)\n"
    "  end\n"
    "end\n"
    /* load(text) -> doc, marks; fails the case on a load error */
    "function load(text, name)\n"
    "  local doc, marks = yaml.load_string(text, name or 't.yml')\n"
    "  if doc == nil then error('unexpected load error: ' .. tostring(marks), 2) end\n"
    "  return doc, marks\n"
    "end\n"
    /* fails(text, msg): the load must fail with exactly msg */
    "function fails(text, msg)\n"
    "  local doc, err = yaml.load_string(text, 't.yml')\n"
    "  if doc ~= nil then error('load should have failed: ' .. msg, 2) end\n"
    "  if err ~= msg then error('error: got ' .. fmt(err) .. ', want ' .. fmt(msg), 2) end\n"
    "end\n"
    "function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end\n"
    "function tmpfile(text)\n"
    "  local path = os.tmpname()\n"
    "  local f = assert(io.open(path, 'wb')) f:write(text) f:close()\n"
    "  return path\n"
    "end\n";

static void c_cases(lua_State *L)
{
    double d = -1;
    int top;

    top = lua_gettop(L);
    tg_yaml_push_null(L);
    report(lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
               lua_touserdata(L, -1) == NULL && lua_gettop(L) == top + 1,
           "tg_yaml_push_null pushes a NULL light userdata", "bad sentinel");
    lua_settop(L, top);

    lua_newtable(L);
    tg_yaml_register(L);
    lua_getfield(L, -1, "load_file");
    lua_getfield(L, -2, "load_string");
    lua_getfield(L, -3, "null");
    report(lua_tocfunction(L, -3) == tg_yaml_load_file &&
               lua_tocfunction(L, -2) == tg_yaml_load_string &&
               lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
               lua_touserdata(L, -1) == NULL && lua_gettop(L) == top + 4,
           "tg_yaml_register sets load_file, load_string, null",
           "bad registration");
    lua_settop(L, top);

    lua_pushcfunction(L, tg_yaml_load_string);
    lua_pushliteral(L, "a: 1");
    lua_call(L, 1, LUA_MULTRET);
    report(lua_gettop(L) == top + 2 && lua_istable(L, -2) && lua_istable(L, -1),
           "load_string returns exactly doc, marks (name optional)",
           "bad results");
    lua_settop(L, top);

    report(match_int(L, "0x1_F", 5, &d) && d == 31 &&
               match_int(L, "-0o17", 5, &d) && d == -15 &&
               match_int(L, "0b101", 5, &d) && d == 5 &&
               match_int(L, "+1_000", 6, &d) && d == 1000 &&
               match_int(L, "012", 3, &d) && d == 12 &&
               !match_int(L, "1_", 2, &d) && !match_int(L, "_1", 2, &d) &&
               !match_int(L, "0_1", 3, &d) && !match_int(L, "0x", 2, &d) &&
               !match_int(L, "-", 1, &d) && !match_int(L, "0xg", 3, &d) &&
               !match_int(L, "1.0", 3, &d) && lua_gettop(L) == top,
           "match_int follows js-yaml's integer rules", "match_int");

    report(match_float(L, "1.5", 3, &d) && d == 1.5 &&
               match_float(L, "-2e3", 4, &d) && d == -2000 &&
               match_float(L, "1.", 2, &d) && d == 1 &&
               match_float(L, ".5", 2, &d) && d == 0.5 &&
               match_float(L, "1_0.2_5", 7, &d) && d == 10.25 &&
               match_float(L, "+.INF", 5, &d) && isinf(d) && d > 0 &&
               match_float(L, ".NaN", 4, &d) && isnan(d) &&
               !match_float(L, "-.nan", 5, &d) && !match_float(L, "-.5", 3, &d) &&
               !match_float(L, "1e", 2, &d) && !match_float(L, "1.5_", 4, &d) &&
               !match_float(L, ".", 1, &d) && !match_float(L, "1e_1", 4, &d) &&
               !match_float(L, "0x10", 4, &d) && lua_gettop(L) == top,
           "match_float follows js-yaml's float rules", "match_float");
}

int main(void)
{
    lua_State *L = luaL_newstate();

    if (!L)
        return 2;
    luaL_openlibs(L);
    lua_newtable(L);
    tg_yaml_register(L);
    lua_setglobal(L, "yaml");
    if (luaL_dostring(L, prelude) != 0) {
        printf("not ok 1 - prelude: %s\n", lua_tostring(L, -1));
        return 1;
    }

    c_cases(L);

    check(L, "plain scalars resolve like js-yaml's core schema",
        "local d = load([[\n"
        "n1: null\nn2: Null\nn3: NULL\nn4: ~\nn5:\n"
        "b1: true\nb2: True\nb3: TRUE\nb4: false\nb5: False\nb6: FALSE\n"
        "i1: 42\ni2: -17\ni3: +5\ni4: 0x1F\ni5: 0o17\ni6: 1_000\ni7: 0\ni8: 0b11\n"
        "f1: 1.5\nf2: -2e3\nf3: .inf\nf4: -.inf\nf5: .nan\nf6: 6.02E+23\n"
        "s1: yes\ns2: no\ns3: on\ns4: nULL\ns5: 1.2.3\ns6: 0x\ns7: 1_\n"
        "s8: tRUE\ns9: 12abc\ns10: -.5\ns11: hello world\ns12: 2001-12-14\n"
        "port: 8080\n]])\n"
        "for _, k in ipairs{'n1','n2','n3','n4','n5'} do eq(d[k], null, k) end\n"
        "eq(d.b1, true) eq(d.b2, true) eq(d.b3, true)\n"
        "eq(d.b4, false) eq(d.b5, false) eq(d.b6, false)\n"
        "eq(d.i1, 42) eq(d.i2, -17) eq(d.i3, 5) eq(d.i4, 31) eq(d.i5, 15)\n"
        "eq(d.i6, 1000) eq(d.i7, 0) eq(d.i8, 3)\n"
        "eq(d.f1, 1.5) eq(d.f2, -2000) eq(d.f3, math.huge) eq(d.f4, -math.huge)\n"
        "assert(type(d.f5) == 'number' and d.f5 ~= d.f5, 'nan') eq(d.f6, 6.02e23)\n"
        "eq(d.s1, 'yes') eq(d.s2, 'no') eq(d.s3, 'on') eq(d.s4, 'nULL')\n"
        "eq(d.s5, '1.2.3') eq(d.s6, '0x') eq(d.s7, '1_') eq(d.s8, 'tRUE')\n"
        "eq(d.s9, '12abc') eq(d.s10, '-.5') eq(d.s11, 'hello world')\n"
        "eq(d.s12, '2001-12-14')\n"
        "eq(d.port, 8080, 'port')\n"
        "eq(count(d), 38, 'key count')\n");

    check(L, "quoted, literal and folded scalars stay strings",
        "local d = load([[\n"
        "a: \"true\"\nb: '8080'\nc: \"null\"\nd: ''\ne: |\n  42\nf: >\n  1.5\n"
        "g: \"~\"\n]])\n"
        "eq(d.a, 'true') eq(d.b, '8080') eq(d.c, 'null') eq(d.d, '')\n"
        "eq(d.e, '42\\n') eq(d.f, '1.5\\n') eq(d.g, '~')\n");

    check(L, "scalar keys are always their source text",
        "local d = load('1: a\\ntrue: b\\n~: c\\n0x10: d\\n\"q\": e\\n1.50: f\\n')\n"
        "eq(d['1'], 'a') eq(d['true'], 'b') eq(d['~'], 'c') eq(d['0x10'], 'd')\n"
        "eq(d.q, 'e') eq(d['1.50'], 'f') eq(d[1], nil) eq(count(d), 6)\n");

    check(L, "explicit tags are honoured",
        "local d = load([[\n"
        "a: !!str 8080\nb: !!int \"12\"\nc: !!float 1\nd: !!bool 'false'\n"
        "e: !!null ''\nf: !!str true\ng: ! 12\nh: !!float .inf\ni: !!int 0x10\n"
        "j: !!map {x: 1}\nk: !!seq [1]\n]])\n"
        "eq(d.a, '8080') eq(d.b, 12) eq(d.c, 1) eq(d.d, false) eq(d.e, null)\n"
        "eq(d.f, 'true') eq(d.g, '12') eq(d.h, math.huge) eq(d.i, 16)\n"
        "eq(d.j.x, 1) eq(d.k[1], 1)\n");

    check(L, "tag errors name the line",
        "fails('a: 1\\nb: !!int abc\\n', 't.yml:2:4: invalid !!int value \"abc\"')\n"
        "fails('a: !!bool yes\\n', 't.yml:1:4: invalid !!bool value \"yes\"')\n"
        "fails('a: !!float 0x10\\n', 't.yml:1:4: invalid !!float value \"0x10\"')\n"
        "fails('a: !!null x\\n', 't.yml:1:4: invalid !!null value \"x\"')\n"
        "fails('\\n\\na: !foo x\\n', 't.yml:3:4: unknown tag !foo')\n"
        "fails('a: !!binary aGk=\\n', 't.yml:1:4: unknown tag !!binary')\n"
        "fails('a: !!seq x\\n', 't.yml:1:4: tag !!seq cannot be used on a scalar')\n"
        "fails('a: !!map [1]\\n', 't.yml:1:4: tag !!map cannot be used on a sequence')\n"
        "fails('a: !!int {b: 1}\\n', 't.yml:1:4: tag !!int cannot be used on a mapping')\n");

    check(L, "nested mappings and sequences carry line marks",
        "local d, m = load([[\n"
        "# comment\n"
        "http:\n"
        "  port: 8080\n"
        "apiEndpoints:\n"
        "  api:\n"
        "    host: localhost\n"
        "    paths:\n"
        "      - /ip\n"
        "      - '/ip/*'\n"
        "pipelines:\n"
        "  - name: default\n"
        "    policies:\n"
        "      -\n"
        "        proxy: {x: 1}\n"
        "]])\n"
        "eq(getmetatable(m).__mode, 'k', 'marks are weak-keyed')\n"
        "eq(m[d].__line, 2, 'root line') eq(m[d].http, 2) eq(m[d].apiEndpoints, 4)\n"
        "eq(m[d].pipelines, 10)\n"
        "eq(d.http.port, 8080) eq(m[d.http].__line, 3) eq(m[d.http].port, 3)\n"
        "local api = d.apiEndpoints.api\n"
        "eq(m[api].__line, 6) eq(m[api].host, 6) eq(m[api].paths, 7)\n"
        "eq(#api.paths, 2) eq(api.paths[1], '/ip') eq(api.paths[2], '/ip/*')\n"
        "eq(m[api.paths].__line, 8) eq(m[api.paths][1], 8) eq(m[api.paths][2], 9)\n"
        "local p = d.pipelines\n"
        "eq(m[p].__line, 11) eq(m[p][1], 11) eq(p[1].name, 'default')\n"
        "eq(m[p[1]].name, 11) eq(m[p[1]].policies, 12)\n"
        "eq(m[p[1].policies][1], 14) eq(m[p[1].policies[1]].proxy, 14)\n"
        "eq(p[1].policies[1].proxy.x, 1) eq(m[p[1].policies[1].proxy].x, 14)\n");

    check(L, "null values keep their keys",
        "local d, m = load('log:\\nlevel: ~\\nflow: {a: , b: null}\\nlist: [~, 1]\\n')\n"
        "eq(d.log, null) eq(d.level, null) eq(d.flow.a, null) eq(d.flow.b, null)\n"
        "eq(count(d), 4) eq(count(d.flow), 2) eq(#d.list, 2) eq(d.list[1], null)\n"
        "eq(m[d].log, 1) eq(m[d].level, 2)\n"
        "local seen = {} for k in pairs(d) do seen[k] = true end assert(seen.log)\n");

    check(L, "anchors and aliases",
        "local d, m = load([[\n"
        "base: &b\n"
        "  host: example.com\n"
        "  ports: &p [80, 443]\n"
        "copy: *b\n"
        "ports: *p\n"
        "name: &n gateway\n"
        "again: *n\n"
        "num: &one 1\n"
        "*one : by-alias\n"
        "]])\n"
        "assert(d.copy == d.base, 'alias shares the table')\n"
        "assert(d.ports == d.base.ports, 'sequence alias shares the table')\n"
        "eq(d.copy.host, 'example.com') eq(d.ports[2], 443) eq(d.again, 'gateway')\n"
        "eq(d['1'], 'by-alias') eq(m[d.copy].host, 2)\n"
        "fails('a: *nope\\n', 't.yml:1:4: undefined alias \"nope\"')\n"
        "local r = load('r: &r [*r]\\n') assert(r.r[1] == r.r, 'recursive alias')\n");

    check(L, "merge keys add the keys the mapping does not set",
        "local d, m = load([[\n"
        "defaults: &d\n"
        "  timeout: 30\n"
        "  retries: 3\n"
        "extra: &e\n"
        "  retries: 9\n"
        "  tls: true\n"
        "one:\n"
        "  <<: *d\n"
        "  timeout: 5\n"
        "two:\n"
        "  timeout: 7\n"
        "  <<: [*d, *e]\n"
        "three:\n"
        "  <<: {a: 1}\n"
        "quoted:\n"
        "  '<<': x\n"
        "]])\n"
        "eq(d.one.timeout, 5) eq(d.one.retries, 3) eq(d.one['<<'], nil) eq(count(d.one), 2)\n"
        "eq(m[d.one].timeout, 9, 'own key line') eq(m[d.one].retries, 3, 'merged key line')\n"
        "eq(d.two.timeout, 7) eq(d.two.retries, 3, 'earlier source wins') eq(d.two.tls, true)\n"
        "eq(count(d.two), 3) eq(d.three.a, 1) eq(d.quoted['<<'], 'x')\n"
        "eq(d.defaults.timeout, 30, 'source untouched')\n"
        "fails('a:\\n  <<: 1\\n', 't.yml:2:3: merge key \"<<\" needs a mapping or a sequence of mappings')\n"
        "fails('a:\\n  <<: [{b: 1}, [2]]\\n', 't.yml:2:3: merge key \"<<\" needs a mapping or a sequence of mappings')\n"
        "fails('a:\\n  <<: {b: 1}\\n  b: 2\\n  b: 3\\n', 't.yml:4:3: duplicated mapping key \"b\"')\n");

    check(L, "duplicate keys are an error naming the line",
        "fails('a: 1\\nb: 2\\na: 3\\n', 't.yml:3:1: duplicated mapping key \"a\"')\n"
        "fails('x:\\n  y: 1\\n  \"y\": 2\\n', 't.yml:3:3: duplicated mapping key \"y\"')\n"
        "fails('{a: 1, a: 2}', 't.yml:1:8: duplicated mapping key \"a\"')\n");

    check(L, "syntax errors carry libyaml's line and context",
        "local doc, err = yaml.load_string('http:\\n  port: 1\\n bad: 2\\n', 'g.yml')\n"
        "eq(doc, nil)\n"
        "assert(err:match('^g%.yml:3:2: '), err)\n"
        "fails('a: b: c\\n', 't.yml:1:5: mapping values are not allowed in this context')\n"
        "fails('a: [1, 2\\n', 't.yml:2:1: did not find expected \\',\\' or \\']\\' (while parsing a flow sequence at line 1)')\n"
        "fails('a: 1\\n\\xff: 2\\n', 't.yml:2:1: invalid leading UTF-8 octet (#FF)')\n");

    check(L, "non-scalar keys are an error",
        "fails('? [a]\\n: 1\\n', 't.yml:1:3: mapping key must be a scalar')\n"
        "fails('{a: 1}: 2\\n', 't.yml:1:1: mapping key must be a scalar')\n"
        "fails('t: &t true\\n*t : 2\\n', 't.yml:2:1: mapping key must be a string')\n");

    check(L, "empty documents give an empty table",
        "for _, text in ipairs{'', '\\n\\n', '# only a comment\\n', '---\\n', '--- ~\\n'} do\n"
        "  local d, m = load(text)\n"
        "  eq(type(d), 'table', fmt(text)) eq(next(d), nil, fmt(text))\n"
        "  eq(type(m[d]), 'table', 'marks for the empty doc')\n"
        "end\n"
        "eq(load('--- 5\\n'), 5, 'scalar document')\n");

    check(L, "only one document is allowed",
        "fails('a: 1\\n---\\nb: 2\\n', 't.yml:2:1: only one YAML document is allowed')\n"
        "fails('a: 1\\n...\\n---\\nb: 2\\n', 't.yml:3:1: only one YAML document is allowed')\n"
        "fails('a: 1\\n--- # second\\n', 't.yml:2:1: only one YAML document is allowed')\n"
        "eq(load('---\\na: 1\\n...\\n').a, 1, 'explicit single document')\n");

    check(L, "JSON input",
        "local d, m = load('{\"http\": {\"port\": 8080}, \"a\": [1, \"x\"]}')\n"
        "eq(d.http.port, 8080) eq(#d.a, 2) eq(d.a[1], 1) eq(d.a[2], 'x')\n"
        "eq(m[d].http, 1) eq(m[d.a][2], 1)\n"
        "local j = load('{\"t\": true, \"n\": null, \"f\": -1.5e2, \"s\": \"true\"}')\n"
        "eq(j.t, true) eq(j.n, null) eq(j.f, -150) eq(j.s, 'true')\n");

    check(L, "load_file reads a file and names it in errors",
        "local path = tmpfile('serviceEndpoints:\\n  httpbin:\\n    url: http://x\\n')\n"
        "local d, m = yaml.load_file(path)\n"
        "os.remove(path)\n"
        "assert(d, m) eq(d.serviceEndpoints.httpbin.url, 'http://x')\n"
        "eq(m[d.serviceEndpoints.httpbin].url, 3)\n"
        "path = tmpfile('a: 1\\na: 2\\n')\n"
        "local doc, err = yaml.load_file(path)\n"
        "eq(doc, nil) eq(err, path .. ':2:1: duplicated mapping key \"a\"')\n"
        "os.remove(path)\n"
        "path = tmpfile('ok: 1\\nbad: \\xc3\\x28\\n')\n"
        "doc, err = yaml.load_file(path)\n"
        "os.remove(path)\n"
        "eq(doc, nil) eq(err, path .. ':2:7: invalid trailing UTF-8 octet (#28)')\n");

    check(L, "unreadable files give path: strerror",
        "local doc, err = yaml.load_file('/nonexistent/gateway.config.yml')\n"
        "eq(doc, nil) eq(err, '/nonexistent/gateway.config.yml: No such file or directory')\n"
        "doc, err = yaml.load_file('/')\n"
        "eq(doc, nil) eq(err, '/: Is a directory')\n");

    check(L, "nesting is limited to 256 levels",
        "local d = load(string.rep('[', 256) .. string.rep(']', 256))\n"
        "local depth = 0 while type(d) == 'table' do depth = depth + 1 d = d[1] end\n"
        "eq(depth, 256)\n"
        "fails(string.rep('[', 257) .. string.rep(']', 257), 't.yml:1:257: nesting deeper than 256 levels')\n"
        "fails(string.rep('[', 100000), 't.yml:1:257: nesting deeper than 256 levels')\n"
        "local block = {} for i = 1, 300 do block[i] = string.rep(' ', i - 1) .. 'k:' end\n"
        "fails(table.concat(block, '\\n') .. ' 1\\n', 't.yml:257:257: nesting deeper than 256 levels')\n");

    check(L, "large inputs",
        "local parts = {} for i = 1, 50000 do parts[i] = 'key' .. i .. ': [' .. i .. ', \"v' .. i .. '\"]' end\n"
        "local d, m = load(table.concat(parts, '\\n'))\n"
        "eq(count(d), 50000) eq(d.key49999[1], 49999) eq(d.key49999[2], 'v49999')\n"
        "eq(m[d].key50000, 50000) eq(m[d.key123][2], 123)\n"
        "local big = string.rep('x', 1000000)\n"
        "eq(#load('s: ' .. big).s, 1000000)\n"
        "eq(load('n: ' .. string.rep('9', 400)).n, math.huge, 'long integer')\n");

    check(L, "a key named __line does not clobber the start line",
        "local d, m = load('a: 1\\n__line: 7\\n')\n"
        "eq(d.__line, 7) eq(m[d].__line, 1) eq(m[d].a, 1)\n");

    check(L, "errors leave nothing behind and loading is repeatable",
        "for i = 1, 200 do\n"
        "  local doc, err = yaml.load_string('a: &x {b: [1, {c: *x}]}\\nd: [1, 2\\n', 'r.yml')\n"
        "  assert(doc == nil and err:match('^r%.yml:3:1: '), err)\n"
        "end\n"
        "collectgarbage() collectgarbage()\n"
        "local d, m = load('a: {b: 1}\\n') local inner = d.a d = nil\n"
        "collectgarbage() collectgarbage() assert(m[inner], 'marks kept while the table lives')\n");

    lua_close(L);
    printf("1..%d\n", count);
    if (failures)
        printf("# %d of %d failed\n", failures, count);
    return failures ? 1 : 0;
}
