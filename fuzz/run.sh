#!/bin/bash
# fuzz/run.sh MODE TARGET...: runs the libFuzzer targets that `make fuzz-build`
# put in build-fuzz/ (called by `make fuzz` and `make fuzz-regress`).
#
#   fuzz     each target for $FUZZ_TIME seconds (default 60), $FUZZ_JOBS at a
#            time (default 1), starting from its seeds in fuzz/corpus/<target>/
#            (only read); the inputs it finds are kept in
#            build-fuzz/corpus/<target>/ for the next run, its output in
#            build-fuzz/logs/<target>.log, a crashing input in
#            build-fuzz/artifacts/<target>/. Fails if any target crashed.
#   regress  each target once over every input of fuzz/corpus/<target>/ (seeds
#            and the crashes found so far), no fuzzing. Fails on any crash.
#
# $FUZZ_KNOWN (see fuzz/README.md) lets fuzzing step over known, unfixed bugs.
set -u
cd "$(dirname "$0")/.." || exit 2

mode=${1:?usage: fuzz/run.sh fuzz|regress TARGET...}
shift
B=build-fuzz
FUZZ_TIME=${FUZZ_TIME:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}

# Per-target options: the largest input worth trying, a dictionary, and
# LeakSanitizer between inputs (off for the Lua targets: the Lua heap holds
# what a run allocates until the collector runs, so every input would look
# like it leaked and stop the world for a scan; the leak check at exit
# still runs).
options() {
    local t=$1 o="-timeout=25 -rss_limit_mb=4096"
    case $t in
    request|response) o="$o -max_len=8192 -dict=fuzz/dict/http.dict" ;;
    config) o="$o -max_len=8192 -dict=fuzz/dict/config.dict -detect_leaks=0" ;;
    jwt) o="$o -max_len=4096 -dict=fuzz/dict/jwt.dict" ;;
    template) o="$o -max_len=1024 -dict=fuzz/dict/template.dict -detect_leaks=0" ;;
    esac
    echo "$o"
}

run_fuzz() {
    local t=$1
    mkdir -p "$B/corpus/$t" "$B/artifacts/$t" "$B/logs"
    # shellcheck disable=SC2046
    "$B/fuzz_$t" $(options "$t") -max_total_time="$FUZZ_TIME" -print_final_stats=1 \
        -artifact_prefix="$B/artifacts/$t/" "$B/corpus/$t" "fuzz/corpus/$t" \
        >"$B/logs/$t.log" 2>&1
    echo $? >"$B/logs/$t.rc"
}

report() {
    local t=$1 rc
    rc=$(cat "$B/logs/$t.rc" 2>/dev/null || echo 1)
    if [ "$rc" = 0 ]; then
        local runs cov
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/logs/$t.log")
        cov=$(grep -a ' cov: ' "$B/logs/$t.log" | tail -1 | sed 's/.*\(cov: [0-9]*\).*\(corp: [^ ]*\).*/\1, \2/')
        echo "ok   $t: ${runs:-?} runs in ${FUZZ_TIME}s, ${cov}"
        return 0
    fi
    # shellcheck disable=SC2012
    echo "FAIL $t (exit $rc): see $B/logs/$t.log; the input: $(ls -t "$B/artifacts/$t/" 2>/dev/null | head -1 | sed "s|^|$B/artifacts/$t/|")"
    grep -a -m1 -A12 -E '^(fuzz|==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$B/logs/$t.log" | head -24 | sed 's/^/     /'
    return 1
}

case $mode in
fuzz)
    echo "fuzzing $* for ${FUZZ_TIME}s each, $FUZZ_JOBS at a time (logs: $B/logs/)"
    for t in "$@"; do
        while [ "$(jobs -rp | wc -l)" -ge "$FUZZ_JOBS" ]; do wait -n; done
        run_fuzz "$t" &
    done
    wait
    failed=0
    for t in "$@"; do report "$t" || failed=1; done
    exit $failed
    ;;
regress)
    mkdir -p "$B/logs" "$B/artifacts"
    failed=0
    for t in "$@"; do
        n=$(find "fuzz/corpus/$t" -type f | wc -l)
        # each input once, by name (so the one that crashes is named)
        # shellcheck disable=SC2046
        if find "fuzz/corpus/$t" -type f -print0 | sort -z |
            xargs -0 "$B/fuzz_$t" $(options "$t") -artifact_prefix="$B/artifacts/regress-$t-" \
                >"$B/logs/$t.regress.log" 2>&1; then
            echo "ok   $t: $n inputs"
        else
            failed=1
            echo "FAIL $t: $(grep -a '^Running: ' "$B/logs/$t.regress.log" | tail -1 | sed 's/^Running: //') crashes (log: $B/logs/$t.regress.log)"
            grep -a -m1 -A12 -E '^(fuzz|==[0-9]+==ERROR|SUMMARY|.*runtime error)' \
                "$B/logs/$t.regress.log" | head -24 | sed 's/^/     /'
        fi
    done
    exit $failed
    ;;
*)
    echo "usage: fuzz/run.sh fuzz|regress TARGET..." >&2
    exit 2
    ;;
esac
