#!/usr/bin/env bash
# Runs every test: the Rust suites (unit, conformance, router, socket, queue on SQLite and PostgreSQL),
# then a started server checked by the pytest deployment suite. Usage: scripts/test.sh
# Needs: Rust (cargo), Python 3 with venv, a PostgreSQL and a MariaDB server (see README "Running the
# tests").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\n==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || fail "cargo not found: install Rust from https://rustup.rs"
command -v python3 >/dev/null || fail "python3 not found: apt-get install python3 python3-venv"

pg_url=${ARCHIVEINTERFACE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
if ! python3 - "$pg_url" <<'PY'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=3).close()
PY
then
  fail "PostgreSQL is not reachable at $pg_url. Start it (Debian: apt-get install postgresql && pg_ctlcluster 15 main start; database 'test', trust auth for 'postgres' on 127.0.0.1) or set ARCHIVEINTERFACE_TEST_POSTGRES_URL."
fi

mysql_url=${ARCHIVEINTERFACE_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306}
if ! python3 - "$mysql_url" <<'PY'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
socket.create_connection((u.hostname or "127.0.0.1", u.port or 3306), timeout=3).close()
PY
then
  fail "MariaDB is not reachable at $mysql_url (the Oracle HSM sideband tests keep their catalog there). Start it (Debian: apt-get install mariadb-server && service mariadb start; root may log in from 127.0.0.1 without a password) or set ARCHIVEINTERFACE_TEST_MYSQL_URL to mysql://user:password@host:port of a user who may create databases."
fi
export ARCHIVEINTERFACE_TEST_MYSQL_URL=$mysql_url

# The Python environment first: the deployment suite uses it, and so may test services the Rust tests
# start (their doubles and servers).
venv=${ARCHIVEINTERFACE_TEST_VENV:-$root/.venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" || fail "could not create a virtualenv: apt-get install python3-venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r post_deployment_tests/requirements.txt
export ARCHIVEINTERFACE_TEST_VENV=$venv

say "building the HPSS test double (a libhpss.so over a local directory)"
backends/hpss/double/build.sh "$root/target"

# The cloud tier's tests need an S3 server: moto in server mode on loopback, in-memory, for the whole
# run (every test makes its own bucket). An S3 server given in ARCHIVEINTERFACE_TEST_S3_URL is used
# as it is.
moto_pid=
stop_moto() { if [ -n "$moto_pid" ]; then kill -TERM "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; fi; }
trap stop_moto EXIT
if [ -z "${ARCHIVEINTERFACE_TEST_S3_URL:-}" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r backends/cloud/tests/requirements.txt
  moto_port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  moto_log=$(mktemp)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 &
  moto_pid=$!
  export ARCHIVEINTERFACE_TEST_S3_URL=http://127.0.0.1:$moto_port
  for _ in $(seq 1 100); do
    "$venv/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $moto_port), timeout=1).close()" 2>/dev/null && break
    kill -0 "$moto_pid" 2>/dev/null || { cat "$moto_log"; fail "moto_server (the loopback S3 server) exited at start-up"; }
    sleep 0.2
  done
  echo "S3 server (moto) at $ARCHIVEINTERFACE_TEST_S3_URL"
fi

say "building (once, debug profile: the tests and the server below use the same binaries)"
cargo build --workspace --all-targets --locked

say "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -TERM "$server_pid"; wait "$server_pid" || true; fi
  rm -rf "$work"
}
trap 'cleanup; stop_moto' EXIT

# Starts a server on a fresh prefix with the Swift users below plus `extra_toml`, runs the pytest
# deployment suite against it, and stops it (a clean SIGTERM shutdown is part of the check).
# Usage: deployment_suite <name> <large file bytes> <many-files count> <extra TOML> [server flags...]
deployment_suite() {
  local name=$1 large=$2 many=$3 extra_toml=$4
  shift 4
  say "Python deployment suite against a started server ($name)"
  local dir="$work/$name"
  mkdir -p "$dir/prefix" "$dir/ingest"
  # Two tempauth users of different accounts for the Swift tests (python-swiftclient).
  cat >"$dir/server.toml" <<TOML
[swift]
token_secret = "deployment-suite"

[[swift.users]]
account = "test"
user = "tester"
key = "testing"

[[swift.users]]
account = "other"
user = "tester2"
key = "testing2"
$extra_toml
TOML
  ARCHIVEINTERFACE_PATCH_SOURCE_DIRS="[\"$dir/ingest\"]" \
    target/debug/archiveinterface -c "$dir/server.toml" --prefix "$dir/prefix" -a 127.0.0.1 -p 0 "$@" 2>"$dir/server.log" &
  server_pid=$!
  local url=
  for _ in $(seq 1 100); do
    url=$(grep -o 'listening on http://[0-9.:]*' "$dir/server.log" | head -n1 | sed 's/listening on //') || true
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$dir/server.log"; fail "the $name server exited at start-up"; }
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$dir/server.log"; fail "the $name server did not start"; }
  echo "server at $url (prefix $dir/prefix)"
  ARCHIVE_URL=$url LARGE_FILE_SIZE=$large MANY_FILES_TEST_COUNT=$many \
    PATCH_SOURCE_DIR="$dir/ingest" \
    SWIFT_AUTH_URL="$url/auth/v1.0" SWIFT_USER=test:tester SWIFT_KEY=testing \
    SWIFT_OTHER_USER=other:tester2 SWIFT_OTHER_KEY=testing2 \
    timeout 900 "$venv/bin/python" -m pytest -q post_deployment_tests
  kill -TERM "$server_pid"
  wait "$server_pid" || fail "the $name server did not shut down cleanly on SIGTERM"
  server_pid=
}

deployment_suite posix "${LARGE_FILE_SIZE:-268435456}" "${MANY_FILES_TEST_COUNT:-1000}" ""

# HPSS through its C test double: the double's state and keytab live next to the prefix, the server's
# own state (queue, Swift index) in a local state directory, as at a site.
mkdir -p "$work/hpss-double"
echo "test keytab" >"$work/hpss-double/keytab"
ARCHIVEINTERFACE_STATE_DIR="$work/hpss-state" HPSS_DOUBLE_DIR="$work/hpss-double" deployment_suite hpss 33554432 200 "
[hpss]
library = \"$root/target/hpss-double/libhpss.so\"
auth = \"$work/hpss-double/keytab\"
sitename = \"test.site\"
stage_poll_ms = 50
" -t hpss --use-id2filename

# LTFS DM (-t ltfsdm) with the project's ltfsdm test double standing for the real client; its state
# lives in a directory of this run, named through the command prefix as a sudo rule would be.
mkdir -p "$work/ltfsdm-state" "$work/ltfsdm-lists"
deployment_suite ltfsdm 33554432 200 "
[ltfsdm]
binary = \"$root/backends/ltfsdm/double/ltfsdm\"
pools = [\"pool1\"]
command_prefix = [\"env\", \"LTFSDM_DOUBLE_STATE=$work/ltfsdm-state\"]
list_dir = \"$work/ltfsdm-lists\"" -t ltfsdm

# Oracle HSM sideband: the archive directory is /prefix on a "SAM-QFS mount" ($work/hsm_sideband), the
# catalog a fresh database on MariaDB, and samqfs-double stands in for stage, archive and release.
sideband_db="${mysql_url%/}/sideband_suite_$$"
target/debug/samqfs-double --db "$sideband_db" create-catalog
sideband_command() {
  printf '["%s", "--db", "%s", "--mount", "%s", "--tapes", "%s", "--log", "%s", "%s"]' \
    "$root/target/debug/samqfs-double" "$sideband_db" "$work/hsm_sideband" "$work/sideband-tapes" \
    "$work/sideband-commands.log" "$1"
}
deployment_suite hsm_sideband 33554432 200 "[hsm_sideband]
url = \"$sideband_db\"
sam_qfs_prefix = \"/prefix\"
stage_command = $(sideband_command stage)
archive_command = $(sideband_command archive)
release_command = $(sideband_command release)" -t hsm_sideband
target/debug/samqfs-double --db "$sideband_db" drop-catalog

say "all tests passed"
