/*
 * Tollgate YAML loader: YAML text -> Lua values plus line marks, through
 * a fast path for the common subset (fast_build) or libyaml events.
 * The contract is in yaml.h.
 *
 * Resource discipline: the libyaml parser and the one live event belong
 * to the public entry point (struct loader lives in its C frame).  All the
 * Lua building runs in build(), called through lua_pcall, and may raise
 * Lua errors freely (loader errors and out-of-memory alike): the entry
 * point always deletes the event and the parser after lua_pcall returns,
 * then turns an error into nil, message.
 */

/* fileno/fstat are POSIX; must precede every system header. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <yaml.h>

#include "yamlcfg.h"
#include "chunkcache.h"

#include <lauxlib.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_DEPTH 256
#define CORE_PREFIX "tag:yaml.org,2002:"

/* Where the YAML text comes from; exactly one of text and file is set.
 * Kept so reader errors (which only carry a byte offset) get a line. */
struct source {
    const char *name;       /* file name used in messages */
    const char *text;       /* string input */
    size_t len;
    FILE *file;             /* file input */
};

/* Line marks, compactly: one array of line numbers for the whole document
 * (struct lines, a userdata the marks table keeps), and for each table its
 * record's offset in a weak-keyed index (maps[tbl] or seqs[tbl]), and for
 * a mapping its keys in order (keys[tbl]).  A record is { start line, n,
 * line of item 1 .. n } (items: a mapping's keys in the order of
 * keys[tbl], or a sequence's items).  While a collection is open
 * its lines sit on the loader's stack (children close first, so each
 * record is copied out whole when its collection ends) and its offset is
 * -(stack position + 1).  marks[tbl] builds the documented per-table
 * marks from this on first use (marks_index). */
struct lines {
    int *v;
    size_t n, cap;
};

struct loader {
    yaml_parser_t parser;
    yaml_event_t event;     /* current event, owned while has_event */
    int has_event;
    struct source src;
    int anchors;            /* stack slots inside build(): anchor -> value */
    int seqs;               /* weak: sequence table -> record offset */
    int maps;               /* weak: mapping table -> record offset */
    int keys;               /* weak: mapping table -> its keys in order */
    int marks;              /* the weak-keyed marks table returned */
    struct lines *lines;    /* the finished records (the userdata's) */
    int *stk;               /* lines of the open collections; freed by run() */
    size_t sp, cap;
};

/* ------------------------------------------------------------------ */
/* Errors                                                               */

/* Raises "<name>:<line>:<column>: <message>" for a libyaml mark. */
static int fail(lua_State *L, struct loader *ld, yaml_mark_t mark,
                const char *fmt, ...)
{
    va_list ap;

    lua_pushfstring(L, "%s:%d:%d: ", ld->src.name, (int)mark.line + 1,
                    (int)mark.column + 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    return lua_error(L);
}

/* Turns a byte offset of the input into a 0-based line and column. */
static yaml_mark_t locate(const struct source *src, size_t offset)
{
    yaml_mark_t mark = { offset, 0, 0 };
    size_t i;
    int c;

    if (src->text) {
        for (i = 0; i < offset && i < src->len; i++) {
            if (src->text[i] == '\n') {
                mark.line++;
                mark.column = 0;
            } else {
                mark.column++;
            }
        }
    } else if (src->file && fseek(src->file, 0, SEEK_SET) == 0) {
        for (i = 0; i < offset && (c = getc(src->file)) != EOF; i++) {
            if (c == '\n') {
                mark.line++;
                mark.column = 0;
            } else {
                mark.column++;
            }
        }
    }
    return mark;
}

/* Raises the parser's error: problem at problem_mark, plus the context
 * ("while parsing a block mapping") and where that context started. */
static int fail_parse(lua_State *L, struct loader *ld)
{
    yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem ? p->problem : "unknown YAML error";
    char value[32];

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return fail(L, ld, p->mark, "out of memory while parsing YAML");
    case YAML_READER_ERROR:
        /* Reader errors carry only a byte offset (problem_mark is unset). */
        value[0] = '\0';
        if (p->problem_value != -1)
            snprintf(value, sizeof value, " (#%X)", (unsigned)p->problem_value);
        return fail(L, ld, locate(&ld->src, p->problem_offset), "%s%s",
                    problem, value);
    default:
        if (p->context)
            return fail(L, ld, p->problem_mark, "%s (%s at line %d)", problem,
                        p->context, (int)p->context_mark.line + 1);
        return fail(L, ld, p->problem_mark, "%s", problem);
    }
}

/* ------------------------------------------------------------------ */
/* Events                                                               */

/* Replaces the current event with the next one.  The previous event's
 * strings are freed, so callers copy what they need before calling. */
static yaml_event_t *next(lua_State *L, struct loader *ld)
{
    if (ld->has_event) {
        yaml_event_delete(&ld->event);
        ld->has_event = 0;
    }
    if (!yaml_parser_parse(&ld->parser, &ld->event))
        fail_parse(L, ld);
    ld->has_event = 1;
    return &ld->event;
}

static void expect(lua_State *L, struct loader *ld, yaml_event_type_t type)
{
    if (next(L, ld)->type != type)
        fail(L, ld, ld->event.start_mark, "unexpected YAML event");
}

/* ------------------------------------------------------------------ */
/* Tags                                                                 */

/* The short name of a core-schema tag ("int" for tag:yaml.org,2002:int),
 * or NULL for any other tag. */
static const char *core(const char *tag)
{
    size_t n = sizeof CORE_PREFIX - 1;

    if (tag && strncmp(tag, CORE_PREFIX, n) == 0)
        return tag + n;
    return NULL;
}

static int is_tag(const char *tag, const char *name)
{
    const char *c = core(tag);

    return c && strcmp(c, name) == 0;
}

/* Raises the error for a tag that cannot be used on this kind of node;
 * tags are shown the way they are written (!!int), not expanded. */
static int fail_tag(lua_State *L, struct loader *ld, const char *tag,
                    const char *kind)
{
    static const char *const known[] = {
        "str", "int", "float", "bool", "null", "map", "seq", "merge", NULL
    };
    const char *c = core(tag);
    int i;

    if (c) {
        lua_pushfstring(L, "!!%s", c);
        for (i = 0; known[i]; i++)
            if (strcmp(c, known[i]) == 0)
                return fail(L, ld, ld->event.start_mark,
                            "tag %s cannot be used on a %s",
                            lua_tostring(L, -1), kind);
    } else {
        lua_pushstring(L, tag);
    }
    return fail(L, ld, ld->event.start_mark, "unknown tag %s",
                lua_tostring(L, -1));
}

/* ------------------------------------------------------------------ */
/* Scalars (js-yaml core schema)                                        */

static int is_word(const char *s, size_t n, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == n && memcmp(s, *words, n) == 0)
            return 1;
    return 0;
}

static int match_null(const char *s, size_t n)
{
    static const char *const words[] = { "~", "null", "Null", "NULL", NULL };

    return n == 0 || is_word(s, n, words);
}

static int match_bool(const char *s, size_t n, int *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", NULL };
    static const char *const no[] = { "false", "False", "FALSE", NULL };

    if (is_word(s, n, yes))
        *out = 1;
    else if (is_word(s, n, no))
        *out = 0;
    else
        return 0;
    return 1;
}

static int digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return 99;
}

/* strtod of s without its underscores; s is already validated.  Goes
 * through a Lua buffer so numbers of any length need no malloc. */
static double decimal(lua_State *L, const char *s, size_t n)
{
    luaL_Buffer b;
    double d;
    size_t i;

    luaL_buffinit(L, &b);
    for (i = 0; i < n; i++)
        if (s[i] != '_')
            luaL_addchar(&b, s[i]);
    luaL_pushresult(&b);
    d = strtod(lua_tostring(L, -1), NULL);
    lua_pop(L, 1);
    return d;
}

/* js-yaml int: [-+]? then 0, 0b.., 0x.., 0o.. or decimal digits, with
 * underscores anywhere after the first digit but not at the end. */
static int match_int(lua_State *L, const char *s, size_t n, double *out)
{
    size_t i = 0;
    int neg = 0, base = 10, digits = 0, d;
    double v = 0;

    if (n == 0)
        return 0;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i++;
    }
    if (i < n && s[i] == '0') {
        if (i + 1 == n) {
            *out = 0;
            return 1;
        }
        i++;
        if (s[i] == 'b' || s[i] == 'x' || s[i] == 'o') {
            base = s[i] == 'b' ? 2 : s[i] == 'x' ? 16 : 8;
            i++;
        }
    }
    if (base == 10 && i < n && s[i] == '_')
        return 0;
    for (; i < n; i++) {
        if (s[i] == '_')
            continue;
        d = digit((unsigned char)s[i]);
        if (d >= base)
            return 0;
        v = v * base + d;
        digits = 1;
    }
    if (!digits || s[n - 1] == '_')
        return 0;
    /* Decimal goes through strtod for correct rounding past 2^53. */
    *out = base == 10 ? decimal(L, s, n) : neg ? -v : v;
    if (*out == 0)
        *out = 0;           /* js-yaml gives 0, not -0, for "-0" */
    return 1;
}

/* Length of the run of digits (and underscores if allowed) at s[i..n). */
static size_t span(const char *s, size_t n, size_t i, int underscore)
{
    size_t j = i;

    while (j < n && ((s[j] >= '0' && s[j] <= '9') || (underscore && s[j] == '_')))
        j++;
    return j - i;
}

/* js-yaml float:
 *   [-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?
 *   \.[0-9_]+([eE][-+]?[0-9]+)?
 *   [-+]?\.(inf|Inf|INF)
 *   \.(nan|NaN|NAN)
 * and not ending in '_'. */
static int match_float(lua_State *L, const char *s, size_t n, double *out)
{
    static const char *const inf[] = { "inf", "Inf", "INF", NULL };
    static const char *const nan[] = { "nan", "NaN", "NAN", NULL };
    size_t i = 0, k;
    int neg = 0;

    if (n == 0 || s[n - 1] == '_')
        return 0;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i++;
    }
    if (i < n && s[i] == '.') {
        if (is_word(s + i + 1, n - i - 1, inf)) {
            *out = neg ? -HUGE_VAL : HUGE_VAL;
            return 1;
        }
        if (i == 0 && is_word(s + 1, n - 1, nan)) {
            *out = NAN;
            return 1;
        }
        if (i != 0)
            return 0;
        i++;
        if ((k = span(s, n, i, 1)) == 0)
            return 0;
        i += k;
    } else {
        if (i >= n || s[i] < '0' || s[i] > '9')
            return 0;
        i += span(s, n, i, 1);
        if (i < n && s[i] == '.') {
            i++;
            i += span(s, n, i, 1);
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+'))
            i++;
        if ((k = span(s, n, i, 0)) == 0)
            return 0;
        i += k;
    }
    if (i != n)
        return 0;
    *out = decimal(L, s, n);
    return 1;
}

/* Pushes the value of the current (scalar) event. */
/* Pushes the value of an untagged plain scalar (js-yaml core schema). */
static void push_plain(lua_State *L, const char *s, size_t n)
{
    double d;
    int b;

    if (match_null(s, n))
        tg_yaml_push_null(L);
    else if (match_bool(s, n, &b))
        lua_pushboolean(L, b);
    else if (match_int(L, s, n, &d) || match_float(L, s, n, &d))
        lua_pushnumber(L, d);
    else
        lua_pushlstring(L, s, n);
}

static void push_scalar(lua_State *L, struct loader *ld)
{
    const yaml_event_t *ev = &ld->event;
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *kind;
    double d;
    int b;

    if (!tag) {
        /* Only plain scalars are resolved; quoted/block ones are text. */
        if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
            lua_pushlstring(L, s, n);
        else
            push_plain(L, s, n);
        return;
    }
    /* Explicit tags apply whatever the style, as in js-yaml. */
    kind = core(tag);
    /* js-yaml's !!js/regexp (Express Gateway configs use it for cors
     * origins): kept as its "/pattern/flags" text, which policies compile */
    if (strcmp(tag, "!") == 0 || is_tag(tag, "str") || is_tag(tag, "js/regexp")) {
        lua_pushlstring(L, s, n);
        return;
    }
    if (!kind || (strcmp(kind, "null") && strcmp(kind, "bool") &&
                  strcmp(kind, "int") && strcmp(kind, "float")))
        fail_tag(L, ld, tag, "scalar");
    if (strcmp(kind, "null") == 0 && match_null(s, n))
        tg_yaml_push_null(L);
    else if (strcmp(kind, "bool") == 0 && match_bool(s, n, &b))
        lua_pushboolean(L, b);
    else if (strcmp(kind, "int") == 0 && match_int(L, s, n, &d))
        lua_pushnumber(L, d);
    else if (strcmp(kind, "float") == 0 && match_float(L, s, n, &d))
        lua_pushnumber(L, d);
    else
        fail(L, ld, ev->start_mark, "invalid !!%s value \"%s\"", kind, s);
}

/* ------------------------------------------------------------------ */
/* Nodes                                                                */

static void load_node(lua_State *L, struct loader *ld, int depth);

/* Records the value at the top of the stack under an anchor name. */
static void anchor(lua_State *L, struct loader *ld, const yaml_char_t *name)
{
    if (!name)
        return;
    lua_pushstring(L, (const char *)name);
    lua_pushvalue(L, -2);
    lua_rawset(L, ld->anchors);
}

/* Pushes the value anchored as the current alias event names. */
static void push_alias(lua_State *L, struct loader *ld)
{
    const char *name = (const char *)ld->event.data.alias.anchor;

    lua_pushstring(L, name);
    lua_rawget(L, ld->anchors);
    if (lua_isnil(L, -1))
        fail(L, ld, ld->event.start_mark, "undefined alias \"%s\"", name);
}

/* ---- line records ---- */

static void stk_push(lua_State *L, struct loader *ld, size_t line)
{
    if (ld->sp == ld->cap) {
        size_t cap = ld->cap ? ld->cap * 2 : 256;
        int *v = realloc(ld->stk, cap * sizeof *v);
        if (!v)
            luaL_error(L, "out of memory");
        ld->stk = v;
        ld->cap = cap;
    }
    ld->stk[ld->sp++] = line > INT_MAX ? INT_MAX : (int)line;
}

/* Moves the open collection's lines (from stack position base) into the
 * records as { start, n, items }; returns the record's offset. */
static lua_Integer close_record(lua_State *L, struct loader *ld, size_t base)
{
    struct lines *ls = ld->lines;
    size_t items = ld->sp - base - 1, need = items + 2;

    if (ls->cap - ls->n < need) {
        size_t cap = ls->cap ? ls->cap : 1024;
        int *v;
        while (cap - ls->n < need)
            cap *= 2;
        v = realloc(ls->v, cap * sizeof *v);
        if (!v)
            luaL_error(L, "out of memory");
        ls->v = v;
        ls->cap = cap;
    }
    ls->v[ls->n] = ld->stk[base];
    ls->v[ls->n + 1] = (int)items;
    memcpy(ls->v + ls->n + 2, ld->stk + base + 1, items * sizeof(int));
    ld->sp = base;
    ls->n += need;
    return (lua_Integer)(ls->n - need);
}

/* Line i (0: the start line) of the record at offset off, open or not. */
static int record_line(struct loader *ld, lua_Integer off, int i)
{
    if (off < 0)
        return ld->stk[-off - 1 + i];
    return ld->lines->v[off + (i ? i + 1 : 0)];
}

/* Indexes mapping t (keys list at k) as open, its lines on the loader's
 * stack from position base. */
static void index_map(lua_State *L, struct loader *ld, int t, int k,
                      size_t base)
{
    lua_pushvalue(L, t);
    lua_pushinteger(L, -(lua_Integer)base - 1);
    lua_rawset(L, ld->maps);
    lua_pushvalue(L, t);
    lua_pushvalue(L, k);
    lua_rawset(L, ld->keys);
}

/* Closes the record of the collection t (stack position base) and indexes
 * it under its offset in index (ld->maps or ld->seqs). */
static void index_close(lua_State *L, struct loader *ld, int t, int index,
                        size_t base)
{
    lua_Integer off = close_record(L, ld, base);

    lua_pushvalue(L, t);
    lua_pushinteger(L, off);
    lua_rawset(L, index);
}

/* For the current collection start event: checks depth and tag, pushes
 * the new table, registers the anchor before the children are read (so
 * an alias inside may refer to the collection itself) and starts its line
 * record on the loader's stack. */
static void open_collection(lua_State *L, struct loader *ld, int depth,
                            const char *want)
{
    const yaml_event_t *ev = &ld->event;
    int seq = ev->type == YAML_SEQUENCE_START_EVENT;
    const char *tag = (const char *)(seq ? ev->data.sequence_start.tag
                                         : ev->data.mapping_start.tag);
    const yaml_char_t *name = seq ? ev->data.sequence_start.anchor
                                  : ev->data.mapping_start.anchor;

    if (depth > MAX_DEPTH)
        fail(L, ld, ev->start_mark, "nesting deeper than %d levels",
             MAX_DEPTH);
    if (tag && strcmp(tag, "!") != 0 && !is_tag(tag, want))
        fail_tag(L, ld, tag, seq ? "sequence" : "mapping");
    luaL_checkstack(L, 12, "YAML nesting");
    stk_push(L, ld, ev->start_mark.line + 1);
    lua_newtable(L);
    anchor(L, ld, name);
}

static void load_sequence(lua_State *L, struct loader *ld, int depth)
{
    int t, i = 0;
    size_t base = ld->sp;

    open_collection(L, ld, depth, "seq");
    t = lua_gettop(L);
    lua_pushvalue(L, t);
    lua_pushinteger(L, -(lua_Integer)base - 1);
    lua_rawset(L, ld->seqs);
    while (next(L, ld)->type != YAML_SEQUENCE_END_EVENT) {
        stk_push(L, ld, ld->event.start_mark.line + 1);
        load_node(L, ld, depth);
        lua_rawseti(L, t, ++i);
    }
    index_close(L, ld, t, ld->seqs, base);
}

/* Is the key event the merge key: plain untagged "<<", or !!merge? */
static int is_merge(const yaml_event_t *ev)
{
    if (ev->type != YAML_SCALAR_EVENT)
        return 0;
    if (ev->data.scalar.tag)
        return is_tag((const char *)ev->data.scalar.tag, "merge");
    return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           ev->data.scalar.length == 2 &&
           memcmp(ev->data.scalar.value, "<<", 2) == 0;
}

/* Pushes the string key for the current key event.  A scalar key is its
 * source text (its tag is still checked, and an anchor on it records the
 * resolved value); an alias key must name a string or a number. */
static void push_key(lua_State *L, struct loader *ld)
{
    const yaml_event_t *ev = &ld->event;

    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        /* A key is its text; the typed value is only needed for an anchor
         * (an alias may be used as a value) or to check a tag. */
        if (ev->data.scalar.anchor || ev->data.scalar.tag) {
            push_scalar(L, ld);
            anchor(L, ld, ev->data.scalar.anchor);
            lua_pop(L, 1);
        }
        lua_pushlstring(L, (const char *)ev->data.scalar.value,
                        ev->data.scalar.length);
        return;
    case YAML_ALIAS_EVENT:
        push_alias(L, ld);
        if (lua_type(L, -1) == LUA_TSTRING)
            return;
        if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_tostring(L, -1);        /* converts in place */
            return;
        }
        fail(L, ld, ev->start_mark, "mapping key must be a string");
        return;
    default:
        fail(L, ld, ev->start_mark, "mapping key must be a scalar");
    }
}

static int is_line_key(lua_State *L, int idx)
{
    size_t n;
    const char *s;

    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    s = lua_tolstring(L, idx, &n);
    return (n == 6 && memcmp(s, "__line", 6) == 0) ||
           (n == 6 && memcmp(s, "__keys", 6) == 0);
}

/* Is the value at idx a table built from a mapping / a sequence? */
static int is_collection(lua_State *L, struct loader *ld, int idx, int seq)
{
    int found;

    if (!lua_istable(L, idx))
        return 0;
    lua_pushvalue(L, idx);
    lua_rawget(L, ld->seqs);
    found = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return found == seq;
}

/* Copies into t (keys list k, count *nkeys) every key of mapping src that
 * t lacks, in src's order, with the line where src has it, and remembers
 * those keys in o so that a later explicit key may replace them without
 * being a duplicate (js-yaml's overridable keys). */
static void merge_from(lua_State *L, struct loader *ld, int t, int k, int o,
                       int src, int *nkeys)
{
    int sk, j, n, missing;
    lua_Integer off;

    if (lua_isnil(L, o)) {
        lua_newtable(L);
        lua_replace(L, o);
    }
    lua_pushvalue(L, src);
    lua_rawget(L, ld->maps);
    off = lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, src);
    lua_rawget(L, ld->keys);
    sk = lua_gettop(L);
    if (!lua_istable(L, sk)) {          /* not one of this document's */
        lua_pop(L, 1);
        return;
    }
    n = (int)lua_objlen(L, sk);
    for (j = 1; j <= n; j++) {
        lua_rawgeti(L, sk, j);          /* key */
        lua_pushvalue(L, -1);
        lua_rawget(L, t);
        missing = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (missing) {
            lua_pushvalue(L, -1);
            lua_pushvalue(L, -1);
            lua_rawget(L, src);
            lua_rawset(L, t);
            lua_pushvalue(L, -1);
            lua_pushboolean(L, 1);
            lua_rawset(L, o);
            stk_push(L, ld, (size_t)record_line(ld, off, j));
            lua_pushvalue(L, -1);
            lua_rawseti(L, k, ++*nkeys);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Applies the "<<" value at the top of the stack to t, then pops it. */
static void merge(lua_State *L, struct loader *ld, int t, int k, int o,
                  yaml_mark_t mark, int *nkeys)
{
    int v = lua_gettop(L), i;

    if (is_collection(L, ld, v, 0)) {
        merge_from(L, ld, t, k, o, v, nkeys);
    } else if (is_collection(L, ld, v, 1)) {
        /* Earlier mappings win: later ones only add missing keys. */
        for (i = 1;; i++) {
            lua_rawgeti(L, v, i);
            if (lua_isnil(L, -1))
                break;
            if (!is_collection(L, ld, -1, 0))
                fail(L, ld, mark, "merge key \"<<\" needs a mapping or a "
                     "sequence of mappings");
            merge_from(L, ld, t, k, o, lua_gettop(L), nkeys);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    } else {
        fail(L, ld, mark, "merge key \"<<\" needs a mapping or a sequence "
             "of mappings");
    }
    lua_pop(L, 1);
}

static void load_mapping(lua_State *L, struct loader *ld, int depth)
{
    int t, k, o, dup, existed, nkeys = 0, i, n;
    size_t base = ld->sp;
    yaml_mark_t mark;

    open_collection(L, ld, depth, "map");
    t = lua_gettop(L);
    lua_newtable(L);            /* the keys in order, kept on the stack */
    k = t + 1;
    index_map(L, ld, t, k, base);
    lua_pushnil(L);             /* overridable keys, made on first "<<" */
    o = t + 2;
    while (next(L, ld)->type != YAML_MAPPING_END_EVENT) {
        mark = ld->event.start_mark;
        if (is_merge(&ld->event)) {
            next(L, ld);
            load_node(L, ld, depth);
            merge(L, ld, t, k, o, mark, &nkeys);
            continue;
        }
        push_key(L, ld);
        lua_pushvalue(L, -1);
        lua_rawget(L, t);
        dup = !lua_isnil(L, -1);
        existed = dup;
        lua_pop(L, 1);
        if (dup) {
            if (!lua_isnil(L, o)) {
                lua_pushvalue(L, -1);
                lua_rawget(L, o);
                dup = lua_isnil(L, -1);
                lua_pop(L, 1);
            }
            if (dup)
                fail(L, ld, mark, "duplicated mapping key \"%s\"",
                     lua_tostring(L, -1));
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, o);
        }
        if (!existed) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, k, ++nkeys);
            stk_push(L, ld, mark.line + 1);
        } else {
            /* a merged key replaced: its line becomes this one's */
            for (i = 1, n = nkeys; i <= n; i++) {
                lua_rawgeti(L, k, i);
                if (lua_rawequal(L, -1, -2)) {
                    ld->stk[base + (size_t)i] = (int)(mark.line + 1);
                    n = 0;
                }
                lua_pop(L, 1);
            }
        }
        next(L, ld);
        load_node(L, ld, depth);
        lua_rawset(L, t);
    }
    index_close(L, ld, t, ld->maps, base);
    lua_pop(L, 2);
}

/* Pushes the value of the node whose first event is current; on return
 * the current event is the node's last (scalar, alias or end event). */
static void load_node(lua_State *L, struct loader *ld, int depth)
{
    switch (ld->event.type) {
    case YAML_ALIAS_EVENT:
        push_alias(L, ld);
        return;
    case YAML_SCALAR_EVENT:
        push_scalar(L, ld);
        anchor(L, ld, ld->event.data.scalar.anchor);
        return;
    case YAML_SEQUENCE_START_EVENT:
        load_sequence(L, ld, depth + 1);
        return;
    case YAML_MAPPING_START_EVENT:
        load_mapping(L, ld, depth + 1);
        return;
    default:
        fail(L, ld, ld->event.start_mark, "unexpected YAML event");
    }
}

/* ------------------------------------------------------------------ */
/* Entry points                                                         */

/* Pushes an empty table standing for an empty document, with marks (a
 * record with no items, as a sequence has: no key order to keep). */
static void push_empty(lua_State *L, struct loader *ld, yaml_mark_t mark)
{
    size_t base = ld->sp;

    lua_newtable(L);
    lua_pushvalue(L, -1);
    stk_push(L, ld, mark.line + 1);
    lua_pushinteger(L, close_record(L, ld, base));
    lua_rawset(L, ld->seqs);
}

/* ---- the marks table ---- */

static int lines_gc(lua_State *L)
{
    struct lines *ls = lua_touserdata(L, 1);

    free(ls->v);
    ls->v = NULL;
    ls->n = ls->cap = 0;
    return 0;
}

/* Line number at offset off of the records (upvalue 1: the lines); the
 * accessor config.lua uses with the index tables.  nil when out of range. */
static int marks_line(lua_State *L)
{
    struct lines *ls = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer off = luaL_checkinteger(L, 1);

    if (off < 0 || (size_t)off >= ls->n)
        return 0;
    lua_pushinteger(L, ls->v[off]);
    return 1;
}

/* marks[tbl] on first use (the metatable's __index; upvalues: lines, maps,
 * seqs): builds the documented per-table marks, { __line, key = line...,
 * __keys = keys in order } for a mapping, { __line, line of item i... }
 * for a sequence, and keeps it in marks. */
static int marks_index(lua_State *L)
{
    struct lines *ls = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer off;
    int i, n, seq;

    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(4));     /* 3: the keys, or nil */
    seq = lua_isnil(L, 3);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(seq ? 3 : 2));
    if (!lua_isnumber(L, -1))
        return 0;
    off = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (off < 0 || (size_t)off + 2 > ls->n)
        return 0;
    n = ls->v[off + 1];
    lua_createtable(L, seq ? n : 0, seq ? 1 : n + 2);   /* 4 */
    lua_pushinteger(L, ls->v[off]);
    lua_setfield(L, 4, "__line");
    for (i = 1; i <= n; i++) {
        if (seq) {
            lua_pushinteger(L, ls->v[off + 1 + i]);
            lua_rawseti(L, 4, i);
            continue;
        }
        lua_rawgeti(L, 3, i);
        if (is_line_key(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushinteger(L, ls->v[off + 1 + i]);
        lua_rawset(L, 4);
    }
    if (!seq) {
        lua_pushvalue(L, 3);
        lua_setfield(L, 4, "__keys");
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 4);
    lua_rawset(L, 1);
    return 1;
}

/* Pushes a new weak-keyed table with room for n keys. */
static void push_weak(lua_State *L, int n)
{
    lua_createtable(L, 0, n);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
}

/* Makes the tables a load fills (anchors, the three indexes, the records,
 * marks) in stack slots 2-7.  nlines, when known, sizes the indexes (a
 * config has fewer mappings than lines, and fewer sequences than half of
 * them: no index grows by rehashing every table it has). */
static void setup(lua_State *L, struct loader *ld, size_t nlines)
{
    int lines, mt;
    int n = nlines > 1000000 ? 1000000 : (int)nlines;

    lua_settop(L, 1);
    lua_newtable(L);
    ld->anchors = lua_gettop(L);
    push_weak(L, n / 2);
    ld->seqs = lua_gettop(L);
    push_weak(L, n - n / 4);
    ld->maps = lua_gettop(L);
    push_weak(L, n - n / 4);
    ld->keys = lua_gettop(L);
    ld->lines = lua_newuserdata(L, sizeof *ld->lines);
    memset(ld->lines, 0, sizeof *ld->lines);
    lines = lua_gettop(L);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lines_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, lines);
    /* marks: weak-keyed, filled on demand by marks_index; its metatable
     * also carries the compact form (maps, seqs, keys, line) for config.lua */
    lua_newtable(L);
    ld->marks = lua_gettop(L);
    lua_createtable(L, 0, 7);
    mt = lua_gettop(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, mt, "__mode");
    lua_pushvalue(L, lines);
    lua_pushvalue(L, ld->maps);
    lua_pushvalue(L, ld->seqs);
    lua_pushvalue(L, ld->keys);
    lua_pushcclosure(L, marks_index, 4);
    lua_setfield(L, mt, "__index");
    lua_pushvalue(L, lines);
    lua_pushcclosure(L, marks_line, 1);
    lua_setfield(L, mt, "line");
    lua_pushvalue(L, ld->maps);
    lua_setfield(L, mt, "maps");
    lua_pushvalue(L, ld->seqs);
    lua_setfield(L, mt, "seqs");
    lua_pushvalue(L, ld->keys);
    lua_setfield(L, mt, "keys");
    lua_setmetatable(L, ld->marks);
}

/* lua_pcall'd with the loader as light userdata; returns doc, marks. */
static int build(lua_State *L)
{
    struct loader *ld = lua_touserdata(L, 1);
    yaml_mark_t mark;

    setup(L, ld, 0);
    expect(L, ld, YAML_STREAM_START_EVENT);
    if (next(L, ld)->type == YAML_STREAM_END_EVENT) {
        push_empty(L, ld, ld->event.start_mark);
    } else {
        if (ld->event.type != YAML_DOCUMENT_START_EVENT)
            fail(L, ld, ld->event.start_mark, "unexpected YAML event");
        mark = ld->event.start_mark;
        next(L, ld);
        load_node(L, ld, 0);
        expect(L, ld, YAML_DOCUMENT_END_EVENT);
        if (next(L, ld)->type == YAML_DOCUMENT_START_EVENT)
            fail(L, ld, ld->event.start_mark,
                 "only one YAML document is allowed");
        if (ld->event.type != YAML_STREAM_END_EVENT)
            fail(L, ld, ld->event.start_mark, "unexpected YAML event");
        /* A document that is only null ("---", "~") counts as empty. */
        if (lua_type(L, -1) == LUA_TLIGHTUSERDATA &&
            lua_touserdata(L, -1) == NULL) {
            lua_pop(L, 1);
            push_empty(L, ld, mark);
        }
    }
    lua_pushvalue(L, ld->marks);
    return 2;
}

/* ------------------------------------------------------------------ */
/* The fast path                                                        */

/* Most configs use a small part of YAML: block mappings and sequences,
 * one-line plain and quoted scalars, one-line flow collections, comments,
 * in printable ASCII.  fast_build() reads that part straight from the
 * text into the same tables and line records as the event loader, several
 * times faster than libyaml's scanner.  On anything else, and on every
 * error (so that messages stay libyaml's), it gives up (raises the
 * unsupported sentinel) and the text is loaded again through libyaml.  It
 * accepts only what it is sure libyaml reads the same way; spec/04-reload
 * compares the two on every config in the repository. */

#define FAST_MAX_DEPTH 64
#define FAST_MAX_KEY 1000   /* libyaml: a simple key is at most 1024 chars */

struct fast {
    const char *s, *end;    /* the text */
    const char *ls, *le;    /* the current line: start, end ('\n' or end) */
    const char *p;          /* where its content starts (or a compact
                               mapping's first key, in "- key: value") */
    int ind;                /* column of p; -1 at the end of the text */
    int line;               /* 1-based number of the current line */
};

static char fast_unsupported;

static void give_up(lua_State *L)
{
    lua_pushlightuserdata(L, &fast_unsupported);
    lua_error(L);
}

static int fast_eol(const struct fast *f, const char *q)
{
    return q >= f->le || (*q == '#' && q[-1] == ' ');
}

static const char *skip_spaces(const struct fast *f, const char *q)
{
    while (q < f->le && *q == ' ')
        q++;
    return q;
}

/* Moves to the next line with content (blank and comment lines skipped). */
static void fast_advance(lua_State *L, struct fast *f)
{
    const char *q = !f->le ? f->s : f->le < f->end ? f->le + 1 : f->end;
    const char *c;

    for (;;) {
        if (q >= f->end) {
            f->ls = f->le = f->p = f->end;
            f->ind = -1;
            return;
        }
        f->line++;
        f->ls = q;
        f->le = memchr(q, '\n', (size_t)(f->end - q));
        if (!f->le)
            f->le = f->end;
        c = q;
        while (c < f->le && *c == ' ')
            c++;
        if (c < f->le && *c != '#')
            break;
        q = f->le < f->end ? f->le + 1 : f->end;
    }
    /* directives, document markers */
    if (c == q && (*c == '%' || (f->le - c >= 3 && (memcmp(c, "---", 3) == 0 ||
                                                   memcmp(c, "...", 3) == 0))))
        give_up(L);
    f->p = c;
    f->ind = (int)(c - q);
}

static int is_dash_entry(const struct fast *f, const char *q)
{
    return *q == '-' && (q + 1 >= f->le || q[1] == ' ');
}

/* A plain scalar at q (flow: inside a flow collection): sets *a, *b to its
 * text (trailing spaces dropped) and returns where it stops: the end of the
 * line, a comment, the ':' of ": " (or ':' at the end of the line), or in
 * flow a flow indicator. */
static const char *scan_plain(lua_State *L, const struct fast *f,
                              const char *q, int flow, const char **a,
                              const char **b)
{
    const char *e;
    int c = (unsigned char)*q;

    if (q >= f->le || strchr("-?:,[]{}#&*!|>'\"%@`", c)) {
        /* "-1" and "-x": a dash that starts a plain scalar */
        if (!(c == '-' && q + 1 < f->le &&
              ((q[1] >= '0' && q[1] <= '9') || (q[1] >= 'a' && q[1] <= 'z') ||
               (q[1] >= 'A' && q[1] <= 'Z') || q[1] == '.')))
            give_up(L);
    }
    *a = q;
    for (; q < f->le; q++) {
        c = (unsigned char)*q;
        if (c == ':') {
            if (q + 1 >= f->le || q[1] == ' ')
                break;
            if (flow)
                give_up(L);
        } else if (c == '#' && q[-1] == ' ') {
            break;
        } else if (flow && (c == ',' || c == '[' || c == ']' || c == '{' ||
                            c == '}')) {
            break;
        }
    }
    for (e = q; e > *a && e[-1] == ' '; e--)
        ;
    *b = e;
    return q;
}

/* Pushes the quoted scalar at q (single: '' is a quote; double: no escapes)
 * and returns the position after its closing quote. */
static const char *scan_quoted(lua_State *L, const struct fast *f,
                               const char *q)
{
    char quote = *q;
    const char *a = q + 1, *c;
    luaL_Buffer buf;

    for (c = a; c < f->le; c++) {
        if (quote == '"' && *c == '\\')
            give_up(L);
        if (*c == quote) {
            if (quote == '\'' && c + 1 < f->le && c[1] == '\'')
                break;          /* an escaped quote: the slow way below */
            lua_pushlstring(L, a, (size_t)(c - a));
            return c + 1;
        }
    }
    if (c >= f->le)
        give_up(L);             /* runs over lines */
    luaL_buffinit(L, &buf);
    for (c = a; c < f->le; c++) {
        if (*c == '\'') {
            if (c + 1 < f->le && c[1] == '\'') {
                luaL_addchar(&buf, '\'');
                c++;
                continue;
            }
            luaL_pushresult(&buf);
            return c + 1;
        }
        luaL_addchar(&buf, *c);
    }
    give_up(L);
    return NULL;
}

/* The end of a quoted scalar at q, without pushing it (for lookahead). */
static const char *skip_quoted(lua_State *L, const struct fast *f,
                               const char *q)
{
    char quote = *q;

    for (q++; q < f->le; q++) {
        if (*q == quote) {
            if (quote == '\'' && q + 1 < f->le && q[1] == '\'') {
                q++;
                continue;
            }
            return q + 1;
        }
    }
    give_up(L);
    return NULL;
}

static const char *fast_flow(lua_State *L, struct loader *ld, struct fast *f,
                             const char *q, int depth);

/* A plain mapping key a..b, scanned up to q, which must be its ':': pushed.
 * An empty or over-long key, or the merge key "<<", is left to libyaml. */
static void fast_plain_key(lua_State *L, const struct fast *f, const char *q,
                           const char *a, const char *b)
{
    if (q >= f->le || *q != ':' || b == a || b - a > FAST_MAX_KEY ||
        (b - a == 2 && a[0] == '<' && a[1] == '<'))
        give_up(L);
    lua_pushlstring(L, a, (size_t)(b - a));
}

/* The key on the stack's top becomes mapping t's key number ++*n in its key
 * list k, with its line mark; a duplicate is left to libyaml (its message). */
static void fast_add_key(lua_State *L, struct loader *ld, const struct fast *f,
                         int t, int k, int *n)
{
    lua_pushvalue(L, -1);
    lua_rawget(L, t);
    if (!lua_isnil(L, -1))
        give_up(L);
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, k, ++*n);
    stk_push(L, ld, (size_t)f->line);
}

/* Pushes a flow sequence or mapping, all on the current line, at q. */
static const char *fast_flow_collection(lua_State *L, struct loader *ld,
                                        struct fast *f, const char *q,
                                        int depth)
{
    int seq = *q == '[', t, k = 0, n = 0;
    char close = seq ? ']' : '}';
    size_t base = ld->sp;
    const char *a, *b;

    if (depth > FAST_MAX_DEPTH)
        give_up(L);
    luaL_checkstack(L, 8, "YAML nesting");
    stk_push(L, ld, (size_t)f->line);
    lua_createtable(L, seq ? 2 : 0, seq ? 0 : 2); /* most have 1-2 */
    t = lua_gettop(L);
    if (seq) {
        lua_pushvalue(L, t);
        lua_pushinteger(L, -(lua_Integer)base - 1);
        lua_rawset(L, ld->seqs);
    } else {
        lua_createtable(L, 2, 0);
        k = t + 1;
        index_map(L, ld, t, k, base);
    }
    q = skip_spaces(f, q + 1);
    if (q < f->le && *q == close) {
        q++;
    } else {
        for (;;) {
            if (q >= f->le)
                give_up(L);
            if (seq) {
                stk_push(L, ld, (size_t)f->line);
                q = fast_flow(L, ld, f, q, depth + 1);
                lua_rawseti(L, t, ++n);
            } else {
                if (*q == '\'' || *q == '"') {
                    q = scan_quoted(L, f, q);
                    if (q >= f->le || *q != ':')
                        give_up(L);
                } else {
                    q = scan_plain(L, f, q, 1, &a, &b);
                    fast_plain_key(L, f, q, a, b);
                }
                if (q + 1 >= f->le || q[1] != ' ')
                    give_up(L);
                fast_add_key(L, ld, f, t, k, &n);
                q = skip_spaces(f, q + 1);
                if (q >= f->le || *q == ',' || *q == '}')
                    give_up(L);
                q = fast_flow(L, ld, f, q, depth + 1);
                lua_rawset(L, t);
            }
            q = skip_spaces(f, q);
            if (q >= f->le)
                give_up(L);
            if (*q == close) {
                q++;
                break;
            }
            if (*q != ',')
                give_up(L);
            q = skip_spaces(f, q + 1);
            if (q < f->le && *q == close)
                give_up(L);             /* a trailing comma */
        }
    }
    index_close(L, ld, t, seq ? ld->seqs : ld->maps, base);
    if (!seq)
        lua_pop(L, 1);
    return q;
}

/* Pushes a node inside a flow collection. */
static const char *fast_flow(lua_State *L, struct loader *ld, struct fast *f,
                             const char *q, int depth)
{
    const char *a, *b;

    if (*q == '[' || *q == '{')
        return fast_flow_collection(L, ld, f, q, depth);
    if (*q == '\'' || *q == '"')
        return scan_quoted(L, f, q);
    q = scan_plain(L, f, q, 1, &a, &b);
    if ((q < f->le && *q == ':') || b == a)
        give_up(L);
    push_plain(L, a, (size_t)(b - a));
    return q;
}

/* Pushes the one-line node at q of a block context (a mapping value or a
 * sequence item), checks that only a comment follows, and moves to the
 * next line, which must not be more indented than ind. */
static void fast_inline(lua_State *L, struct loader *ld, struct fast *f,
                        const char *q, int ind, int depth)
{
    const char *a, *b;

    if (*q == '[' || *q == '{') {
        q = fast_flow_collection(L, ld, f, q, depth);
    } else if (*q == '\'' || *q == '"') {
        q = scan_quoted(L, f, q);
    } else {
        q = scan_plain(L, f, q, 0, &a, &b);
        if (q < f->le && *q == ':')
            give_up(L);                 /* "a: b: c" */
        push_plain(L, a, (size_t)(b - a));
    }
    q = skip_spaces(f, q);
    if (!fast_eol(f, q))
        give_up(L);
    fast_advance(L, f);
    if (f->ind > ind)
        give_up(L);                     /* a scalar over several lines */
}

static void fast_block_seq(lua_State *L, struct loader *ld, struct fast *f,
                           int ind, int indentless, int depth);
static void fast_block_map(lua_State *L, struct loader *ld, struct fast *f,
                           int ind, int depth);

/* Pushes the block node whose first line is the current one. */
static void fast_block(lua_State *L, struct loader *ld, struct fast *f,
                       int depth)
{
    if (is_dash_entry(f, f->p))
        fast_block_seq(L, ld, f, f->ind, 0, depth);
    else
        fast_block_map(L, ld, f, f->ind, depth);
}

static void fast_block_map(lua_State *L, struct loader *ld, struct fast *f,
                           int ind, int depth)
{
    int t, k, nkeys = 0;
    size_t base = ld->sp;
    const char *q, *a, *b;

    if (depth > FAST_MAX_DEPTH)
        give_up(L);
    luaL_checkstack(L, 8, "YAML nesting");
    stk_push(L, ld, (size_t)f->line);
    lua_createtable(L, 0, 2);   /* most mappings have 1-2 keys */
    t = lua_gettop(L);
    lua_createtable(L, 2, 0);
    k = t + 1;
    index_map(L, ld, t, k, base);
    for (;;) {
        q = f->p;
        if (*q == '\'' || *q == '"') {
            q = scan_quoted(L, f, q);
            if (q >= f->le || *q != ':' || (q + 1 < f->le && q[1] != ' '))
                give_up(L);
        } else {
            if (is_dash_entry(f, q))
                give_up(L);
            q = scan_plain(L, f, q, 0, &a, &b);
            fast_plain_key(L, f, q, a, b);
        }
        fast_add_key(L, ld, f, t, k, &nkeys);
        q = skip_spaces(f, q + 1);
        if (fast_eol(f, q)) {
            /* the value is on the next lines, or null */
            fast_advance(L, f);
            if (f->ind > ind)
                fast_block(L, ld, f, depth + 1);
            else if (f->ind == ind && is_dash_entry(f, f->p))
                fast_block_seq(L, ld, f, ind, 1, depth + 1);
            else
                tg_yaml_push_null(L);
        } else {
            fast_inline(L, ld, f, q, ind, depth + 1);
        }
        lua_rawset(L, t);
        if (f->ind < ind)
            break;
        if (f->ind > ind)
            give_up(L);
    }
    index_close(L, ld, t, ld->maps, base);
    lua_pop(L, 1);
}

static void fast_block_seq(lua_State *L, struct loader *ld, struct fast *f,
                           int ind, int indentless, int depth)
{
    int t, n = 0;
    size_t base = ld->sp;
    const char *q, *a, *b;

    if (depth > FAST_MAX_DEPTH)
        give_up(L);
    luaL_checkstack(L, 8, "YAML nesting");
    stk_push(L, ld, (size_t)f->line);
    lua_createtable(L, 2, 0);
    t = lua_gettop(L);
    lua_pushvalue(L, t);
    lua_pushinteger(L, -(lua_Integer)base - 1);
    lua_rawset(L, ld->seqs);
    for (;;) {
        q = skip_spaces(f, f->p + 1);
        if (fast_eol(f, q)) {
            /* the item is on the next lines (a null item: libyaml) */
            fast_advance(L, f);
            if (f->ind <= ind)
                give_up(L);
            stk_push(L, ld, (size_t)f->line);
            fast_block(L, ld, f, depth + 1);
        } else if (is_dash_entry(f, q)) {
            give_up(L);                 /* "- - x" */
        } else {
            /* "- key: ..." starts a mapping at the key's column */
            int map = 0;
            if (*q == '\'' || *q == '"') {
                const char *e = skip_quoted(L, f, q);
                map = e < f->le && *e == ':' && (e + 1 >= f->le || e[1] == ' ');
            } else if (*q != '[' && *q != '{') {
                const char *e = scan_plain(L, f, q, 0, &a, &b);
                map = e < f->le && *e == ':';
            }
            stk_push(L, ld, (size_t)f->line);
            if (map) {
                f->p = q;
                f->ind = (int)(q - f->ls);
                fast_block_map(L, ld, f, f->ind, depth + 1);
            } else {
                fast_inline(L, ld, f, q, ind, depth + 1);
            }
        }
        lua_rawseti(L, t, ++n);
        if (f->ind < ind)
            break;
        if (f->ind > ind)
            give_up(L);
        if (!is_dash_entry(f, f->p)) {
            if (indentless)
                break;
            give_up(L);
        }
    }
    index_close(L, ld, t, ld->seqs, base);
}

/* lua_pcall'd like build(): the fast path over ld->src.text. */
static int fast_build(lua_State *L)
{
    struct loader *ld = lua_touserdata(L, 1);
    struct fast f;
    const unsigned char *c, *e;
    size_t nlines = 1;

    /* printable ASCII and newlines only (no tabs, CR, UTF-8, controls) */
    c = (const unsigned char *)ld->src.text;
    e = c + ld->src.len;
    for (; c < e; c++) {
        if (*c < 0x20 || *c > 0x7e) {
            if (*c != '\n')
                give_up(L);
            nlines++;
        }
    }
    setup(L, ld, nlines);
    memset(&f, 0, sizeof f);
    f.s = ld->src.text;
    f.end = f.s + ld->src.len;
    f.le = NULL;                        /* before the first line */
    fast_advance(L, &f);
    if (f.ind < 0)
        give_up(L);                     /* empty: libyaml's marks */
    fast_block(L, ld, &f, 1);
    if (f.ind >= 0)
        give_up(L);
    lua_pushvalue(L, ld->marks);
    return 2;
}

/* Runs build() over an initialised parser whose input is set, then frees
 * the parser and the last event whatever happened.  Expects build and
 * the loader pointer pushed; leaves doc, marks or the error message. */
static int run(lua_State *L, struct loader *ld)
{
    int status = lua_pcall(L, 1, 2, 0);

    free(ld->stk);
    ld->stk = NULL;
    if (ld->has_event) {
        yaml_event_delete(&ld->event);
        ld->has_event = 0;
    }
    yaml_parser_delete(&ld->parser);
    return status;
}

/* Replaces the error message at the top with nil, message. */
static int result(lua_State *L, int status)
{
    if (status != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
    }
    return 2;
}

int tg_yaml_load_string(lua_State *L)
{
    struct loader ld;
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "<string>");
    const char *mode = luaL_optstring(L, 3, "");
    int status;

    luaL_checkstack(L, 4, "YAML loader");
    if (strcmp(mode, "libyaml") != 0) {
        memset(&ld, 0, sizeof ld);
        ld.src.name = name;
        ld.src.text = text;
        ld.src.len = len;
        lua_pushcfunction(L, fast_build);
        lua_pushlightuserdata(L, &ld);
        status = lua_pcall(L, 1, 2, 0);
        free(ld.stk);
        if (status == 0)
            return 2;
        if (strcmp(mode, "fast") == 0) {
            /* for tests: was the fast path taken? */
            if (lua_touserdata(L, -1) == &fast_unsupported) {
                lua_pop(L, 1);
                lua_pushliteral(L, "unsupported");
            }
            return result(L, status);
        }
        lua_pop(L, 1);
    }
    memset(&ld, 0, sizeof ld);
    ld.src.name = name;
    ld.src.text = text;
    ld.src.len = len;
    /* Everything that may raise comes before the parser exists. */
    lua_pushcfunction(L, build);
    lua_pushlightuserdata(L, &ld);
    if (!yaml_parser_initialize(&ld.parser)) {
        lua_pop(L, 2);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: out of memory", name);
        return 2;
    }
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)text,
                                 len);
    return result(L, run(L, &ld));
}

int tg_yaml_load_file(lua_State *L)
{
    struct loader ld;
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    FILE *file;
    int status, err = 0;

    memset(&ld, 0, sizeof ld);
    luaL_checkstack(L, 4, "YAML loader");
    lua_pushcfunction(L, build);
    lua_pushlightuserdata(L, &ld);
    file = fopen(path, "rb");
    if (!file) {
        err = errno;
    } else if (fstat(fileno(file), &st) == 0 && S_ISDIR(st.st_mode)) {
        err = EISDIR;   /* fopen succeeds on a directory, reads fail */
        fclose(file);
    } else if (!yaml_parser_initialize(&ld.parser)) {
        err = ENOMEM;
        fclose(file);
    }
    if (err) {
        lua_pop(L, 2);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(err));
        return 2;
    }
    ld.src.name = path;
    ld.src.file = file;
    yaml_parser_set_input_file(&ld.parser, file);
    status = run(L, &ld);
    fclose(file);
    return result(L, status);
}

void tg_yaml_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, NULL);
}

void tg_yaml_register(lua_State *L)
{
    lua_pushcfunction(L, tg_yaml_load_file);
    lua_setfield(L, -2, "load_file");
    lua_pushcfunction(L, tg_yaml_load_string);
    lua_setfield(L, -2, "load_string");
    lua_pushcfunction(L, tg_chunk_loadfile);
    lua_setfield(L, -2, "loadfile");
    tg_yaml_push_null(L);
    lua_setfield(L, -2, "null");
}

/* "tollgate.cyaml" as a Lua C module, for Lua running outside the binary
 * (lua/tollgate/cyaml.lua loads it from libtollgate.so). */
int luaopen_tollgate_cyaml(lua_State *L);

int luaopen_tollgate_cyaml(lua_State *L)
{
    lua_newtable(L);
    tg_yaml_register(L);
    return 1;
}
