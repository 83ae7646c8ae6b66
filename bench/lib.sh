# shellcheck shell=bash disable=SC2034
# bench/lib.sh: shared by the bench/*.sh scripts. Sourced, not run.
# (SC2034: most variables set here are read by the scripts that source it.)
#
# The sourcing script sets PROG (its name, for messages), sources this, calls `bench_args "$@"`,
# sets its defaults (DURATION, WARMUP, CONNECTIONS, ROUNDS, KEEP_TMP; QUICK tells whether --quick
# was given), then calls `bench_setup TOOL...`, which checks the tools and the
# machine, changes to the repository root, makes the temp dir $T and installs the cleanup traps.
# Every process started through these functions is recorded in PIDS and stopped by PID on exit.
#
# Layout (2 cores): gateway under test on core 0 (one worker); upstream nginx and wrk on core 1.

# ---------------------------------------------------------------- arguments, setup, processes & cleanup
die() { echo "$PROG: $*" >&2; exit 1; }

# The calling script's header comment, from its line 2 to the first line that is not a comment.
usage() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }

# bench_args "$@": --quick sets QUICK=1, -h/--help prints usage. A script with arguments of its
# own defines bench_extra_arg ARG, which returns 0 when it took ARG. Anything else is an error.
bench_args() {
    QUICK=0
    local a
    for a in "$@"; do
        case "$a" in
            --quick) QUICK=1 ;;
            -h|--help) usage; exit 0 ;;
            *)
                if ! { declare -F bench_extra_arg >/dev/null && bench_extra_arg "$a"; }; then
                    echo "$PROG: unknown argument: $a" >&2; usage >&2; exit 2
                fi ;;
        esac
    done
}

bench_setup() {   # bench_setup TOOL... (beyond the ones every bench needs)
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
    TOLLGATE=${TOLLGATE:-build/tollgate}
    local tool
    for tool in wrk nginx taskset luajit curl getconf "$@"; do
        command -v "$tool" >/dev/null || { echo "$PROG: '$tool' not found" >&2; exit 1; }
    done
    [[ -x $TOLLGATE ]] || { echo "$PROG: $TOLLGATE not found: run make first" >&2; exit 1; }
    if [[ $(nproc) -lt 2 ]]; then
        echo "$PROG: needs at least 2 cores (gateway on core 0, upstream + wrk on core 1)" >&2; exit 1
    fi
    CLK_TCK=$(getconf CLK_TCK)
    T=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
    chmod 755 "$T"           # nginx workers may run as an unprivileged user
    mkdir -p "$T/runs"
    PIDS=()                  # every process we started (or discovered as a child of one), in start order
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

stop_all() {   # SIGTERM everything in PIDS (newest first), SIGKILL what is left after 5 s
    local pid i
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$PROG: PID $pid did not stop on SIGTERM; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    PIDS=()
    wait 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [[ $KEEP_TMP == 1 ]]; then echo "$PROG: temp files kept in $T" >&2; else rm -rf "$T"; fi
    exit "$rc"
}

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

wait_http() {   # wait_http URL [CURL ARGS...]: until it answers 200
    local url=$1; shift
    for _ in $(seq 100); do
        if [[ $(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" || true) == 200 ]]; then return 0; fi
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
lost_pct() {    # lost_pct "SAMPLE0" "SAMPLE1" WALL0 WALL1 -> % of the wall time missing from the core's total ticks
    awk -v a="$1" -v b="$2" -v w0="$3" -v w1="$4" -v hz="$CLK_TCK" 'BEGIN { split(a, x, " "); split(b, y, " ");
        w = (w1 - w0) * hz; v = (w > 0 ? 100 - 100 * (y[3] - x[3]) / w : 0); printf "%.0f", (v > 0 ? v : 0) }'
}

# Raise our fd limit so wrk, idle-conns and the gateways (which inherit the hard limit) have room.
raise_fd_limit() {   # raise_fd_limit NEED -> sets FD_LIMIT
    local need=$1
    if [[ $(ulimit -Hn) != unlimited && $(ulimit -Hn) -lt $need ]]; then
        ulimit -Hn "$need" 2>/dev/null || echo "$PROG: warning: hard fd limit $(ulimit -Hn) < $need" >&2
    fi
    ulimit -Sn "$(ulimit -Hn)"
    FD_LIMIT=$(ulimit -n)
}

# ---------------------------------------------------------------- nginx (upstream, gateways)
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

# The upstream: nginx, 1 worker, core 1, 200 "hello from upstream\n" for any path.
start_upstream() {   # -> UP_PORT UP_MASTER UP_WORKER
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
}

# An nginx reverse proxy to the upstream (1 worker, core 0), with Tollgate's client-side defaults.
#   nginx_proxy_conf NAME PORT WORKER_CONNECTIONS [MAIN_EXTRA [HTTP_EXTRA [LOCATION_EXTRA]]]
# writes $T/NAME/nginx.conf; the EXTRAs are inserted verbatim at the top level (e.g. load_module),
# in http {} and in location / {} before proxy_pass.
nginx_proxy_conf() {
    local name=$1 port=$2 conns=$3 main_extra=${4:-} http_extra=${5:-} location_extra=${6:-}
    mkdir -p "$T/$name"
    {
        [[ -z $main_extra ]] || printf '%s\n' "$main_extra"
        nginx_common "$T/$name"
        cat <<EOF
worker_rlimit_nofile $conns;
events { worker_connections $conns; }
http {
$(nginx_http_common "$T/$name")
    keepalive_requests 10000;       # same as Tollgate's client.maxKeepaliveRequests default
    keepalive_timeout 60s;          # same as Tollgate's client.keepaliveTimeout default
    upstream upstream_pool {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
        keepalive_requests 10000;
    }
$http_extra
    server {
        listen 127.0.0.1:$port;
        location / {
$location_extra
            proxy_pass http://upstream_pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$T/$name/nginx.conf"
}

# start_nginx_gateway NAME PORT: starts $T/NAME/nginx.conf on core 0 -> GW_PORT GW_MASTER GW_WORKER
start_nginx_gateway() {
    local name=$1
    start_nginx "$name" 0
    GW_PORT=$2
    GW_MASTER=$NGX_PID
    GW_WORKER=$(wait_child "$GW_MASTER") || die "$name did not start: $(cat "$T/$name/error.log" "$T/$name/stderr.log" 2>/dev/null)"
    PIDS+=("$GW_WORKER")
}

# ---------------------------------------------------------------- Tollgate
# tollgate_config PIPELINE_POLICIES [TOLLGATE_EXTRA]: a gateway.config.yml on stdout. One apiEndpoint
# (host *, paths /*), the upstream as serviceEndpoint `upstream`, port 0, accessLog off.
# PIPELINE_POLICIES is the YAML list under the pipeline's `policies:` (indented 6 spaces); the
# top-level `policies:` list is derived from it. TOLLGATE_EXTRA goes under `tollgate:` (2 spaces).
tollgate_config() {
    local steps=$1 extra=${2:-}
    cat <<EOF
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
$(sed -n 's/^      - \([a-z-]*\):.*/  - \1/p' <<<"$steps")
pipelines:
  default:
    apiEndpoints:
      - api
    policies:
$steps
tollgate:
  accessLog: off
$extra
EOF
}
TOLLGATE_PROXY_STEP="      - proxy:
          - action:
              serviceEndpoint: upstream"

# start_tollgate NAME: runs $TOLLGATE -w 1 on core 0 with $T/NAME/gateway.config.yml
#   -> TG_PORT TG_MASTER TG_WORKER. Does not wait for a 200 (the pipeline may need a token).
start_tollgate() {
    local name=$1 dir="$T/$1"
    "$TOLLGATE" -t -c "$dir/gateway.config.yml" >"$dir/check.log" 2>&1 \
        || die "tollgate rejected the $name config: $(cat "$dir/check.log")"
    taskset -c 0 "$TOLLGATE" -w 1 -c "$dir/gateway.config.yml" >"$dir/stdout.log" 2>"$dir/stderr.log" &
    TG_MASTER=$!
    PIDS+=("$TG_MASTER")
    TG_PORT=
    for _ in $(seq 100); do
        TG_PORT=$(sed -n 's/.*listening on https\{0,1\}:\/\/.*:\([0-9][0-9]*\).*/\1/p' "$dir/stderr.log" | head -1)
        [[ -n $TG_PORT ]] && break
        kill -0 "$TG_MASTER" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $TG_PORT ]] || die "tollgate ($name) did not start: $(cat "$dir/stderr.log")"
    TG_WORKER=$(wait_child "$TG_MASTER") || die "tollgate ($name) worker not found: $(cat "$dir/stderr.log")"
    PIDS+=("$TG_WORKER")
}

# ---------------------------------------------------------------- header & pre-flight
# Pinning keeps our processes on their cores but does not keep others off them: check the machine is quiet.
preflight() {   # -> QUIET (text), QUIET_BUSY (1 if either core was > 10 % busy)
    local q0 q1 q0b q1b
    q0=$(core_ticks 0); q1=$(core_ticks 1); sleep 1; q0b=$(core_ticks 0); q1b=$(core_ticks 1)
    QUIET="core 0 $(busy_pct "$q0" "$q0b")% busy, core 1 $(busy_pct "$q1" "$q1b")% busy (1 s before the run, gateways idle)"
    QUIET_BUSY=0
    if [[ $(busy_pct "$q0" "$q0b") -gt 10 || $(busy_pct "$q1" "$q1b") -gt 10 ]]; then QUIET_BUSY=1; fi
}

print_header() {   # print_header TITLE SETTINGS (after preflight)
    echo "$1 $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    local dirty dirty_note=""
    dirty=$(git status --porcelain -- . ':!bench' 2>/dev/null | wc -l || true)
    if (( ${dirty:-0} > 0 )); then dirty_note=" + $dirty uncommitted files outside bench/"; fi
    echo "tollgate: $("$TOLLGATE" -v 2>&1 | head -1), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$dirty_note," \
        "$TOLLGATE built $(date -u -r "$TOLLGATE" '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "settings: $2"
    echo "pre-flight: $QUIET"
    if [[ $QUIET_BUSY == 1 ]]; then
        echo "WARNING: the machine is not idle; other processes will skew the figures:"
        ps -eo pid,psr,pcpu,etime,args --sort=-pcpu | head -6 | cut -c1-120 | sed 's/^/    /'
    fi
}

# ---------------------------------------------------------------- load
declare -A RPS P50 P99 CPU10K CPUPCT RSS_IDLE RSS_LOAD NON2XX SOCKERR CPUS CORE0 CORE1 OTHER0 STEAL0 STEAL1 UPCPU
declare -A REQS DUR WARMREQS OTHER1 LOST0 LOST1 WRKCPU
# bench_one's URL scheme (BENCH_SCHEME=https for TLS gateways) and extra wrk arguments
# (e.g. WRK_EXTRA=(-H "Connection: close") for a new connection, so a new handshake, per request)
BENCH_SCHEME=${BENCH_SCHEME:-http}
WRK_EXTRA=()

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

# wait_idle: with WAIT_IDLE=S > 0, wait up to S seconds until both cores are <= 10 % busy over 1 s
# (our gateways are idle between runs, so what is busy is someone else); says so if it waited.
wait_idle() {
    [[ ${WAIT_IDLE:-0} -gt 0 ]] || return 0
    local start=$SECONDS q0 q1 q0b q1b b0 b1 waited=0
    while :; do
        q0=$(core_ticks 0); q1=$(core_ticks 1); sleep 1; q0b=$(core_ticks 0); q1b=$(core_ticks 1)
        b0=$(busy_pct "$q0" "$q0b"); b1=$(busy_pct "$q1" "$q1b")
        if [[ $b0 -le 10 && $b1 -le 10 ]]; then
            if [[ $waited == 1 ]]; then echo "    (waited $(( SECONDS - start )) s for idle cores)"; fi
            return 0
        fi
        waited=1
        if (( SECONDS - start >= WAIT_IDLE )); then
            echo "    (cores still busy after ${WAIT_IDLE} s: core 0 $b0%, core 1 $b1%; running anyway)"
            return 0
        fi
    done
}

# bench_one KEY ROUND PORT MASTER WORKER [SCRIPT [SCRIPT ARGS...]]
# Warm-up (unmeasured) then the measured wrk run against http://127.0.0.1:PORT/ from core 1, with
# the worker's CPU and both cores' /proc/stat sampled around it; results in the arrays above under
# "KEY#ROUND", wrk's output in $T/runs/. SCRIPT: a wrk Lua script (-s), its ARGS after `--`.
bench_one() {
    local name=$1 round=$2 port=$3 master=$4 worker=$5 url="${BENCH_SCHEME:-http}://127.0.0.1:$3/" c0 c1 out key="$1#$2"
    shift 5
    local script=()
    if [[ $# -gt 0 ]]; then script=(-s "$1" "$url" -- "${@:2}"); else script=("$url"); fi
    out="$T/runs/$name.$round.txt"
    [[ -n ${RSS_IDLE[$name]:-} ]] || RSS_IDLE[$name]=$(rss_kb "$worker")
    wait_idle
    WARMREQS[$key]=0
    if [[ $WARMUP -gt 0 ]]; then
        taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "${WRK_EXTRA[@]}" "${script[@]}" >"$T/runs/$name.$round.warmup.txt" 2>&1 \
            || die "$name: wrk warm-up failed: $(cat "$T/runs/$name.$round.warmup.txt")"
        WARMREQS[$key]=$(parse_wrk "$T/runs/$name.$round.warmup.txt" | awk '{ print $1 }')
    fi
    local k0 k1 k0b k1b u0 u1 w0 w1 wrkcpu TIMEFORMAT='%3U %3S'
    u0=$(cpu_ticks "$UP_WORKER")
    w0=${EPOCHREALTIME/,/.}
    k0=$(core_ticks 0); k1=$(core_ticks 1)
    c0=$(cpu_ticks "$worker") || die "$name: worker $worker is gone before the measured run"
    # bash's `time` gives wrk's own user + system CPU (TIMEFORMAT above)
    if ! { time taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${WRK_EXTRA[@]}" "${script[@]}" \
            >"$out" 2>&1; } 2>"$out.cpu"; then
        die "$name: wrk failed: $(cat "$out")"
    fi
    c1=$(cpu_ticks "$worker") || { echo "WARNING: $name: worker $worker died during the measured run"; c1=$c0; }
    k0b=$(core_ticks 0); k1b=$(core_ticks 1)
    w1=${EPOCHREALTIME/,/.}
    u1=$(cpu_ticks "$UP_WORKER")
    wrkcpu=$(awk -v hz="$CLK_TCK" '{ printf "%d", ($1 + $2) * hz + 0.5 }' "$out.cpu")
    WRKCPU[$key]=$(awk -v d="$wrkcpu" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    CORE0[$key]=$(busy_pct "$k0" "$k0b"); CORE1[$key]=$(busy_pct "$k1" "$k1b")
    # core 0 time not spent in the gateway worker = interference (other processes, interrupts);
    # core 1 time not spent in wrk or the upstream worker, likewise
    OTHER0[$key]=$(tick_pct "$k0" "$k0b" 1 "$(( c1 - c0 ))")
    OTHER1[$key]=$(tick_pct "$k1" "$k1b" 1 "$(( u1 - u0 + wrkcpu ))")
    STEAL0[$key]=$(tick_pct "$k0" "$k0b" 2); STEAL1[$key]=$(tick_pct "$k1" "$k1b" 2)
    # wall time the core's /proc/stat accounting does not cover (the vCPU did not run and it was
    # not reported as steal): the run lost that share of the core without any figure above showing it
    LOST0[$key]=$(lost_pct "$k0" "$k0b" "$w0" "$w1"); LOST1[$key]=$(lost_pct "$k1" "$k1b" "$w0" "$w1")
    UPCPU[$key]=$(awk -v d="$(( u1 - u0 ))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    kill -0 "$master" 2>/dev/null || echo "WARNING: $name: master $master died during the run"
    RSS_LOAD[$name]=$(rss_kb "$worker" 2>/dev/null || echo 0)
    local reqs dur rps p50 p99 non2xx sockerr
    read -r reqs dur rps p50 p99 non2xx sockerr < <(parse_wrk "$out")
    REQS[$key]=$reqs; DUR[$key]=$dur
    RPS[$key]=$rps; P50[$key]=$p50; P99[$key]=$p99
    NON2XX[$key]=$non2xx; SOCKERR[$key]=$sockerr
    CPUS[$key]=$(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    CPU10K[$key]=$(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" -v n="$reqs" \
        'BEGIN { printf "%.4f", (n > 0 ? d / hz / n * 10000 : 0) }')
    CPUPCT[$key]=$(awk -v c="${CPUS[$key]}" -v t="$dur" 'BEGIN { printf "%.0f", (t > 0 ? 100 * c / t : 0) }')
    echo "---- $name$(multi " round $round"): wrk output (127.0.0.1:$port, worker PID $worker)"
    sed 's/^/    /' "$out"
    echo "    gateway worker CPU ${CPUS[$key]} s (${CPUPCT[$key]}% of a core), upstream worker CPU ${UPCPU[$key]} s," \
        "wrk CPU ${WRKCPU[$key]} s"
    echo "    core 0 ${CORE0[$key]}% busy (${OTHER0[$key]}% not the gateway worker), ${STEAL0[$key]}% stolen," \
        "${LOST0[$key]}% unaccounted; core 1 ${CORE1[$key]}% busy (${OTHER1[$key]}% not wrk or the upstream)," \
        "${STEAL1[$key]}% stolen, ${LOST1[$key]}% unaccounted"
}

# ---------------------------------------------------------------- report
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() {      # median NAME ARRAY -> median of ARRAY[NAME#1..ROUNDS]
    local -n arr=$2
    local r
    for (( r=1; r<=ROUNDS; r++ )); do echo "${arr[$1#$r]}"; done | sort -g |
        awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# is_disturbed KEY#ROUND: the run shared its cores: > 5 % of core 0 (the gateway's) went to something
# other than the gateway worker, was stolen or unaccounted, or > 5 % of core 1 went to something other
# than wrk and the upstream. Core 1's steal and unaccounted shares are shown but not counted: when
# core 1 is partly idle (it is whenever the gateway is the bottleneck) this VM reports 10-25 % of its
# time as steal + unaccounted with nothing else running (the host's cost of the idle vCPU's wake-ups).
is_disturbed() {
    [[ ${OTHER0[$1]} -gt 5 || ${STEAL0[$1]} -gt 5 || ${LOST0[$1]:-0} -gt 5 || ${OTHER1[$1]:-0} -gt 5 ]]
}

# disturbance_warnings NAME...: a WARNING per round where is_disturbed holds, saying why
disturbance_warnings() {
    local name round key what
    for name in "$@"; do
        for (( round=1; round<=ROUNDS; round++ )); do
            key="$name#$round"
            what="$name$(multi " round $round")"
            if [[ ${OTHER0[$key]} -gt 5 ]]; then
                echo "WARNING: $what: ${OTHER0[$key]}% of core 0 went to something other than the gateway worker"
            fi
            if [[ ${STEAL0[$key]} -gt 5 ]]; then
                echo "WARNING: $what: the hypervisor stole ${STEAL0[$key]}% of core 0"
            fi
            if [[ ${LOST0[$key]:-0} -gt 5 ]]; then
                echo "WARNING: $what: ${LOST0[$key]}% of core 0's time went unaccounted (vCPU not running)"
            fi
            if [[ ${OTHER1[$key]:-0} -gt 5 ]]; then
                echo "WARNING: $what: ${OTHER1[$key]}% of core 1 went to something other than wrk and the upstream"
            fi
        done
    done
}

# check_logs FILE...: WARNING with the error lines of gateway/upstream logs
check_logs() {
    local f n
    for f in "$@"; do
        n=$(grep -c -E '\[(error|crit|alert|emerg)\]|worker .*(exit|died|signal)' "$f" 2>/dev/null || true)
        if [[ ${n:-0} -gt 0 ]]; then
            echo "WARNING: ${f#"$T"/}: $n error lines:"
            grep -E '\[(error|crit|alert|emerg)\]|worker .*(exit|died|signal)' "$f" | head -20 | sed 's/^/    /'
        fi
    done
}

# check_worker NAME MASTER WORKER: WARNING if the master's worker is no longer WORKER
check_worker() {
    if [[ $(ps -o pid= --ppid "$2" | tr -d ' ') != "$3" ]]; then
        echo "WARNING: $1 worker changed during the run (crashed and restarted?): $(tail -5 "$T/$1/stderr.log" 2>/dev/null)"
    fi
}
