#!/usr/bin/env bash
# bench/reload.sh: the cost of hot reloads (issue 4's performance figures).
#
#   make && ./bench/reload.sh [--quick]
#
#   (a) reload time per worker, config of ROUTES routes: the workers' "in X ms" lines (target < 50 ms)
#   (b) throughput (wrk, one worker on core 0) without reloads and with a reload every second:
#       PAIRS pairs of WINDOW-second windows, interleaved, with the ROUTES-route config and, as a
#       control, bench/run.sh's one-route proxy config (target: the mean change and its 95 %
#       interval within 5 %)
#   (c) MEM_RELOADS reloads of the ROUTES-route config: worker RSS after the first and after the
#       last (target: within 5 MB)
#   (d) LOAD_RELOADS reloads in a row under a steady load (keep-alive + new connections,
#       spec/04-reload/load.lua): failed requests, resets, non-2xx (target: all zero)
#
# Environment: ROUTES (1000), TIME_RELOADS (30), MEM_RELOADS (1000), LOAD_RELOADS (100),
#              PAIRS (20), WINDOW (s, 5), WARMUP (s, 2, once per config), CONNECTIONS (50),
#              PARTS (abcd: which of (a)-(d) to run), LOAD_BETWEEN (300: responses
#              the load gets between two reloads in (d)), TOLLGATE (build/tollgate),
#              KEEP_TMP=1 keeps the temp dir.
# --quick: TIME_RELOADS=10 MEM_RELOADS=100 LOAD_RELOADS=20 PAIRS=4 unless set.
#
# Layout (2 cores), as bench/run.sh: the gateway (master and its one worker) on core 0; the nginx
# upstream, wrk and the load generator on core 1. Everything on 127.0.0.1; every process stopped by PID.
set -euo pipefail
PROG=reload.sh

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
if [[ $QUICK == 1 ]]; then
    TIME_RELOADS=${TIME_RELOADS:-10}; MEM_RELOADS=${MEM_RELOADS:-100}; LOAD_RELOADS=${LOAD_RELOADS:-20}
    PAIRS=${PAIRS:-4}
fi
ROUTES=${ROUTES:-1000}
TIME_RELOADS=${TIME_RELOADS:-30}
MEM_RELOADS=${MEM_RELOADS:-1000}
LOAD_RELOADS=${LOAD_RELOADS:-100}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-50}
PAIRS=${PAIRS:-20}
WINDOW=${WINDOW:-5}
KEEP_TMP=${KEEP_TMP:-0}
PARTS=${PARTS:-abcd}
LOAD_BETWEEN=${LOAD_BETWEEN:-300}

bench_setup
raise_fd_limit 4096

# ---------------------------------------------------------------- helpers
# Two variants of each config (every reload is a real change): $T/NAME/{a,b}.yml
routes_config() {   # routes_config NAME N: the N-route config (spec/04-reload/routes.lua)
    local name=$1 n=$2 v
    mkdir -p "$T/$name"
    : >"$T/$name/hups"
    for v in a b; do
        luajit spec/04-reload/routes.lua "$n" "$UP_PORT" "$v" "watch: false" "logLevel: debug" >"$T/$name/$v.yml"
    done
    cp "$T/$name/a.yml" "$T/$name/gateway.config.yml"
}
small_config() {    # small_config NAME: bench/run.sh's one-route proxy config
    local name=$1 v
    mkdir -p "$T/$name"
    : >"$T/$name/hups"
    for v in a b; do
        tollgate_config "      - terminate:
          - condition: { name: pathExact, path: /never-$v }
            action: { statusCode: 404 }
$TOLLGATE_PROXY_STEP" "  watch: false
  logLevel: debug" >"$T/$name/$v.yml"
    done
    cp "$T/$name/a.yml" "$T/$name/gateway.config.yml"
}

# use_variant NAME a|b: the variant becomes the config, replaced by a rename: a master still
# busy with the previous SIGHUP never reads a half-written file
use_variant() {
    cp "$T/$1/$2.yml" "$T/$1/.next.yml"
    mv -f "$T/$1/.next.yml" "$T/$1/gateway.config.yml"
}

declare -A MASTER WORKER
# reload NAME GEN: write the next variant, SIGHUP the master, wait (10 s at most) until the worker
# logs generation GEN; prints the worker's "in X ms".
reload() {
    local name=$1 gen=$2 dir="$T/$1" ms="" line
    if (( gen % 2 )); then use_variant "$name" a; else use_variant "$name" b; fi
    echo "$gen" >>"$dir/hups"
    kill -HUP "${MASTER[$name]}"
    local deadline=$(( SECONDS + 10 ))
    while [[ -z $ms ]]; do
        line=$(grep -F "configuration reloaded (generation $gen) in " "$dir/stderr.log" | tail -1 || true)
        ms=$(sed -n 's/.* in \([0-9.]*\) ms.*/\1/p' <<<"$line")
        if [[ -n $ms ]]; then
            sed -n 's/.* (\([0-9.]*\) ms CPU).*/\1/p' <<<"$line" >>"$dir/cpu.txt"
            break
        fi
        (( SECONDS < deadline )) || die "$name: generation $gen was not logged within 10 s: $(tail -5 "$dir/stderr.log")"
        kill -0 "${WORKER[$name]}" 2>/dev/null || die "$name: worker ${WORKER[$name]} died: $(tail -5 "$dir/stderr.log")"
        sleep 0.005
    done
    echo "$ms"
}

count() { grep -c -- "$2" "$T/$1/stderr.log" || true; }   # count NAME PATTERN: matching log lines

# settle NAME: after reloads that were not waited for ((b)'s loop), wait until the master has
# handled every SIGHUP sent (one it got while the worker was building is folded into one more
# reload after it), the worker has built every reload the master started, and the master has
# logged each outcome; then GEN = the worker's current generation, so the next `reload` waits for
# a generation not yet logged.
settle() {
    local name=$1 sent started deadline=$(( SECONDS + 15 ))
    sent=$(wc -l <"$T/$name/hups")
    until started=$(count "$name" ": checking ")
          (( $(count "$name" "SIGHUP: checking") + $(count "$name" "another follows it") >= sent &&
             $(count "$name" "checked and applied it") + $(count "$name" "reload refused") >= started &&
             $(count "$name" "configuration reloaded") + $(count "$name" "reload refused") >= started )); do
        if (( SECONDS >= deadline )); then
            echo "WARNING: $name: reloads still pending after 15 s (SIGHUPs coalesced?); going on"
            break
        fi
        sleep 0.01
    done
    GEN=$(grep -o "configuration reloaded (generation [0-9]*)" "$T/$name/stderr.log" | tail -1 | tr -dc '0-9')
    GEN=${GEN:-1}
}

stats() {   # stats < numbers -> "min median p90 max mean"
    sort -g | awk '{ a[NR] = $1; s += $1 } END {
        if (NR == 0) { print "- - - - -"; exit }
        p = int(NR * 0.9 + 0.5); if (p < 1) p = 1; if (p > NR) p = NR
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.1f %.1f %.1f %.1f %.1f\n", a[1], m, a[p], a[NR], s / NR }'
}

# ms between the master's "SIGHUP: checking" line and the worker's reload line, per reload
end_to_end() {   # end_to_end STDERR_LOG
    awk '
        function t(s,   h, m, sec) { split(substr(s, 12, 12), h, ":"); return (h[1] * 3600 + h[2] * 60 + h[3]) * 1000 }
        / master [0-9]+: SIGHUP: checking / { start = t($1) }
        / configuration reloaded \(generation / { if (start) { d = t($1) - start; if (d < 0) d += 86400000; print d; start = 0 } }
    ' "$1"
}

start_upstream
preflight
print_header "Tollgate reload bench" "ROUTES=$ROUTES TIME_RELOADS=$TIME_RELOADS MEM_RELOADS=$MEM_RELOADS LOAD_RELOADS=$LOAD_RELOADS PAIRS=$PAIRS WINDOW=${WINDOW}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS (gateway -w 1 on core 0, upstream + wrk + load on core 1)"
echo

# ---------------------------------------------------------------- (a) reload time
routes_config big "$ROUTES"
echo "config: $ROUTES apiEndpoints (distinct hosts h<i>.example.com, paths /api/<i> and /api/<i>/*), one pipeline each"
echo "        (terminate; every 4th also rate-limit, every 4th jwt with a secret, every 2nd a pathMatch condition),"
echo "        plus a catch-all proxying to the upstream: $(wc -l <"$T/big/a.yml") lines, $(wc -c <"$T/big/a.yml") bytes"
start_tollgate big
BIG_MASTER=$TG_MASTER BIG_WORKER=$TG_WORKER BIG_PORT=$TG_PORT
MASTER[big]=$TG_MASTER WORKER[big]=$TG_WORKER
wait_http "http://127.0.0.1:$BIG_PORT/" || die "the $ROUTES-route gateway does not answer 200 on /"
[[ $(curl -s -H "Host: h3.example.com" "http://127.0.0.1:$BIG_PORT/api/3") == "route 3 a" ]] || die "route 3 does not answer"
TIMEFORMAT=%R
check_ms=$( { time "$TOLLGATE" -t -c "$T/big/a.yml" >/dev/null 2>&1; } 2>&1 )

GEN=1
if [[ $PARTS == *a* ]]; then
echo
echo "==== (a) reload time, $ROUTES routes, $TIME_RELOADS reloads by SIGHUP (idle gateway)"
: >"$T/big/times.txt"
: >"$T/big/cpu.txt"
for (( i=1; i<=TIME_RELOADS; i++ )); do
    GEN=$(( GEN + 1 ))
    reload big "$GEN" >>"$T/big/times.txt"
done
read -r a_min a_med a_p90 a_max a_mean < <(stats <"$T/big/times.txt")
read -r c_min c_med c_p90 c_max c_mean < <(stats <"$T/big/cpu.txt")
read -r e_min e_med e_p90 e_max e_mean < <(end_to_end "$T/big/stderr.log" | stats)
printf '%-44s %8s %8s %8s %8s %8s\n' '' min median p90 max mean
printf '%-44s %8s %8s %8s %8s %8s\n' "worker: new generation built and swapped, ms" "$a_min" "$a_med" "$a_p90" "$a_max" "$a_mean"
printf '%-44s %8s %8s %8s %8s %8s\n' "  of which the worker's own CPU, ms" "$c_min" "$c_med" "$c_p90" "$c_max" "$c_mean"
printf '%-44s %8s %8s %8s %8s %8s\n' "SIGHUP to the worker reloaded, ms" "$e_min" "$e_med" "$e_p90" "$e_max" "$e_mean"
echo "(for scale: \`tollgate -t\` on this config, a whole process, takes ${check_ms} s)"
A_MED=$a_med A_MAX=$a_max A_CPU_MED=$c_med
[[ $(curl -s -H "Host: h3.example.com" "http://127.0.0.1:$BIG_PORT/api/3") =~ ^route\ 3\ [ab]$ ]] || die "route 3 does not answer after the reloads"
fi

# ---------------------------------------------------------------- (b) throughput with a reload every second
# Interleaved windows: PAIRS pairs of WINDOW-second wrk runs on the same warm gateway, one without
# reloads and one with a reload at the start of each of its seconds, in the order plain, reload,
# reload, plain, plain, reload... Each pair's own change is one sample. This VM's speed drifts by
# 10-20 % over minutes, which long rounds mistook for the reloads' cost; within a pair, seconds
# apart, the drift is small, and the alternating order makes a steady drift cancel over the pairs.
count_reloads() { grep -c "configuration reloaded" "$T/$1/stderr.log" || true; }
reload_ticks() {   # reload_ticks NAME SECONDS MASTER: a reload (next variant + SIGHUP) now and then every second
    local name=$1 secs=$2 i t0=${EPOCHREALTIME/,/.} now wait_s
    for (( i=0; i<secs; i++ )); do
        now=${EPOCHREALTIME/,/.}
        wait_s=$(awk -v a="$t0" -v b="$now" -v i="$i" 'BEGIN { w = a + i - b; printf "%.3f", (w > 0 ? w : 0) }')
        sleep "$wait_s"
        if (( i % 2 )); then use_variant "$name" b; else use_variant "$name" a; fi
        echo "loop" >>"$T/$name/hups"
        kill -HUP "$3" 2>/dev/null || return 0
    done
}

# window NAME KIND PORT MASTER WORKER: one WINDOW-second wrk run (reloads with KIND=reload); appends
# "req/s worker-CPU-s-per-10k-requests reloads p99-ms non2xx sockerr core0-busy% core0-steal%" to $T/NAME/KIND.txt
window() {
    local name=$1 kind=$2 port=$3 master=$4 worker=$5 out="$T/runs/$1.$2.$(( ++WINDOWS ))" lp="" r0 c0 c1 k0 k0b n reqs rps p99 non2xx sockerr
    r0=$(count_reloads "$name")
    k0=$(core_ticks 0)
    c0=$(cpu_ticks "$worker") || die "$name: worker $worker is gone"
    if [[ $kind == reload ]]; then
        reload_ticks "$name" "$WINDOW" "$master" &
        lp=$!
        PIDS+=("$lp")
    fi
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WINDOW}s" --latency "http://127.0.0.1:$port/" >"$out" 2>&1 \
        || die "$name: wrk failed: $(cat "$out")"
    c1=$(cpu_ticks "$worker") || die "$name: worker $worker died during a window"
    k0b=$(core_ticks 0)
    if [[ -n $lp ]]; then
        wait "$lp" 2>/dev/null || true
        settle "$name" >/dev/null   # every reload of this window built and logged before the next window
    fi
    n=$(( $(count_reloads "$name") - r0 ))
    read -r reqs _ rps _ p99 non2xx sockerr < <(parse_wrk "$out")
    echo "$rps $(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN { printf "%.4f", (n > 0 ? d / hz / n * 10000 : 0) }') $n $p99 $non2xx $sockerr $(busy_pct "$k0" "$k0b") $(tick_pct "$k0" "$k0b" 2)" >>"$T/$name/$kind.txt"
}

# interleave NAME PORT MASTER WORKER: PAIRS pairs of windows; prints one line per pair
interleave() {
    local name=$1 i first second
    : >"$T/$name/plain.txt"; : >"$T/$name/reload.txt"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "http://127.0.0.1:$2/" >/dev/null 2>&1 || die "$name: wrk warm-up failed"
    printf '    %-5s %11s %11s %8s %9s %9s %8s %8s %8s %8s\n' pair 'req/s plain' 'req/s rel.' change \
        'CPU/10k' 'CPU/10k' reloads 'p99 pl.' 'p99 rel' 'steal %'
    for (( i=1; i<=PAIRS; i++ )); do
        if (( i % 2 )); then first=plain second=reload; else first=reload second=plain; fi
        window "$name" "$first" "$2" "$3" "$4"
        window "$name" "$second" "$2" "$3" "$4"
        paste -d' ' <(sed -n "${i}p" "$T/$name/plain.txt") <(sed -n "${i}p" "$T/$name/reload.txt") |
            awk -v i="$i" '{ printf "    %-5s %11s %11s %+7.1f%% %9s %9s %8s %8s %8s %4s/%-3s\n", i, $1, $9, 100 * ($9 - $1) / $1,
                $2, $10, $11, $4, $12, $8, $16 }'
    done
}

# summarize NAME: "n mean-change ci95-halfwidth median-change cpu-mean-change non2xx+sockerr reloads-min"
summarize() {
    local med
    med=$(paste -d' ' "$T/$1/plain.txt" "$T/$1/reload.txt" | awk '{ printf "%.3f\n", 100 * ($9 - $1) / $1 }' | sort -g |
        awk '{ v[NR] = $1 } END { printf "%+.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    paste -d' ' "$T/$1/plain.txt" "$T/$1/reload.txt" | awk -v med="$med" '
        { n++; d[n] = 100 * ($9 - $1) / $1; s += d[n]; c += 100 * ($10 - $2) / $2; e += $5 + $6 + $13 + $14
          if (n == 1 || $11 < rmin) rmin = $11 }
        END {
            m = s / n; for (i = 1; i <= n; i++) v += (d[i] - m) ^ 2
            sd = (n > 1 ? sqrt(v / (n - 1)) : 0)
            # two-sided 95 % Student t quantiles for n - 1 degrees of freedom (1.96 past 30)
            split("12.71 4.30 3.18 2.78 2.57 2.45 2.36 2.31 2.26 2.23 2.20 2.18 2.16 2.14 2.13 2.12 2.11 2.10 2.09 2.09 2.08 2.07 2.07 2.06 2.06 2.06 2.05 2.05 2.05 2.04", tq, " ")
            t = (n - 1 >= 1 && n - 1 <= 30 ? tq[n - 1] : 1.96)
            printf "%d %+.1f %.1f %s %+.1f %d %d\n", n, m, (n > 1 ? t * sd / sqrt(n) : 0), med, c / n, e, rmin }'
}

declare -A B_N B_MEAN B_CI B_MED B_CPU B_ERR B_RMIN
if [[ $PARTS == *b* ]]; then
WINDOWS=0
echo
echo "==== (b) throughput: GET / (proxied to the upstream) through one worker, $CONNECTIONS connections, $PAIRS pairs of ${WINDOW}-s windows"
echo "     (without reloads / with a reload at the start of each second; order plain-reload, reload-plain, ...)"
echo "CPU/10k: worker CPU seconds per 10,000 requests (build and closer threads included); steal: % of core 0, plain/reload"
echo "-- $ROUTES routes"
interleave big "$BIG_PORT" "$BIG_MASTER" "$BIG_WORKER"
check_worker big "$BIG_MASTER" "$BIG_WORKER"

small_config small
start_tollgate small
SMALL_MASTER=$TG_MASTER SMALL_WORKER=$TG_WORKER SMALL_PORT=$TG_PORT
MASTER[small]=$TG_MASTER WORKER[small]=$TG_WORKER
wait_http "http://127.0.0.1:$SMALL_PORT/" || die "the one-route gateway does not answer 200"
echo "-- control: 1 route (bench/run.sh's config; a reload costs ~1 ms)"
interleave small "$SMALL_PORT" "$SMALL_MASTER" "$SMALL_WORKER"
check_worker small "$SMALL_MASTER" "$SMALL_WORKER"
kill -TERM "$SMALL_MASTER" 2>/dev/null || true
for name in big small; do
    read -r B_N[$name] B_MEAN[$name] B_CI[$name] B_MED[$name] B_CPU[$name] B_ERR[$name] B_RMIN[$name] < <(summarize "$name")
done
settle big
fi

# ---------------------------------------------------------------- (c) memory over many reloads
if [[ $PARTS == *c* ]]; then
echo
echo "==== (c) $MEM_RELOADS reloads of the $ROUTES-route config (SIGHUP, each waited for): worker RSS"
printf '%-18s %12s %12s %16s\n' 'after reload' 'worker KB' 'master KB' 'generations closed'
C_FIRST='' C_LAST='' CM_FIRST='' CM_LAST=''
for (( i=1; i<=MEM_RELOADS; i++ )); do
    GEN=$(( GEN + 1 ))
    reload big "$GEN" >/dev/null
    if (( i == 1 || i % (MEM_RELOADS / 10 > 0 ? MEM_RELOADS / 10 : 1) == 0 || i == MEM_RELOADS )); then
        # a request served in between (the generation in use, then the old one closed)
        curl -s -o /dev/null -H "Host: h5.example.com" "http://127.0.0.1:$BIG_PORT/api/5"
        rss=$(rss_kb "$BIG_WORKER")
        mrss=$(rss_kb "$BIG_MASTER")
        printf '%-18s %12s %12s %16s\n' "$i" "$rss" "$mrss" "$(grep -c "generation [0-9]* closed" "$T/big/stderr.log" || true)"
        if [[ $i == 1 ]]; then C_FIRST=$rss CM_FIRST=$mrss; fi
        C_LAST=$rss CM_LAST=$mrss
    fi
done
echo "RSS change from the first reload to the last: worker $(( C_LAST - C_FIRST )) KB, master $(( CM_LAST - CM_FIRST )) KB"
fi

# ---------------------------------------------------------------- (d) reloads under a steady load
if [[ $PARTS == *d* ]]; then
echo
echo "==== (d) $LOAD_RELOADS reloads in a row (each waited for, then $LOAD_BETWEEN more responses) under a steady load, $ROUTES-route config"
echo "load: spec/04-reload/load.lua on core 1, 8 keep-alive connections back to back + 4 connections at a time with one request each, GET /echo/* proxied to the upstream"
mkdir -p "$T/load"
taskset -c 1 luajit spec/04-reload/load.lua --port "$BIG_PORT" --keepalive 8 --fresh 4 --path /echo \
    --stopfile "$T/load/stop" --out "$T/load/out.json" --progress "$T/load/progress" --max-seconds 600 \
    >"$T/load/log" 2>&1 &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
deadline=$(( SECONDS + 10 ))
until [[ $(cut -d' ' -f1 "$T/load/progress" 2>/dev/null || echo 0) -ge 500 ]]; do
    (( SECONDS < deadline )) || die "the load does not flow: $(cat "$T/load/log")"
    sleep 0.01
done
t0=$(date +%s.%N)
responses() { cut -d' ' -f1 "$T/load/progress" 2>/dev/null || echo 0; }
for (( i=1; i<=LOAD_RELOADS; i++ )); do
    GEN=$(( GEN + 1 ))
    before=$(responses)
    reload big "$GEN" >>"$T/load/times.txt"
    # let the load go on between two reloads, so that each one happens under it
    deadline=$(( SECONDS + 10 ))
    until (( $(responses) >= before + LOAD_BETWEEN )); do
        (( SECONDS < deadline )) || die "the load stalled after reload $i: $(cat "$T/load/log")"
        sleep 0.005
    done
done
t1=$(date +%s.%N)
touch "$T/load/stop"
for _ in $(seq 1000); do kill -0 "$LOAD_PID" 2>/dev/null || break; sleep 0.01; done
wait "$LOAD_PID" || die "load.lua failed: $(cat "$T/load/log")"
[[ -s $T/load/out.json ]] || die "load.lua wrote no result: $(cat "$T/load/log")"
D=$(RESULT="$T/load/out.json" luajit -e '
    local s = require("cjson").decode(io.open(os.getenv("RESULT")):read("*a"))
    print(s.requests, s.ok, s.failed, s.resets, s.non2xx, s.keepalive_requests, s.fresh_requests, s.reconnects,
          ("%.1f"):format(s.seconds))
    for _, e in ipairs(s.errors) do io.stderr:write("    error: ", e, "\n") end')
read -r d_req d_ok d_failed d_resets d_non2xx d_ka d_fresh d_reconn d_secs <<<"$D"
read -r _ l_med l_p90 l_max _ < <(stats <"$T/load/times.txt")
echo "reloads: $LOAD_RELOADS in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s; worker reload time under load: median $l_med ms, p90 $l_p90 ms, max $l_max ms"
echo "requests: $d_req in ${d_secs} s ($d_ka keep-alive, $d_fresh on new connections; $d_reconn keep-alive reconnects)"
echo "complete 2xx: $d_ok   failed: $d_failed   resets: $d_resets   non-2xx: $d_non2xx"
check_worker big "$BIG_MASTER" "$BIG_WORKER"
fi

# ---------------------------------------------------------------- summary
echo
echo "==== summary (targets from issue 4)"
verdict() { if [[ $1 == 1 ]]; then echo met; else echo "NOT met"; fi; }
if [[ $PARTS == *a* ]]; then
echo "(a) reload of $ROUTES routes per worker: median $A_MED ms, max $A_MAX ms (target < 50 ms): $(verdict "$(awk -v m="$A_MED" 'BEGIN { print (m < 50) ? 1 : 0 }')")"
fi
if [[ $PARTS == *b* ]]; then
# met when the whole 95 % interval of the mean change lies within 5 % of no change
within5() { verdict "$(awk -v m="$1" -v h="$2" 'BEGIN { print (m - h > -5 && m + h < 5) ? 1 : 0 }')"; }
for name in big small; do
    label=$([[ $name == big ]] && echo "$ROUTES routes" || echo "1 route (control)")
    echo "(b) $label: req/s with a reload every second vs without, over ${B_N[$name]} pairs: mean ${B_MEAN[$name]}% ± ${B_CI[$name]} (95 %)," \
        "median ${B_MED[$name]}%; worker CPU per request ${B_CPU[$name]}%; fewest reloads in a window ${B_RMIN[$name]} of $WINDOW;" \
        "non-2xx + socket errors ${B_ERR[$name]}$([[ $name == big ]] && echo " (target within 5 %): $(within5 "${B_MEAN[$name]}" "${B_CI[$name]}")")"
done
if [[ -n ${A_CPU_MED:-} ]]; then
    echo "    by accounting: a reload's own CPU ((a), median) is $A_CPU_MED ms, $(awk -v c="$A_CPU_MED" 'BEGIN { printf "%.1f", c / 10 }') % of the worker's core at one a second (closing the old generation adds a few ms)"
fi
fi
if [[ $PARTS == *c* ]]; then
echo "(c) worker RSS after reload 1: $C_FIRST KB, after reload $MEM_RELOADS: $C_LAST KB, $(( C_LAST - C_FIRST )) KB (target within 5120 KB): $(verdict $(( C_LAST - C_FIRST < 5120 && C_FIRST - C_LAST < 5120 )))"
echo "    master RSS: $CM_FIRST KB -> $CM_LAST KB ($(( CM_LAST - CM_FIRST )) KB)"
fi
if [[ $PARTS == *d* ]]; then
echo "(d) $LOAD_RELOADS reloads under load: $d_failed failed, $d_resets resets, $d_non2xx non-2xx of $d_req requests (target all zero): $(verdict $(( d_failed + d_resets + d_non2xx == 0 )))"
fi
echo
check_logs "$T/big/stderr.log" "$T/upstream/error.log"
[[ $PARTS != *b* ]] || check_logs "$T/small/stderr.log"
echo "done."
