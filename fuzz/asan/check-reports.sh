#!/bin/sh
# fuzz/asan/check-reports.sh DIR: after `make test-asan`'s busted run, lists the
# sanitizer reports written in DIR (ASAN_OPTIONS/UBSAN_OPTIONS log_path with
# log_exe_name: <kind>.<program>.<pid>) and fails if the gateway (tollgate) or
# Lua with the C core loaded (luajit: busted and the helpers it starts, which
# load build-asan/libtollgate.so) wrote any. Reports of other programs (they
# only get the ASan runtime through LD_PRELOAD) are shown, not counted.
dir=${1:?usage: check-reports.sh DIR}
failed=0
for f in "$dir"/*; do
    [ -f "$f" ] || continue
    [ -s "$f" ] || continue
    name=$(basename "$f")
    prog=$(echo "$name" | sed 's/^[a-z]*\.\(.*\)\.[0-9]*$/\1/')
    case $prog in
    tollgate|luajit*)
        failed=1
        echo "== sanitizer report from $prog: $f"
        sed -n '1,60p' "$f"
        ;;
    *)
        echo "== (not counted) report from $prog: $f"
        sed -n '1,12p' "$f"
        ;;
    esac
done
if [ $failed = 0 ]; then
    echo "test-asan: no ASan, UBSan or LeakSanitizer report from the gateway or the C core"
else
    echo "test-asan: sanitizer reports above (all in $dir)"
fi
exit $failed
