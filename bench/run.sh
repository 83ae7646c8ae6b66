#!/usr/bin/env bash
# bench/run.sh: Tollgate vs nginx reverse proxy, same machine, same run; then bench/policies.sh.
#
#   make && ./bench/run.sh [--quick] [--no-policies]
#
# Environment: DURATION (s, default 10), CONNECTIONS (default 50), WARMUP (s, default 3),
#              IDLE_CONNS (default 10000; 0 skips the idle-connection test),
#              ROUNDS (default 1: tollgate, nginx, tollgate, nginx, ...; medians are reported),
#              TOLLGATE (binary, default build/tollgate), KEEP_TMP=1 keeps the temp dir,
#              WAIT_IDLE (s, default 0): before each run wait up to that long for both cores to be idle.
# --quick: DURATION=3 WARMUP=1 IDLE_CONNS=2000 unless set explicitly.
# --no-policies: skip bench/policies.sh (rate-limit + jwt pipeline vs OpenResty-style), which
#              otherwise runs afterwards with the same settings (see bench/README.md).
#
# Layout (2 cores): gateway under test on core 0 (one worker); upstream nginx and wrk on core 1.
# See bench/README.md for what each figure means.
set -euo pipefail
PROG=run.sh

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_extra_arg() { [[ $1 == --no-policies ]] && POLICIES=0; }
POLICIES=1
bench_args "$@"
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-3}; WARMUP=${WARMUP:-1}; IDLE_CONNS=${IDLE_CONNS:-2000}
fi
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
ROUNDS=${ROUNDS:-1}
KEEP_TMP=${KEEP_TMP:-0}

# shellcheck disable=SC2119
bench_setup

raise_fd_limit $(( IDLE_CONNS + 1024 ))
NGX_FDS=$(( IDLE_CONNS + 1024 )); [[ $FD_LIMIT != unlimited && $NGX_FDS -gt $FD_LIMIT ]] && NGX_FDS=$FD_LIMIT
TG_MAXCONN=$(( IDLE_CONNS + 1024 > 16384 ? IDLE_CONNS + 1024 : 16384 ))

# ---------------------------------------------------------------- 1. upstream (nginx, core 1)
start_upstream

# ---------------------------------------------------------------- 2a. Tollgate (core 0, 1 worker)
mkdir -p "$T/tollgate"
tollgate_config "$TOLLGATE_PROXY_STEP" "  client:
    maxConnections: $TG_MAXCONN" >"$T/tollgate/gateway.config.yml"
start_tollgate tollgate
wait_http "http://127.0.0.1:$TG_PORT/" || die "tollgate does not answer 200 on $TG_PORT: $(cat "$T/tollgate/stderr.log")"

# ---------------------------------------------------------------- 2b. nginx reverse proxy (core 0, 1 worker)
NG_PORT=$(free_port)
nginx_proxy_conf nginx "$NG_PORT" "$NGX_FDS"
start_nginx_gateway nginx "$NG_PORT"
NG_MASTER=$GW_MASTER NG_WORKER=$GW_WORKER
wait_http "http://127.0.0.1:$NG_PORT/" || die "nginx proxy does not answer on $NG_PORT"

for name in tollgate:$TG_PORT nginx:$NG_PORT; do
    body=$(curl -s "http://127.0.0.1:${name#*:}/")
    [[ $body == "hello from upstream" ]] || die "${name%%:*}: unexpected body through the gateway: '$body'"
done

# ---------------------------------------------------------------- 3. load
preflight
print_header "Tollgate bench" "DURATION=${DURATION}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS IDLE_CONNS=$IDLE_CONNS ROUNDS=$ROUNDS WAIT_IDLE=${WAIT_IDLE:-0}s (wrk -t1, gateway on core 0, upstream + wrk on core 1)"
echo "upstream: nginx 127.0.0.1:$UP_PORT; tollgate 127.0.0.1:$TG_PORT (worker $TG_WORKER); nginx proxy 127.0.0.1:$NG_PORT (worker $NG_WORKER)"
echo

for (( round=1; round<=ROUNDS; round++ )); do
    bench_one tollgate "$round" "$TG_PORT" "$TG_MASTER" "$TG_WORKER"
    bench_one nginx "$round" "$NG_PORT" "$NG_MASTER" "$NG_WORKER"
done

# ---------------------------------------------------------------- 4. report
row() { printf '%-16s %12s %10s %10s %14s %7s %12s %12s %8s %8s\n' "$@"; }
echo
echo "==== throughput: GET / through one gateway worker, ${DURATION}s, $CONNECTIONS connections$(multi ", $ROUNDS rounds")"
row gateway 'req/s' 'p50 ms' 'p99 ms' 'CPU s/10k req' 'CPU %' 'idle RSS KB' 'load RSS KB' non-2xx sockerr
declare -A M
for name in tollgate nginx; do
    for (( round=1; round<=ROUNDS; round++ )); do
        key="$name#$round"
        row "$name$(multi " #$round")" "${RPS[$key]}" "${P50[$key]}" "${P99[$key]}" \
            "${CPU10K[$key]}" "${CPUPCT[$key]}" "${RSS_IDLE[$name]}" "${RSS_LOAD[$name]}" "${NON2XX[$key]}" "${SOCKERR[$key]}"
    done
    for a in RPS P50 P99 CPU10K CPUPCT; do M[$name.$a]=$(median "$name" "$a"); done
    if [[ $ROUNDS -gt 1 ]]; then
        row "$name median" "${M[$name.RPS]}" "${M[$name.P50]}" "${M[$name.P99]}" "${M[$name.CPU10K]}" "${M[$name.CPUPCT]}" "" "" "" ""
    fi
done
echo "ratio tollgate/nginx$(multi " (medians)"): req/s $(ratio "${M[tollgate.RPS]}" "${M[nginx.RPS]}")," \
    "p50 $(ratio "${M[tollgate.P50]}" "${M[nginx.P50]}"), p99 $(ratio "${M[tollgate.P99]}" "${M[nginx.P99]}")," \
    "CPU per request $(ratio "${M[tollgate.CPU10K]}" "${M[nginx.CPU10K]}")"
for name in tollgate nginx; do
    disturbance_warnings "$name"
    for (( round=1; round<=ROUNDS; round++ )); do
        key="$name#$round"
        if [[ ${NON2XX[$key]} -gt 0 || ${SOCKERR[$key]} -gt 0 ]]; then
            echo "WARNING: $name$(multi " round $round"): ${NON2XX[$key]} non-2xx/3xx responses, ${SOCKERR[$key]} socket errors (see wrk output above)"
        fi
    done
done

# ---------------------------------------------------------------- 6. idle keep-alive connections
if [[ $IDLE_CONNS -gt 0 ]]; then
    echo
    echo "==== idle keep-alive connections: $IDLE_CONNS, one request each, then idle"
    declare -A IDLE_RES
    for pair in tollgate:$TG_PORT:$TG_WORKER nginx:$NG_PORT:$NG_WORKER; do
        IFS=: read -r name port worker <<<"$pair"
        echo "---- $name"
        if luajit bench/idle-conns.lua -n "$IDLE_CONNS" -p "$port" -P "$worker" >"$T/$name/idle.txt" 2>&1; then
            sed 's/^/    /' "$T/$name/idle.txt"
            IDLE_RES[$name]=$(sed -n 's/^RESULT //p' "$T/$name/idle.txt")
        else
            sed 's/^/    /' "$T/$name/idle.txt"
            echo "WARNING: $name: idle-connection test failed"
            IDLE_RES[$name]=""
        fi
        kill -0 "$worker" 2>/dev/null || echo "WARNING: $name: worker $worker died during the idle-connection test"
    done
    echo
    printf '%-10s %16s %18s %14s\n' gateway 'RSS KB before' "RSS KB w/ $IDLE_CONNS" 'KB/connection'
    for name in tollgate nginx; do
        r=${IDLE_RES[$name]}
        b=$(sed -n 's/.*rss_before_kb=\([0-9]*\).*/\1/p' <<<"$r")
        l=$(sed -n 's/.*rss_loaded_kb=\([0-9]*\).*/\1/p' <<<"$r")
        k=$(sed -n 's/.*kb_per_conn=\([0-9.-]*\).*/\1/p' <<<"$r")
        printf '%-10s %16s %18s %14s\n' "$name" "${b:-?}" "${l:-?}" "${k:-?}"
    done
fi

# ---------------------------------------------------------------- sanity: gateway logs
echo
check_logs "$T/tollgate/stderr.log" "$T/nginx/error.log" "$T/upstream/error.log"
check_worker tollgate "$TG_MASTER" "$TG_WORKER"
echo "done."

# ---------------------------------------------------------------- 7. policies (own processes, own temp dir)
if [[ $POLICIES == 1 ]]; then
    stop_all
    echo
    args=(); if [[ $QUICK == 1 ]]; then args+=(--quick); fi
    DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS KEEP_TMP=$KEEP_TMP TOLLGATE=$TOLLGATE \
        WAIT_IDLE=${WAIT_IDLE:-0} \
        bench/policies.sh "${args[@]}"
fi
