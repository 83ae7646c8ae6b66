/*
 * Tollgate YAML loader: reads gateway configuration files (YAML, as
 * Express Gateway's js-yaml accepts them) into Lua values, together with
 * the line numbers needed to report config errors as file:line: key.
 */
#ifndef TG_YAML_H
#define TG_YAML_H

#include <lua.h>

/*
 * Value mapping (first and only document of the stream):
 *   mapping   -> table with string keys (every scalar key is its source
 *                text, so "1:" gives key "1"; non-scalar keys are errors)
 *   sequence  -> array 1..n
 *   plain scalar (unquoted, untagged), js-yaml core schema:
 *                null, Null, NULL, ~, empty -> the null sentinel
 *                true/True/TRUE/false/False/FALSE -> boolean
 *                integers (sign, 0x, 0o, 0b, underscores) -> number
 *                floats (1.5, -2e3, .inf, -.inf, .nan) -> number
 *                anything else -> string
 *   quoted, literal and folded scalars -> string
 *   tags !!str !!int !!float !!bool !!null (and !, !!map, !!seq on the
 *   matching node kind) are honoured; any other tag, or a value that does
 *   not fit its tag, is an error.
 * Anchors/aliases are resolved (an alias to a collection yields the same
 * table); the merge key "<<" (a mapping or a sequence of mappings) adds
 * the keys the mapping does not set itself, earlier sources winning.
 * Duplicate keys in one mapping, more than one document, and nesting
 * deeper than 256 collections are errors.  An empty stream (or a document
 * that is only null) gives an empty table.
 *
 * marks: a table with weak keys; for every table made from a mapping or
 * sequence, marks[tbl] is a table of 1-based line numbers:
 *   marks[tbl].__line  line where the mapping/sequence starts
 *   marks[tbl][key]    line of that key (mappings; for keys brought in by
 *                      "<<", the line where the key is written); a key
 *                      literally named "__line" is not recorded
 *   marks[tbl][i]      line of item i (sequences)
 *   marks[tbl].__keys  a mapping's keys in declaration order (merged keys
 *                      after its own, in their source's order), since Lua
 *                      tables forget the order
 * These per-table marks are built on first use: the loader keeps the
 * lines compactly (one array of line numbers for the document, one index
 * entry per table), and the marks table's metatable carries that form for
 * callers that look up many tables (config.lua):
 *   maps[tbl]   a mapping's record offset
 *   seqs[tbl]   a sequence's record offset (also the empty document's)
 *   keys[tbl]   a mapping's keys in order (the same list as __keys)
 *   line(off)   the number at offset off of the records
 * A record is: start line, item count n, then the line of each item (a
 * mapping's keys in the order of maps[tbl], or a sequence's items).
 *
 * Errors are returned, never raised (except for bad argument types):
 *   nil, "<name>:<line>:<column>: <problem>"   syntax and loader errors
 *   nil, "<path>: <strerror>"                   file cannot be opened
 */

/* Lua: load_file(path) -> doc, marks | nil, err */
int tg_yaml_load_file(lua_State *L);

/* Lua: load_string(text [, name [, how]]) -> doc, marks | nil, err
 * name stands for the file name in messages (default "<string>").
 * Text in the common subset of YAML (block mappings and sequences, one-line
 * plain and quoted scalars and flow collections, comments, printable
 * ASCII) is read by a fast path of its own; anything else, and any error,
 * goes through libyaml, so the result and every message are libyaml's.
 * how (for tests): "libyaml" skips the fast path; "fast" uses only it
 * (nil, "unsupported" when it would have left the text to libyaml). */
int tg_yaml_load_string(lua_State *L);

/* Lua (field loadfile, not exported): loadfile(path) -> function | nil, err
 * is Lua's loadfile, keeping the compiled chunk per process while the file
 * is unchanged (device, inode, size, modification and change times; a file
 * changed in the last two seconds is not kept), since every config load
 * builds a new Lua state that loads the same modules and policies again.
 * config.lua puts it before Lua's module searcher; policies.lua uses it. */

/* Pushes the null sentinel: a light userdata whose value is NULL. */
void tg_yaml_push_null(lua_State *L);

/* Sets fields load_file, load_string, loadfile and null in the table at
 * the top of the stack; the stack is otherwise unchanged. */
void tg_yaml_register(lua_State *L);

#endif
