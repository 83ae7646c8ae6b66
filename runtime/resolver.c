/*
 * resolver.c: a helper thread that runs getaddrinfo() for upstream hosts.
 *
 * The loop thread queues jobs (a copy of the host name and the peer
 * pointer); the helper resolves them one at a time and queues results; an
 * ev_async wakes the loop, which hands results to tg_peer_resolved(). Only
 * the two queues are shared, under one mutex. Peers outlive the worker's
 * loop, so a result can never name a freed peer.
 */
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>

#include "resolver.h"
#include "worker.h"

typedef struct job {
    struct job *next;
    tg_peer_t *peer;
    char *host;
    int port;
    int n;
    struct sockaddr_storage addrs[TG_PEER_MAX_ADDRS];
    socklen_t lens[TG_PEER_MAX_ADDRS];
    const char *error;
} job_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static job_t *todo, *done;
static int started, stopping;
static pthread_t thread;
static ev_async async;

static void lookup(job_t *j)
{
    struct addrinfo hints = { 0 }, *res, *ai;
    char port[8];
    snprintf(port, sizeof(port), "%d", j->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int rc = getaddrinfo(j->host, port, &hints, &res);
    if (rc != 0) {
        j->error = gai_strerror(rc); /* static strings */
        return;
    }
    for (ai = res; ai && j->n < TG_PEER_MAX_ADDRS; ai = ai->ai_next) {
        memcpy(&j->addrs[j->n], ai->ai_addr, ai->ai_addrlen);
        j->lens[j->n] = ai->ai_addrlen;
        j->n++;
    }
    freeaddrinfo(res);
    if (j->n == 0)
        j->error = "no addresses";
}

static void *run(void *arg)
{
    tg_unused(arg);
    pthread_mutex_lock(&lock);
    for (;;) {
        while (todo == NULL && !stopping)
            pthread_cond_wait(&wake, &lock);
        if (stopping)
            break;
        job_t *j = todo;
        todo = j->next;
        pthread_mutex_unlock(&lock);
        lookup(j);
        pthread_mutex_lock(&lock);
        j->next = done;
        done = j;
        ev_async_send(tg_worker.loop, &async);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    tg_unused(loop);
    tg_unused(w);
    tg_unused(revents);
    pthread_mutex_lock(&lock);
    job_t *list = done;
    done = NULL;
    pthread_mutex_unlock(&lock);
    while (list) {
        job_t *j = list;
        list = j->next;
        tg_peer_resolved(j->peer, j->addrs, j->lens, j->n, j->error);
        free(j->host);
        free(j);
    }
}

void tg_resolve(tg_peer_t *peer)
{
    if (!started) {
        ev_async_init(&async, on_async);
        ev_async_start(tg_worker.loop, &async);
        ev_unref(tg_worker.loop); /* an idle resolver does not keep the loop alive */
        if (tg_thread_start(&thread, 0, 0, run, NULL) != 0) {
            tg_peer_resolved(peer, NULL, NULL, 0, "could not start the resolver thread");
            return;
        }
        started = 1;
    }
    job_t *j = tg_calloc(1, sizeof(*j));
    j->peer = peer;
    j->host = tg_strndup(peer->host, strlen(peer->host));
    j->port = peer->port;
    pthread_mutex_lock(&lock);
    j->next = todo;
    todo = j;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

void tg_resolver_stop(void)
{
    if (!started)
        return;
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    /* A lookup in progress cannot be interrupted; the thread exits after
     * it. Joining could stall shutdown on a slow DNS server, so detach. */
    pthread_detach(thread);
    started = 0;
}
