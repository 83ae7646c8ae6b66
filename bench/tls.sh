#!/usr/bin/env bash
# bench/tls.sh: HTTPS on the client side, Tollgate vs nginx, same machine, same run.
#
#   make && ./bench/tls.sh [--quick]
#
# Three measurements per certificate type (RSA 2048 and ECDSA P-256, made for the run):
#   keep-alive   HTTPS requests/s over kept-alive connections (handshakes amortised away);
#   resumed      every request on a new connection (`Connection: close`): wrk keeps its
#                session, so each is a new connection with an abbreviated (resumed) handshake;
#   full         new connections with full handshakes (certificate signature, key exchange):
#                `openssl s_time -new`, FULL_CLIENTS of them in parallel on core 1, counted
#                over the run's wall time.
# Both gateways proxy to the same plain-HTTP upstream nginx (keep-alive pool), with the same
# certificate, protocols (TLS 1.2 and 1.3) and TLS 1.2 ciphers (ECDHE+AESGCM:ECDHE+CHACHA20,
# server preference); the negotiated protocol and cipher are printed.
#
# Environment: DURATION (s, default 10), WARMUP (s, default 3), CONNECTIONS (default 50),
#              FULL_CLIENTS (default 4),
#              ROUNDS (default 1; medians are reported), TOLLGATE, KEEP_TMP=1, WAIT_IDLE (s).
# --quick: DURATION=3 WARMUP=1 unless set explicitly.
#
# Layout (2 cores): gateway under test on core 0 (one worker); upstream nginx and wrk on core 1.
set -euo pipefail
PROG=tls.sh

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
if [[ $QUICK == 1 ]]; then DURATION=${DURATION:-3}; WARMUP=${WARMUP:-1}; fi
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-1}
FULL_CLIENTS=${FULL_CLIENTS:-4}
KEEP_TMP=${KEEP_TMP:-0}

bench_setup openssl
raise_fd_limit 8192
BENCH_SCHEME=https
CIPHERS="ECDHE+AESGCM:ECDHE+CHACHA20"

# ---------------------------------------------------------------- certificates (made for this run)
mkdir -p "$T/certs"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/certs/rsa.key" -out "$T/certs/rsa.crt" \
    -days 2 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null \
    || die "cannot make the RSA certificate"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/certs/ec.key" \
    -out "$T/certs/ec.crt" -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null \
    || die "cannot make the ECDSA certificate"
chmod 644 "$T/certs/"*

start_upstream

# ---------------------------------------------------------------- gateways, one pair per certificate
declare -A PORT MASTER WORKER
for kind in rsa ec; do
    name="tollgate-$kind"
    mkdir -p "$T/$name"
    tollgate_config "$TOLLGATE_PROXY_STEP" >"$T/$name/gateway.config.yml"
    # HTTPS instead of HTTP: same pipeline, TLS on the client side
    sed -i 's/^http:$/https:/' "$T/$name/gateway.config.yml"
    sed -i "/^  port: 0$/a\\
  tls:\\
    default:\\
      key: $T/certs/$kind.key\\
      cert: $T/certs/$kind.crt" "$T/$name/gateway.config.yml"
    start_tollgate "$name"
    PORT[$name]=$TG_PORT MASTER[$name]=$TG_MASTER WORKER[$name]=$TG_WORKER

    name="nginx-$kind"
    port=$(free_port)
    nginx_proxy_conf "$name" "$port" 8192 "" \
"    ssl_certificate $T/certs/$kind.crt;
    ssl_certificate_key $T/certs/$kind.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers $CIPHERS;
    ssl_prefer_server_ciphers on;"
    sed -i "s/listen 127.0.0.1:$port;/listen 127.0.0.1:$port ssl;/" "$T/$name/nginx.conf"
    start_nginx_gateway "$name" "$port"
    PORT[$name]=$port MASTER[$name]=$GW_MASTER WORKER[$name]=$GW_WORKER
done

for name in tollgate-rsa nginx-rsa tollgate-ec nginx-ec; do
    wait_http "https://127.0.0.1:${PORT[$name]}/" -k || die "$name does not answer 200 over HTTPS on ${PORT[$name]}"
    body=$(curl -sk "https://127.0.0.1:${PORT[$name]}/")
    [[ $body == "hello from upstream" ]] || die "$name: unexpected body through the gateway: '$body'"
done

# the protocol and cipher each gateway negotiates with this machine's OpenSSL client (as wrk's)
negotiated() {
    openssl s_client -connect "127.0.0.1:$1" -servername localhost </dev/null 2>/dev/null |
        awk '/^New, / { p = $2; c = $NF } END { print p, c }' | tr -d ','
}

# ---------------------------------------------------------------- load
preflight
print_header "Tollgate TLS bench" "DURATION=${DURATION}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS WAIT_IDLE=${WAIT_IDLE:-0}s (wrk -t1, gateway on core 0, upstream + wrk on core 1)"
for name in tollgate-rsa nginx-rsa tollgate-ec nginx-ec; do
    echo "$name: 127.0.0.1:${PORT[$name]} (worker ${WORKER[$name]}), negotiates $(negotiated "${PORT[$name]}")"
done
echo

# full_one KEY ROUND PORT WORKER: FULL_CLIENTS `openssl s_time -new` for DURATION s on core 1;
# sets RPS (handshakes/s over the wall time) and CPU10K (worker CPU s per 10k handshakes)
full_one() {
    local name=$1 round=$2 port=$3 worker=$4 key="$1#$2" i c0 c1 t0 t1 n=0 out
    wait_idle
    c0=$(cpu_ticks "$worker"); t0=$(date +%s.%N)
    local clients=()
    for (( i=1; i<=FULL_CLIENTS; i++ )); do
        taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new -time "$DURATION" -www / \
            >"$T/runs/$name.$round.$i.txt" 2>&1 &
        clients+=($!)
    done
    wait "${clients[@]}" || true
    t1=$(date +%s.%N); c1=$(cpu_ticks "$worker")
    for (( i=1; i<=FULL_CLIENTS; i++ )); do
        out=$(sed -n 's/^\([0-9]*\) connections in [0-9]* real seconds.*/\1/p' "$T/runs/$name.$round.$i.txt")
        [[ -n $out ]] || die "$name: openssl s_time failed: $(tail -3 "$T/runs/$name.$round.$i.txt")"
        n=$(( n + out ))
    done
    REQS[$key]=$n
    RPS[$key]=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", n / (b - a) }')
    CPUS[$key]=$(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    CPU10K[$key]=$(awk -v d="$(( c1 - c0 ))" -v hz="$CLK_TCK" -v n="$n" \
        'BEGIN { printf "%.4f", (n > 0 ? d / hz / n * 10000 : 0) }')
    CPUPCT[$key]=$(awk -v c="${CPUS[$key]}" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * c / (b - a) }')
    P50[$key]=-; P99[$key]=-; NON2XX[$key]=0; SOCKERR[$key]=0; OTHER0[$key]=0; STEAL0[$key]=0; STEAL1[$key]=0
    echo "---- $name$(multi " round $round"): $n full handshakes by $FULL_CLIENTS s_time clients, worker CPU ${CPUS[$key]} s (${CPUPCT[$key]}% of a core)"
}

for mode in keepalive resumed full; do
    if [[ $mode == resumed ]]; then WRK_EXTRA=(-H "Connection: close"); else WRK_EXTRA=(); fi
    for kind in rsa ec; do
        for (( round=1; round<=ROUNDS; round++ )); do
            for gw in tollgate nginx; do
                name="$gw-$kind"
                if [[ $mode == full ]]; then
                    full_one "$name.$mode" "$round" "${PORT[$name]}" "${WORKER[$name]}"
                else
                    bench_one "$name.$mode" "$round" "${PORT[$name]}" "${MASTER[$name]}" "${WORKER[$name]}"
                fi
            done
        done
    done
done

# ---------------------------------------------------------------- report
row() { printf '%-28s %12s %10s %10s %14s %7s %8s %8s\n' "$@"; }
summary=()
for mode in keepalive resumed full; do
    echo
    case $mode in
    keepalive) echo "==== HTTPS keep-alive: GET / through one gateway worker, ${DURATION}s, $CONNECTIONS connections$(multi ", $ROUNDS rounds")" ;;
    resumed) echo "==== new connections, resumed TLS sessions: GET / with Connection: close, ${DURATION}s, $CONNECTIONS connections$(multi ", $ROUNDS rounds") (req/s = handshakes/s)" ;;
    full) echo "==== new connections, full TLS handshakes: openssl s_time -new x $FULL_CLIENTS, ${DURATION}s$(multi ", $ROUNDS rounds") (req/s = handshakes/s)" ;;
    esac
    row gateway 'req/s' 'p50 ms' 'p99 ms' 'CPU s/10k req' 'CPU %' non-2xx sockerr
    declare -A M=()
    for kind in rsa ec; do
        for gw in tollgate nginx; do
            name="$gw-$kind.$mode"
            for (( round=1; round<=ROUNDS; round++ )); do
                key="$name#$round"
                row "$name$(multi " #$round")" "${RPS[$key]}" "${P50[$key]}" "${P99[$key]}" \
                    "${CPU10K[$key]}" "${CPUPCT[$key]}" "${NON2XX[$key]}" "${SOCKERR[$key]}"
            done
            for a in RPS P99 CPU10K; do M[$gw.$a]=$(median "$name" "$a"); done
        done
        line="$mode $kind: tollgate/nginx$(multi " (medians)") req/s $(ratio "${M[tollgate.RPS]}" "${M[nginx.RPS]}"), p99 $(ratio "${M[tollgate.P99]}" "${M[nginx.P99]}"), CPU per request $(ratio "${M[tollgate.CPU10K]}" "${M[nginx.CPU10K]}")"
        echo "$line"
        summary+=("$line")
        disturbance_warnings "tollgate-$kind.$mode" "nginx-$kind.$mode"
    done
done

echo
echo "==== summary"
printf '%s\n' "${summary[@]}"
echo
check_logs "$T/tollgate-rsa/stderr.log" "$T/tollgate-ec/stderr.log" "$T/nginx-rsa/error.log" \
    "$T/nginx-ec/error.log" "$T/upstream/error.log"
for kind in rsa ec; do
    check_worker "tollgate-$kind" "${MASTER[tollgate-$kind]}" "${WORKER[tollgate-$kind]}"
done
echo "done."
