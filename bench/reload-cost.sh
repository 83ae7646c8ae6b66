#!/usr/bin/env bash
# bench/reload-cost.sh: what a reload of the ROUTES-route config costs the worker, in instructions
# (callgrind: exact, whatever the machine's speed), under load and idle.
#
#   make && ./bench/reload-cost.sh [--quick]   # ~4 min; needs valgrind (make bench-deps installs it)
#
# Four gateways, one after the other, each run under callgrind from start to exit: started and
# stopped; N proxied requests; the same N requests with K reloads during them; K reloads and no
# request. The differences of the worker's instructions (all its threads: loop, reload build,
# closer) give those of a request and of a reload. A run's start-up and exit vary by about
# 15 M instructions, which K reloads share. A reload under load costs its build and the
# closing of the old generation, plus whatever the loop pays after the swap (a new Lua state's
# JIT traces, cold caches of its own); the idle reload has no such after-cost, so the difference
# between the two is that cost.
#
# Instructions are user-space only: a proxied request's time is mostly the kernel's (sockets),
# so "a reload costs as much as N requests" is in instructions, not in time.
#
# Environment: ROUTES (1000), N (12000), K (10), TOLLGATE (build/tollgate), KEEP_TMP=1.
# --quick: N=4000 K=4 unless set (rougher: about ±5 M a reload instead of ±2 M).
# Requests: curl on one keep-alive connection (its URL ranges); the upstream: bench/lib.sh's nginx.
# Everything on 127.0.0.1, every process stopped by PID.
set -euo pipefail
PROG=reload-cost.sh

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
if [[ $QUICK == 1 ]]; then N=${N:-4000} K=${K:-4}; fi
ROUTES=${ROUTES:-1000} N=${N:-12000} K=${K:-10}
KEEP_TMP=${KEEP_TMP:-0}
bench_setup valgrind callgrind_annotate
TOLLGATE=$(realpath "$TOLLGATE")
start_upstream
for v in a b; do luajit spec/04-reload/routes.lua "$ROUTES" "$UP_PORT" "$v" "watch: false" >"$T/$v.yml"; done

# one NAME NREQ NRELOADS: a gateway under callgrind; appends "NAME requests reloads instructions"
one() {
    local name=$1 nreq=$2 nrel=$3 dir="$T/$1" port="" gen=1 master worker i
    mkdir -p "$dir"
    cp "$T/a.yml" "$dir/gateway.config.yml"
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.%p" --dump-instr=no -q \
        "$TOLLGATE" -w 1 -c "$dir/gateway.config.yml" >"$dir/out.log" 2>"$dir/err.log" &
    master=$!
    PIDS+=("$master")
    for (( i=0; i<1200; i++ )); do
        port=$(sed -n 's/.*listening on http:\/\/.*:\([0-9][0-9]*\).*/\1/p' "$dir/err.log" | head -1)
        [[ -n $port ]] && curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
        kill -0 "$master" 2>/dev/null || die "$name: the gateway exited: $(tail -3 "$dir/err.log")"
        sleep 0.1
    done
    worker=$(wait_child "$master") || die "$name: no worker: $(tail -3 "$dir/err.log")"
    reload() {   # the next variant by a rename, SIGHUP, then wait for the worker's line
        gen=$(( gen + 1 ))
        if (( gen % 2 )); then cp "$T/a.yml" "$dir/.next"; else cp "$T/b.yml" "$dir/.next"; fi
        mv "$dir/.next" "$dir/gateway.config.yml"
        kill -HUP "$master"
        until grep -q "configuration reloaded (generation $gen)" "$dir/err.log"; do
            kill -0 "$worker" 2>/dev/null || die "$name: the worker died"
            sleep 0.05
        done
    }
    local reqs=0 client
    if (( nreq > 0 )); then
        curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$port/?[1-$nreq]" >"$dir/codes.txt" &
        client=$!
        # the reloads start once the requests flow
        until [[ $(wc -l <"$dir/codes.txt") -ge 200 ]]; do sleep 0.05; done
        for (( i=0; i<nrel; i++ )); do reload; done
        wait "$client"
        reqs=$(grep -c '^200$' "$dir/codes.txt" || true)
        (( reqs == nreq )) || die "$name: $reqs of $nreq requests got 200"
    else
        for (( i=0; i<nrel; i++ )); do reload; done
    fi
    kill -TERM "$master"
    wait "$master" 2>/dev/null || true
    [[ -s $dir/cg.$worker ]] || die "$name: no callgrind output for worker $worker"
    echo "$name $reqs $(( gen - 1 )) $(callgrind_annotate "$dir/cg.$worker" 2>/dev/null |
        awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')" >>"$T/runs.txt"
}

echo "Tollgate reload cost (callgrind) $(date -u '+%Y-%m-%d %H:%M:%S UTC'), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "config: $ROUTES routes (spec/04-reload/routes.lua, variants a and b); requests: GET / proxied to nginx, one keep-alive connection"
one start 0 0
one requests "$N" 0
one reload "$N" "$K"
one idle 0 "$K"
sed 's/^/    /' "$T/runs.txt"
awk '{ r[$1] = $2; k[$1] = $3; ir[$1] = $4 } END {
    s = ir["start"]; a = (ir["requests"] - s) / r["requests"]
    b = (ir["reload"] - ir["requests"]) / k["reload"]; bi = (ir["idle"] - s) / k["idle"]
    printf "instructions per proxied request: %.0f; start-up and exit: %.1f M\n", a, s / 1e6
    printf "a reload under load: %.1f M (as many as %.0f requests); idle: %.1f M\n", b / 1e6, b / a, bi / 1e6
    printf "what the loop pays after a swap (under load - idle): %.1f M, %.1f %% of a reload\n", (b - bi) / 1e6, 100 * (b - bi) / b }' "$T/runs.txt"
