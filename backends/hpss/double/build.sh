#!/usr/bin/env bash
# Builds the HPSS test double (a libhpss.so with the client API's entry points over a local
# directory) and its two variants into <target>/hpss-double/: libhpss.so (HPSS 9.3+: batch stage),
# libhpss-nobatch.so (an older client: asynchronous stages) and libhpss-norename.so (an entry point
# missing). Usage: backends/hpss/double/build.sh [target dir, default ./target]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../../target}/hpss-double
mkdir -p "$out"
cc=${CC:-gcc}
flags=(-shared -fPIC -O1 -Wall -Wextra -Werror -I "$here/../csrc/test-include" -pthread)
"$cc" "${flags[@]}" -o "$out/libhpss.so" "$here/hpss_double.c"
"$cc" "${flags[@]}" -DHPSS_DOUBLE_WITHOUT_BATCH -o "$out/libhpss-nobatch.so" "$here/hpss_double.c"
"$cc" "${flags[@]}" -DHPSS_DOUBLE_WITHOUT_RENAME -o "$out/libhpss-norename.so" "$here/hpss_double.c"
echo "HPSS test double built in $(cd "$out" && pwd)"
