#!/usr/bin/env bash
# bench/run.sh: Tollgate vs nginx reverse proxy, same machine, same run.
#
#   make && ./bench/run.sh [--quick]
#
# Environment: DURATION (s, default 10), CONNECTIONS (default 50), WARMUP (s, default 3),
#              IDLE_CONNS (default 10000; 0 skips the idle-connection test),
#              ROUNDS (default 1: tollgate, nginx, tollgate, nginx, ...; medians are reported),
#              TOLLGATE (binary, default build/tollgate), KEEP_TMP=1 keeps the temp dir.
# --quick: DURATION=3 WARMUP=1 IDLE_CONNS=2000 unless set explicitly.
#
# Layout (2 cores): gateway under test on core 0 (one worker); upstream nginx and wrk on core 1.
# See bench/README.md for what each figure means.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

QUICK=0
for a in "$@"; do
    case "$a" in
        --quick) QUICK=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $a" >&2; usage >&2; exit 2 ;;
    esac
done
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-3}; WARMUP=${WARMUP:-1}; IDLE_CONNS=${IDLE_CONNS:-2000}
fi
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
ROUNDS=${ROUNDS:-1}
KEEP_TMP=${KEEP_TMP:-0}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TOLLGATE=${TOLLGATE:-build/tollgate}

for tool in wrk nginx taskset luajit curl getconf; do
    command -v "$tool" >/dev/null || { echo "run.sh: '$tool' not found" >&2; exit 1; }
done
[[ -x $TOLLGATE ]] || { echo "run.sh: $TOLLGATE not found: run make first" >&2; exit 1; }
if [[ $(nproc) -lt 2 ]]; then
    echo "run.sh: needs at least 2 cores (gateway on core 0, upstream + wrk on core 1)" >&2; exit 1
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- processes & cleanup
T=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
chmod 755 "$T"           # nginx workers may run as an unprivileged user
PIDS=()                  # every process we started (or discovered as a child of one), in start order

cleanup() {
    local rc=$? pid i
    trap - EXIT INT TERM
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: PID $pid did not stop on SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    if [[ $KEEP_TMP == 1 ]]; then echo "run.sh: temp files kept in $T" >&2; else rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "run.sh: $*" >&2; exit 1; }

free_port() {
    luajit -e 'local s = require("socket").bind("127.0.0.1", 0); local _, p = s:getsockname(); print(p); s:close()'
}

# wait_child PPID -> prints the single child PID of PPID (the worker)
wait_child() {
    local ppid=$1 kids
    for _ in $(seq 100); do
        kids=$(ps -o pid= --ppid "$ppid" | tr -d ' ' || true)
        if [[ -n $kids && $(wc -l <<<"$kids") -eq 1 ]]; then echo "$kids"; return 0; fi
        kill -0 "$ppid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

wait_http() {   # wait_http URL: until it answers 200
    for _ in $(seq 100); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) == 200 ]]; then return 0; fi
        sleep 0.1
    done
    return 1
}

cpu_ticks() {   # utime + stime (fields 14, 15 of /proc/PID/stat) in clock ticks
    local s
    s=$(<"/proc/$1/stat") || return 1
    s=${s##*) }                         # drop "pid (comm) "; fields now start at 3 (state)
    read -r -a f <<<"$s"
    echo $(( f[11] + f[12] ))
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

core_ticks() {  # core_ticks N -> "busy steal total" clock ticks of cpuN from /proc/stat
    awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8; print busy, $9, busy + $5 + $6 + $9 }' /proc/stat
}
tick_pct() {    # tick_pct "SAMPLE0" "SAMPLE1" FIELD [MINUS] -> % of the core's time in FIELD (1 busy, 2 steal)
    awk -v a="$1" -v b="$2" -v f="$3" -v m="${4:-0}" 'BEGIN { split(a, x, " "); split(b, y, " ");
        v = (y[3] > x[3] ? 100 * (y[f] - x[f] - m) / (y[3] - x[3]) : 0); printf "%.0f", (v > 0 ? v : 0) }'
}
busy_pct() { tick_pct "$1" "$2" 1; }

# Raise our fd limit so wrk, idle-conns and the gateways (which inherit the hard limit) have room.
need_fds=$(( IDLE_CONNS + 1024 ))
if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $need_fds ]]; then
    ulimit -Hn "$need_fds" 2>/dev/null || echo "run.sh: warning: hard fd limit $(ulimit -Hn) < $need_fds (IDLE_CONNS=$IDLE_CONNS)" >&2
fi
ulimit -Sn "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
NGX_FDS=$(( IDLE_CONNS + 1024 )); [[ $FD_LIMIT != unlimited && $NGX_FDS -gt $FD_LIMIT ]] && NGX_FDS=$FD_LIMIT
TG_MAXCONN=$(( IDLE_CONNS + 1024 > 16384 ? IDLE_CONNS + 1024 : 16384 ))

# Common nginx boilerplate: everything under its own prefix, nothing outside $T.
nginx_common() {   # nginx_common DIR
    cat <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
EOF
}
nginx_http_common() {
    cat <<EOF
    access_log off;
    client_body_temp_path $1/client_body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
EOF
}

start_nginx() {   # start_nginx NAME CORE -> sets NGX_PID; config in $T/NAME/nginx.conf
    local name=$1 core=$2 dir="$T/$1"
    nginx -t -q -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        || die "nginx config for $name is invalid (see $dir/nginx.conf)"
    taskset -c "$core" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$dir/stdout.log" 2>"$dir/stderr.log" &
    NGX_PID=$!
    PIDS+=("$NGX_PID")
}

# ---------------------------------------------------------------- 1. upstream (nginx, core 1)
UP_PORT=$(free_port)
mkdir -p "$T/upstream"
{
    nginx_common "$T/upstream"
    cat <<EOF
events { worker_connections 4096; }
http {
$(nginx_http_common "$T/upstream")
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$UP_PORT;
        location / {
            default_type text/plain;
            return 200 "hello from upstream\n";
        }
    }
}
EOF
} >"$T/upstream/nginx.conf"
start_nginx upstream 1
UP_MASTER=$NGX_PID
UP_WORKER=$(wait_child "$UP_MASTER") || die "upstream nginx did not start: $(cat "$T/upstream/error.log" "$T/upstream/stderr.log" 2>/dev/null)"
PIDS+=("$UP_WORKER")
wait_http "http://127.0.0.1:$UP_PORT/" || die "upstream nginx does not answer on $UP_PORT"

# ---------------------------------------------------------------- 2a. Tollgate (core 0, 1 worker)
mkdir -p "$T/tollgate"
cat >"$T/tollgate/gateway.config.yml" <<EOF
http:
  hostname: 127.0.0.1
  port: 0
apiEndpoints:
  api:
    host: '*'
    paths: '/*'
serviceEndpoints:
  upstream:
    url: 'http://127.0.0.1:$UP_PORT'
policies:
  - proxy
pipelines:
  default:
    apiEndpoints:
      - api
    policies:
      - proxy:
          - action:
              serviceEndpoint: upstream
tollgate:
  accessLog: off
  client:
    maxConnections: $TG_MAXCONN
EOF
"$TOLLGATE" -t -c "$T/tollgate/gateway.config.yml" >/dev/null || die "tollgate rejected the bench config"
taskset -c 0 "$TOLLGATE" -w 1 -c "$T/tollgate/gateway.config.yml" \
    >"$T/tollgate/stdout.log" 2>"$T/tollgate/stderr.log" &
TG_MASTER=$!
PIDS+=("$TG_MASTER")
TG_PORT=
for _ in $(seq 100); do
    TG_PORT=$(sed -n 's/.*listening on http:\/\/.*:\([0-9][0-9]*\).*/\1/p' "$T/tollgate/stderr.log" | head -1)
    [[ -n $TG_PORT ]] && break
    kill -0 "$TG_MASTER" 2>/dev/null || break
    sleep 0.1
done
[[ -n $TG_PORT ]] || die "tollgate did not start: $(cat "$T/tollgate/stderr.log")"
TG_WORKER=$(wait_child "$TG_MASTER") || die "tollgate worker not found: $(cat "$T/tollgate/stderr.log")"
PIDS+=("$TG_WORKER")
wait_http "http://127.0.0.1:$TG_PORT/" || die "tollgate does not answer 200 on $TG_PORT: $(cat "$T/tollgate/stderr.log")"

# ---------------------------------------------------------------- 2b. nginx reverse proxy (core 0, 1 worker)
NG_PORT=$(free_port)
mkdir -p "$T/nginx"
{
    nginx_common "$T/nginx"
    cat <<EOF
worker_rlimit_nofile $NGX_FDS;
events { worker_connections $NGX_FDS; }
http {
$(nginx_http_common "$T/nginx")
    keepalive_requests 10000;       # same as Tollgate's client.maxKeepaliveRequests default
    keepalive_timeout 60s;          # same as Tollgate's client.keepaliveTimeout default
    upstream upstream_pool {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 10000;
    }
    server {
        listen 127.0.0.1:$NG_PORT;
        location / {
            proxy_pass http://upstream_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$T/nginx/nginx.conf"
start_nginx nginx 0
NG_MASTER=$NGX_PID
NG_WORKER=$(wait_child "$NG_MASTER") || die "nginx proxy did not start: $(cat "$T/nginx/error.log" "$T/nginx/stderr.log" 2>/dev/null)"
PIDS+=("$NG_WORKER")
wait_http "http://127.0.0.1:$NG_PORT/" || die "nginx proxy does not answer on $NG_PORT"

for name in tollgate:$TG_PORT nginx:$NG_PORT; do
    body=$(curl -s "http://127.0.0.1:${name#*:}/")
    [[ $body == "hello from upstream" ]] || die "${name%%:*}: unexpected body through the gateway: '$body'"
done

# ---------------------------------------------------------------- 3. load
declare -A RPS P50 P99 CPU10K CPUPCT RSS_IDLE RSS_LOAD NON2XX SOCKERR CPUS CORE0 CORE1 OTHER0 STEAL0 STEAL1 UPCPU

parse_wrk() {   # parse_wrk FILE -> "reqs dur_s rps p50_ms p99_ms non2xx sockerr"
    awk '
        function ms(v) {
            if (v ~ /us$/) return v * 0.001
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/)  return v * 60000
            if (v ~ /s$/)  return v * 1000
            return v + 0
        }
        function secs(v) {
            if (v ~ /us$/) return v / 1e6
            if (v ~ /ms$/) return v / 1000
            if (v ~ /m$/)  return v * 60
            return v + 0
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        / requests in / { reqs = $1; d = $4; sub(/,$/, "", d); dur = secs(d) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(/,/, ""); sockerr = $4 + $6 + $8 + $10 }
        END { printf "%d %.3f %.2f %.3f %.3f %d %d\n", reqs, dur, rps, p50, p99, non2xx, sockerr }
    ' "$1"
}

multi() { if (( ROUNDS > 1 )); then printf '%s' "$1"; fi; }   # text shown only with ROUNDS > 1

bench_one() {   # bench_one NAME ROUND PORT MASTER WORKER
    local name=$1 round=$2 port=$3 master=$4 worker=$5 url="http://127.0.0.1:$3/" c0 c1 out key="$1#$2"
    out="$T/$name/wrk.$round.txt"
    [[ -n ${RSS_IDLE[$name]:-} ]] || RSS_IDLE[$name]=$(rss_kb "$worker")
    if [[ $WARMUP -gt 0 ]]; then
        taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$url" >"$T/$name/warmup.txt" 2>&1 \
            || die "$name: wrk warm-up failed: $(cat "$T/$name/warmup.txt")"
    fi
    local k0 k1 k0b k1b u0 u1
    u0=$(cpu_ticks "$UP_WORKER")
    k0=$(core_ticks 0); k1=$(core_ticks 1)
    c0=$(cpu_ticks "$worker") || die "$name: worker $worker is gone before the measured run"
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$out" 2>&1 \
        || die "$name: wrk failed: $(cat "$out")"
    c1=$(cpu_ticks "$worker") || { echo "WARNING: $name: worker $worker died during the measured run"; c1=$c0; }
    k0b=$(core_ticks 0); k1b=$(core_ticks 1)
    u1=$(cpu_ticks "$UP_WORKER")
    CORE0[$key]=$(busy_pct "$k0" "$k0b"); CORE1[$key]=$(busy_pct "$k1" "$k1b")
    # core 0 time not spent in the gateway worker = interference (other processes, interrupts)
    OTHER0[$key]=$(tick_pct "$k0" "$k0b" 1 "$(( c1 - c0 ))")
    STEAL0[$key]=$(tick_pct "$k0" "$k0b" 2); STEAL1[$key]=$(tick_pct "$k1" "$k1b" 2)
    UPCPU[$key]=$(awk -v d="$(( u1 - u0 ))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    kill -0 "$master" 2>/dev/null || echo "WARNING: $name: master $master died during the run"
    RSS_LOAD[$name]=$(rss_kb "$worker" 2>/dev/null || echo 0)
    local reqs dur rps p50 p99 non2xx sockerr
    read -r reqs dur rps p50 p99 non2xx sockerr < <(parse_wrk "$out")
    RPS[$key]=$rps; P50[$key]=$p50; P99[$key]=$p99
    NON2XX[$key]=$non2xx; SOCKERR[$key]=$sockerr
    CPUS[$key]=$(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    CPU10K[$key]=$(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN { printf "%.4f", (n > 0 ? d / hz / n * 10000 : 0) }')
    CPUPCT[$key]=$(awk -v c="${CPUS[$key]}" -v t="$dur" 'BEGIN { printf "%.0f", (t > 0 ? 100 * c / t : 0) }')
    echo "---- $name$(multi " round $round"): wrk output (127.0.0.1:$port, worker PID $worker)"
    sed 's/^/    /' "$out"
    echo "    gateway worker CPU ${CPUS[$key]} s (${CPUPCT[$key]}% of a core), upstream worker CPU ${UPCPU[$key]} s"
    echo "    core 0 ${CORE0[$key]}% busy (${OTHER0[$key]}% not the gateway worker), ${STEAL0[$key]}% stolen;" \
        "core 1 ${CORE1[$key]}% busy, ${STEAL1[$key]}% stolen"
}

# Pinning keeps our processes on their cores but does not keep others off them: check the machine is quiet.
q0=$(core_ticks 0); q1=$(core_ticks 1); sleep 1; q0b=$(core_ticks 0); q1b=$(core_ticks 1)
QUIET="core 0 $(busy_pct "$q0" "$q0b")% busy, core 1 $(busy_pct "$q1" "$q1b")% busy (1 s before the run, gateways idle)"

echo "Tollgate bench $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
dirty=$(git status --porcelain -- . ':!bench' 2>/dev/null | wc -l || true)
dirty_note=""; if (( ${dirty:-0} > 0 )); then dirty_note=" + $dirty uncommitted files outside bench/"; fi
echo "tollgate: $("$TOLLGATE" -v 2>&1 | head -1), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$dirty_note," \
    "$TOLLGATE built $(date -u -r "$TOLLGATE" '+%Y-%m-%d %H:%M:%S UTC')"
echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
echo "settings: DURATION=${DURATION}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS IDLE_CONNS=$IDLE_CONNS ROUNDS=$ROUNDS (wrk -t1, gateway on core 0, upstream + wrk on core 1)"
echo "pre-flight: $QUIET"
if [[ $(busy_pct "$q0" "$q0b") -gt 10 || $(busy_pct "$q1" "$q1b") -gt 10 ]]; then
    echo "WARNING: the machine is not idle; other processes will skew the figures:"
    ps -eo pid,psr,pcpu,etime,args --sort=-pcpu | head -6 | cut -c1-120 | sed 's/^/    /'
fi
echo "upstream: nginx 127.0.0.1:$UP_PORT; tollgate 127.0.0.1:$TG_PORT (worker $TG_WORKER); nginx proxy 127.0.0.1:$NG_PORT (worker $NG_WORKER)"
echo

for (( round=1; round<=ROUNDS; round++ )); do
    bench_one tollgate "$round" "$TG_PORT" "$TG_MASTER" "$TG_WORKER"
    bench_one nginx "$round" "$NG_PORT" "$NG_MASTER" "$NG_WORKER"
done

# ---------------------------------------------------------------- 4. report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() {      # median NAME ARRAY -> median of ARRAY[NAME#1..ROUNDS]
    local -n arr=$2
    local r
    for (( r=1; r<=ROUNDS; r++ )); do echo "${arr[$1#$r]}"; done | sort -g |
        awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
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
    for (( round=1; round<=ROUNDS; round++ )); do
        key="$name#$round"
        what="$name$(multi " round $round")"
        if [[ ${OTHER0[$key]} -gt 5 ]]; then
            echo "WARNING: $what: ${OTHER0[$key]}% of core 0 went to something other than the gateway worker"
        fi
        if [[ ${STEAL0[$key]} -gt 5 || ${STEAL1[$key]} -gt 5 ]]; then
            echo "WARNING: $what: the hypervisor stole ${STEAL0[$key]}% of core 0 and ${STEAL1[$key]}% of core 1"
        fi
        if [[ ${NON2XX[$key]} -gt 0 || ${SOCKERR[$key]} -gt 0 ]]; then
            echo "WARNING: $what: ${NON2XX[$key]} non-2xx/3xx responses, ${SOCKERR[$key]} socket errors (see wrk output above)"
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
for f in "$T/tollgate/stderr.log" "$T/nginx/error.log" "$T/upstream/error.log"; do
    n=$(grep -c -E '\[(error|crit|alert|emerg)\]|worker .*(exit|died|signal)' "$f" 2>/dev/null || true)
    if [[ ${n:-0} -gt 0 ]]; then
        echo "WARNING: ${f#"$T"/}: $n error lines:"
        grep -E '\[(error|crit|alert|emerg)\]|worker .*(exit|died|signal)' "$f" | head -20 | sed 's/^/    /'
    fi
done
if [[ $(ps -o pid= --ppid "$TG_MASTER" | tr -d ' ') != "$TG_WORKER" ]]; then
    echo "WARNING: tollgate worker changed during the run (crashed and restarted?): $(tail -5 "$T/tollgate/stderr.log")"
fi
echo "done."
