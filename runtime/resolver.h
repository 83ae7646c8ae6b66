/*
 * resolver.h: upstream host names resolved off the event loop. getaddrinfo
 * blocks, so it runs on one helper thread per worker; results come back to
 * the loop through an ev_async and are delivered with tg_peer_resolved().
 */
#ifndef TG_RESOLVER_H
#define TG_RESOLVER_H

#include "upstream.h"

/* Starts a lookup of peer->host (the peer is marked resolving by the caller). */
void tg_resolve(tg_peer_t *peer);
/* Stops the helper thread (worker exit). */
void tg_resolver_stop(void);

#endif
