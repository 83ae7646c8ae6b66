#!/usr/bin/env bash
# bench/policies.sh: Tollgate's rate-limit -> jwt (RS256) -> proxy pipeline vs an OpenResty-style
# gateway (nginx + lua-nginx-module doing the same checks, bench/resty/gateway.lua), same run.
#
#   make && ./bench/policies.sh [--quick]        (bench/run.sh also runs it, after its own part)
#
# Scenarios (each measured for both sides in the same run, see bench/README.md):
#   a. full pipeline, Tollgate's verified-token cache off (cacheSize: 0), one valid token:
#      tollgate vs openresty-style (target: >= 1.2x req/s, CPU per request <= 1.0x)
#   b. full pipeline, cache on (default), one valid token vs Tollgate proxy-only (target: >= 0.85x)
#   c. a token with a bad signature, every request 401: tollgate vs openresty-style rejections/s
#      (target: >= 1.2x)
#
# Environment: DURATION (s, default 10), CONNECTIONS (default 50), WARMUP (s, default 3),
#              ROUNDS (default 1; every scenario's pair is run once per round, medians reported),
#              TOLLGATE (binary, default build/tollgate), KEEP_TMP=1 keeps the temp dir,
#              WAIT_IDLE (s, default 0): before each run wait up to that long for both cores to be idle.
# --quick: DURATION=3 WARMUP=1 unless set explicitly.
#
# Layout (2 cores): gateway under test on core 0 (one worker); upstream nginx and wrk on core 1.
# Needs nginx's Lua module (make bench-deps: libnginx-mod-http-lua, lua-cjson) and openssl.
set -euo pipefail
PROG=policies.sh

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"
if [[ $QUICK == 1 ]]; then
    DURATION=${DURATION:-3}; WARMUP=${WARMUP:-1}
fi
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-1}
KEEP_TMP=${KEEP_TMP:-0}

bench_setup openssl

NGX_MODULES=/usr/share/nginx/modules
for m in ndk_http_module.so ngx_http_lua_module.so; do
    [[ -f $NGX_MODULES/$m ]] || die "$NGX_MODULES/$m not found: run make bench-deps (libnginx-mod-http-lua)"
done

# The same limit on both sides, high enough never to be reached: the counters are still
# incremented (and checked, below) on every request.
RL_MAX=1000000000
RL_WINDOW_MS=3600000

raise_fd_limit 4096
NGX_CONNS=4096; [[ $FD_LIMIT != unlimited && $NGX_CONNS -gt $FD_LIMIT ]] && NGX_CONNS=$FD_LIMIT

# ---------------------------------------------------------------- keys and tokens
# An RSA-2048 pair for the gateways, and a second key that signs the bad token (same header and
# claims, a well-formed signature of the right length that does not verify: both sides pay for
# the RSA verification before refusing).
mkdir -p "$T/keys"
for k in signer other; do
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/keys/$k.pem" 2>/dev/null \
        || die "openssl genpkey failed"
done
openssl pkey -in "$T/keys/signer.pem" -pubout -out "$T/keys/public.pem" 2>/dev/null || die "openssl pkey -pubout failed"
chmod 644 "$T/keys/public.pem"

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
mint() {   # mint PRIVATE_KEY IAT: RS256 token valid for a day from IAT (as examples/coffee-shop/mint-token.sh)
    local header payload sig
    header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
    payload=$(printf '{"sub":"bench-user","iss":"tollgate-bench","iat":%d,"exp":%d}' "$2" "$(( $2 + 86400 ))" | b64url)
    sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$1" -binary | b64url)
    printf '%s.%s.%s\n' "$header" "$payload" "$sig"
}
NOW=$(date +%s)
GOOD_TOKEN=$(mint "$T/keys/signer.pem" "$NOW")
BAD_TOKEN=$(mint "$T/keys/other.pem" "$NOW")    # same header and claims, another key's signature

# ---------------------------------------------------------------- 1. upstream (nginx, core 1)
start_upstream

# ---------------------------------------------------------------- 2. Tollgate, three configurations (core 0, 1 worker each)
pipeline_steps() {   # pipeline_steps JWT_EXTRA: rate-limit -> jwt -> proxy
    cat <<EOF
      - rate-limit:
          - action:
              max: $RL_MAX
              windowMs: $RL_WINDOW_MS
      - jwt:
          - action:
              secretOrPublicKeyFile: $T/keys/public.pem
              checkCredentialExistence: false$1
$TOLLGATE_PROXY_STEP
EOF
}
declare -A PORT MASTER WORKER
for name in tollgate-proxy tollgate-nocache tollgate-cache; do
    mkdir -p "$T/$name"
    case $name in
        tollgate-proxy)   steps=$TOLLGATE_PROXY_STEP ;;
        tollgate-nocache) steps=$(pipeline_steps $'\n              cacheSize: 0') ;;
        tollgate-cache)   steps=$(pipeline_steps '') ;;
    esac
    tollgate_config "$steps" >"$T/$name/gateway.config.yml"
    start_tollgate "$name"
    PORT[$name]=$TG_PORT MASTER[$name]=$TG_MASTER WORKER[$name]=$TG_WORKER
    wait_http "http://127.0.0.1:$TG_PORT/" -H "Authorization: Bearer $GOOD_TOKEN" \
        || die "$name does not answer 200 on $TG_PORT: $(cat "$T/$name/stderr.log")"
done

# ---------------------------------------------------------------- 3. OpenResty-style gateway (core 0, 1 worker)
RESTY_PORT=$(free_port)
nginx_proxy_conf openresty "$RESTY_PORT" "$NGX_CONNS" \
"load_module $NGX_MODULES/ndk_http_module.so;
load_module $NGX_MODULES/ngx_http_lua_module.so;" \
"    lua_package_path '$PWD/bench/resty/?.lua;;';
    lua_shared_dict ratelimit 1m;
    init_by_lua_block {
        require('gateway').init{ key_file = '$T/keys/public.pem', max = $RL_MAX, window = $(( RL_WINDOW_MS / 1000 )) }
    }" \
"            access_by_lua_block { require('gateway').access() }"
start_nginx_gateway openresty "$RESTY_PORT"
PORT[openresty]=$GW_PORT MASTER[openresty]=$GW_MASTER WORKER[openresty]=$GW_WORKER
wait_http "http://127.0.0.1:$RESTY_PORT/" -H "Authorization: Bearer $GOOD_TOKEN" \
    || die "openresty-style gateway does not answer 200 on $RESTY_PORT: $(cat "$T/openresty/error.log" "$T/openresty/stderr.log" 2>/dev/null)"

# ---------------------------------------------------------------- 4. correctness checks (before and after the load)
# probe PORT [TOKEN] -> "STATUS BODY" (headers in $T/probe.headers)
probe() {
    local auth=() code
    [[ -z ${2:-} ]] || auth=(-H "Authorization: Bearer $2")
    code=$(curl -s -D "$T/probe.headers" -o "$T/probe.body" -w '%{http_code}' "${auth[@]}" "http://127.0.0.1:$1/" || true)
    printf '%s %s\n' "$code" "$(cat "$T/probe.body" 2>/dev/null)"
}
# rl_remaining PORT -> X-RateLimit-Remaining of a request with the valid token (counts as one request)
rl_remaining() {
    curl -s -o /dev/null -D - -H "Authorization: Bearer $GOOD_TOKEN" "http://127.0.0.1:$1/" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-ratelimit-remaining" { print $2 }'
}
FAILED=0
check_gateway() {   # check_gateway NAME WHEN: valid token -> 200 + upstream body; bad signature, none -> 401
    local name=$1 port=${PORT[$1]} good bad none
    good=$(probe "$port" "$GOOD_TOKEN")
    if [[ $name == tollgate-proxy ]]; then
        echo "check $2: $name: valid token -> $good"
        [[ $good == "200 hello from upstream" ]] || { echo "FAILED: $name: expected 200 hello from upstream"; FAILED=1; }
        return 0
    fi
    local rl
    rl=$(tr -d '\r' <"$T/probe.headers" | awk -F': ' 'tolower($1) == "x-ratelimit-remaining" { print $2 }')
    bad=$(probe "$port" "$BAD_TOKEN")
    local challenge
    challenge=$(tr -d '\r' <"$T/probe.headers" | awk -F': ' 'tolower($1) == "www-authenticate" { print $2 }')
    none=$(probe "$port")
    echo "check $2: $name: valid token -> $good (X-RateLimit-Remaining $rl); bad signature -> $bad ($challenge); no token -> $none"
    [[ $good == "200 hello from upstream" ]] || { echo "FAILED: $name: a valid token must get 200 and the upstream's body"; FAILED=1; }
    [[ $bad == 401* ]] || { echo "FAILED: $name: a token with a bad signature must get 401"; FAILED=1; }
    [[ $none == 401* ]] || { echo "FAILED: $name: a request without a token must get 401"; FAILED=1; }
    [[ -n $rl ]] || { echo "FAILED: $name: no X-RateLimit-Remaining header (is the rate limit running?)"; FAILED=1; }
}
GATEWAYS=(tollgate-nocache tollgate-cache tollgate-proxy openresty)

# ---------------------------------------------------------------- 5. load
preflight
print_header "Tollgate policies bench" "DURATION=${DURATION}s WARMUP=${WARMUP}s CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS WAIT_IDLE=${WAIT_IDLE:-0}s (wrk -t1 -s bench/bearer.lua, gateway on core 0, upstream + wrk on core 1)"
echo "lua-nginx-module: $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?'), LuaJIT $(dpkg-query -W -f='${Version}' libluajit2-5.1-2 2>/dev/null || echo '?'), OpenSSL $(openssl version | awk '{ print $2 }')"
echo "upstream: nginx 127.0.0.1:$UP_PORT; $(for n in "${GATEWAYS[@]}"; do printf '%s 127.0.0.1:%s (worker %s)\n' "$n" "${PORT[$n]}" "${WORKER[$n]}"; done | paste -sd';' | sed 's/;/; /g')"
echo "rate limit (both): max $RL_MAX per ${RL_WINDOW_MS} ms per client address; token: RS256, RSA-2048, ${#GOOD_TOKEN} bytes"
for name in "${GATEWAYS[@]}"; do check_gateway "$name" before; done
[[ $FAILED == 0 ]] || die "a gateway gave a wrong answer before the load: not measuring"
echo

# Each run: KEY (the row), GATEWAY (the process), TOKEN. The rate-limit counter is read just
# before the warm-up and just after the measured run: it must have counted every request wrk
# completed, plus at most the requests in flight when each wrk run stopped.
declare -A RLCOUNT RLEXPECT
measure() {   # measure KEY ROUND GATEWAY TOKEN
    local key=$1 round=$2 gw=$3 token=$4 before after
    [[ $gw == tollgate-proxy ]] || before=$(rl_remaining "${PORT[$gw]}")
    bench_one "$key" "$round" "${PORT[$gw]}" "${MASTER[$gw]}" "${WORKER[$gw]}" bench/bearer.lua "$token"
    if [[ $gw != tollgate-proxy ]]; then
        after=$(rl_remaining "${PORT[$gw]}")
        local k="$key#$round"
        RLEXPECT[$k]=$(( ${WARMREQS[$k]} + ${REQS[$k]} ))
        RLCOUNT[$k]=$(( ${before:-0} - ${after:-0} - 1 ))
        echo "    rate limit counted ${RLCOUNT[$k]} requests; wrk completed ${RLEXPECT[$k]} (warm-up + measured)"
    fi
}
for (( round=1; round<=ROUNDS; round++ )); do
    measure a.tollgate "$round" tollgate-nocache "$GOOD_TOKEN"
    measure a.openresty "$round" openresty "$GOOD_TOKEN"
    measure b.tollgate "$round" tollgate-cache "$GOOD_TOKEN"
    measure b.tollgate-proxy "$round" tollgate-proxy "$GOOD_TOKEN"
    measure c.tollgate "$round" tollgate-cache "$BAD_TOKEN"
    measure c.openresty "$round" openresty "$BAD_TOKEN"
done

# ---------------------------------------------------------------- 6. report
echo
for name in "${GATEWAYS[@]}"; do check_gateway "$name" after; done

declare -A REJ OK2XX
for key in "${!REQS[@]}"; do
    REJ[$key]=$(awk -v n="${NON2XX[$key]}" -v t="${DUR[$key]}" 'BEGIN { printf "%.2f", (t > 0 ? n / t : 0) }')
    OK2XX[$key]=$(( REQS[$key] - NON2XX[$key] ))
done

row() { printf '%-24s %12s %10s %10s %14s %7s %12s %8s %8s\n' "$@"; }
declare -A M
table() {   # table REJECTING(0/1) KEY...
    local rejecting=$1 name round key a; shift
    if [[ $rejecting == 1 ]]; then
        row gateway 'rejected/s' 'p50 ms' 'p99 ms' 'CPU s/10k rej' 'CPU %' 'load RSS KB' '2xx' sockerr
    else
        row gateway 'req/s' 'p50 ms' 'p99 ms' 'CPU s/10k req' 'CPU %' 'load RSS KB' non-2xx sockerr
    fi
    for name in "$@"; do
        for (( round=1; round<=ROUNDS; round++ )); do
            key="$name#$round"
            if [[ $rejecting == 1 ]]; then
                row "$name$(multi " #$round")" "${REJ[$key]}" "${P50[$key]}" "${P99[$key]}" \
                    "${CPU10K[$key]}" "${CPUPCT[$key]}" "${RSS_LOAD[$name]}" "${OK2XX[$key]}" "${SOCKERR[$key]}"
            else
                row "$name$(multi " #$round")" "${RPS[$key]}" "${P50[$key]}" "${P99[$key]}" \
                    "${CPU10K[$key]}" "${CPUPCT[$key]}" "${RSS_LOAD[$name]}" "${NON2XX[$key]}" "${SOCKERR[$key]}"
            fi
        done
        for a in RPS REJ P50 P99 CPU10K CPUPCT; do M[$name.$a]=$(median "$name" "$a"); done
        if [[ $ROUNDS -gt 1 ]]; then
            row "$name median" "${M[$name.$([[ $rejecting == 1 ]] && echo REJ || echo RPS)]}" "${M[$name.P50]}" \
                "${M[$name.P99]}" "${M[$name.CPU10K]}" "${M[$name.CPUPCT]}" "" "" ""
        fi
    done
}
ratios() {   # ratios A B THROUGHPUT_FIELD LABEL
    echo "ratio $1/$2$(multi " (medians)"): $4 $(ratio "${M[$1.$3]}" "${M[$2.$3]}")," \
        "p50 $(ratio "${M[$1.P50]}" "${M[$2.P50]}"), p99 $(ratio "${M[$1.P99]}" "${M[$2.P99]}")," \
        "CPU per request $(ratio "${M[$1.CPU10K]}" "${M[$2.CPU10K]}")"
}
TARGETS=()
clean_median() {   # clean_median NAME ARRAY -> "median n" over the rounds that were not disturbed
    local -n arr=$2
    local r
    for (( r=1; r<=ROUNDS; r++ )); do
        if ! is_disturbed "$1#$r"; then echo "${arr[$1#$r]}"; fi
    done | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a 0";
            else if (NR % 2) print a[(NR + 1) / 2], NR; else print (a[NR / 2] + a[NR / 2 + 1]) / 2, NR }'
}
verdict() {   # verdict VALUE OP LIMIT -> MET / NOT MET / n/a
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN { if (v == "n/a") print "n/a";
        else if ((op == ">=" && v + 0 >= l + 0) || (op == "<=" && v + 0 <= l + 0)) print "MET"; else print "NOT MET" }'
}
# target LABEL FIELD A B OP LIMIT: the ratio A/B of FIELD (RPS, REJ, CPU10K) against the target, from
# the medians of all rounds and from the medians of the undisturbed rounds only.
target() {
    local label=$1 field=$2 a=$3 b=$4 op=$5 limit=$6 all clean ca cb na nb
    all=$(ratio "${M[$a.$field]}" "${M[$b.$field]}")
    read -r ca na < <(clean_median "$a" "$field")
    read -r cb nb < <(clean_median "$b" "$field")
    clean=n/a; if [[ $na -gt 0 && $nb -gt 0 ]]; then clean=$(ratio "$ca" "$cb"); fi
    TARGETS+=("$(printf '%-58s %2s %-5s %6s %-8s %6s %-8s %s' "$label" "$op" "$limit" "$all" "$(verdict "$all" "$op" "$limit")" \
        "$clean" "$(verdict "$clean" "$op" "$limit")" "$na+$nb")")
    printf 'target: %s %s %s: %s %s; undisturbed runs only (%s+%s of %s): %s %s\n' "$label" "$op" "$limit" \
        "$all" "$(verdict "$all" "$op" "$limit")" "$na" "$nb" "$(( 2 * ROUNDS ))" "$clean" "$(verdict "$clean" "$op" "$limit")"
}

echo
echo "==== a. rate-limit + jwt (RS256, Tollgate cache off) + proxy, valid token, ${DURATION}s, $CONNECTIONS connections$(multi ", $ROUNDS rounds")"
table 0 a.tollgate a.openresty
ratios a.tollgate a.openresty RPS req/s
target "a. req/s tollgate (cacheSize 0) / openresty-style" RPS a.tollgate a.openresty '>=' 1.20
target "a. CPU per request tollgate (cacheSize 0) / openresty-style" CPU10K a.tollgate a.openresty '<=' 1.00

echo
echo "==== b. Tollgate rate-limit + jwt (cache on) + proxy vs Tollgate proxy-only, valid token, ${DURATION}s, $CONNECTIONS connections$(multi ", $ROUNDS rounds")"
table 0 b.tollgate b.tollgate-proxy
ratios b.tollgate b.tollgate-proxy RPS req/s
target "b. req/s tollgate full pipeline (cache on) / proxy-only" RPS b.tollgate b.tollgate-proxy '>=' 0.85

echo
echo "==== c. token with a bad signature (every request 401), ${DURATION}s, $CONNECTIONS connections$(multi ", $ROUNDS rounds")"
table 1 c.tollgate c.openresty
ratios c.tollgate c.openresty REJ rejections/s
target "c. rejections/s tollgate / openresty-style" REJ c.tollgate c.openresty '>=' 1.20

echo
echo "==== targets (issue 3): ratios of medians, all rounds and undisturbed rounds only (see WARNINGs)"
printf '%-58s %8s %6s %-8s %6s %-8s %s\n' target limit all '' undist. '' 'undisturbed runs'
printf '%s\n' "${TARGETS[@]}"

# ---------------------------------------------------------------- 7. warnings
KEYS=(a.tollgate a.openresty b.tollgate b.tollgate-proxy c.tollgate c.openresty)
disturbance_warnings "${KEYS[@]}"
for name in "${KEYS[@]}"; do
    for (( round=1; round<=ROUNDS; round++ )); do
        key="$name#$round"
        what="$name$(multi " round $round")"
        if [[ $name == c.* ]]; then
            if [[ ${OK2XX[$key]} -ne 0 ]]; then
                echo "WARNING: $what: ${OK2XX[$key]} responses were not rejected (bad signature accepted?)"
            fi
        elif [[ ${NON2XX[$key]} -gt 0 ]]; then
            echo "WARNING: $what: ${NON2XX[$key]} non-2xx/3xx responses (see wrk output above)"
        fi
        if [[ ${SOCKERR[$key]} -gt 0 ]]; then
            echo "WARNING: $what: ${SOCKERR[$key]} socket errors (see wrk output above)"
        fi
        if [[ -n ${RLCOUNT[$key]:-} ]] && [[ ${RLCOUNT[$key]} -lt ${RLEXPECT[$key]} ||
                                           ${RLCOUNT[$key]} -gt $(( ${RLEXPECT[$key]} + 2 * CONNECTIONS )) ]]; then
            echo "WARNING: $what: the rate limit counted ${RLCOUNT[$key]} requests, wrk completed ${RLEXPECT[$key]}" \
                "(expected that many, plus at most $(( 2 * CONNECTIONS )) in flight)"
        fi
    done
done
[[ $FAILED == 0 ]] || echo "WARNING: a gateway gave a wrong answer after the load (see the 'check after' lines)"

# ---------------------------------------------------------------- sanity: gateway logs
echo
check_logs "$T/tollgate-proxy/stderr.log" "$T/tollgate-nocache/stderr.log" "$T/tollgate-cache/stderr.log" \
    "$T/openresty/error.log" "$T/upstream/error.log"
for name in tollgate-proxy tollgate-nocache tollgate-cache; do check_worker "$name" "${MASTER[$name]}" "${WORKER[$name]}"; done
check_worker openresty "${MASTER[openresty]}" "${WORKER[openresty]}"
echo "done."
