/*
 * chunkcache.h: Lua files loaded through a per-process cache of their
 * bytecode (chunkcache.c).
 */
#ifndef TG_CHUNKCACHE_H
#define TG_CHUNKCACHE_H

#include <lua.h>

/* loadfile(path) as Lua's, with the file's compiled chunk kept while the
 * file is unchanged: the function, or nil and the error. */
int tg_chunk_loadfile(lua_State *L);

#endif
