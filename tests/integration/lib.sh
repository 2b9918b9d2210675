# Shared helpers for the integration tests: TAP output, a scratch state
# directory, a throwaway git repository, the service in the background, and
# one way (sq) to query the store whichever backend holds it.
# Each test sources this file; the binaries come from the test environment
# (ORCH_SUPERVISOR, ORCH_WORKER_PATH) that meson sets.
#
# The store is SQLite at $ORCH_STATE_DIR/tasks.db, or PostgreSQL when
# ORCH_TEST_PG_URL names a test cluster (a libpq URI of a superuser, as
# tests/pg/cluster.sh gives): then each test makes a database of its own
# (tests run side by side), exports ORCH_DATABASE_URL for it and drops it at
# exit.  TEST_DB says which: sqlite or pg.
set -u

T=$(mktemp -d "${TMPDIR:-/tmp}/orch-it.XXXXXX")
export ORCH_STATE_DIR="$T/state"
export HOME="$T/home"
export ORCH_RETRY_BACKOFF_MS="${ORCH_RETRY_BACKOFF_MS:-50}"
export ORCH_LLM_PROVIDER="${ORCH_LLM_PROVIDER:-scripted}"
export NO_COLOR=1
unset ORCH_LLM_API_KEY OPENAI_API_KEY ANTHROPIC_API_KEY
mkdir -p "$HOME"
SUP=${ORCH_SUPERVISOR:?set by meson test}
REAL_WORKER=${ORCH_WORKER_PATH:?set by meson test}
BAD_WORKER=${ORCH_BAD_WORKER:-}
TEST_PG_URL=${ORCH_TEST_PG_URL:-}
TEST_PG_DB=
TEST_PG_MORE=
TEST_DB=sqlite
[ -n "$TEST_PG_URL" ] && TEST_DB=pg
LIB_DIR=$(dirname "${BASH_SOURCE[0]}")
# The test's own variables are not the program's: it refuses unknown ORCH_*.
unset ORCH_SUPERVISOR ORCH_BAD_WORKER ORCH_TESTS_DIR ORCH_ESCAPE_PROBE
unset ORCH_TEST_PG_URL
SVC=
tap_n=0
tap_failed=0

cleanup() {
	if [ -n "$SVC" ]; then
		kill -9 "$SVC" 2>/dev/null
		wait "$SVC" 2>/dev/null
	fi
	local db
	for db in $TEST_PG_DB $TEST_PG_MORE; do
		psql -XAtq "$TEST_PG_URL" -c "SET client_min_messages = warning" \
			-c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
	done
	rm -rf "$T"
}
trap cleanup EXIT

ok() { # STATUS DESCRIPTION
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}

check() { # DESCRIPTION COMMAND...
	local d=$1
	shift
	if "$@" >"$T/check.out" 2>&1; then
		ok 0 "$d"
	else
		ok 1 "$d"
		sed 's/^/#   /' "$T/check.out" | head -20
	fi
}

is() { # GOT WANT DESCRIPTION
	if [ "$1" = "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		echo "#   got:  '$1'"
		echo "#   want: '$2'"
	fi
}

like() { # GOT PATTERN DESCRIPTION (grep -E)
	if printf '%s' "$1" | grep -Eq -- "$2"; then
		ok 0 "$3"
	else
		ok 1 "$3"
		echo "#   got:  '$(printf '%s' "$1" | head -c 600)'"
		echo "#   want: /$2/"
	fi
}

done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
	exit $?
}

bail() {
	echo "Bail out! $*"
	[ -f "$T/service.log" ] && sed 's/^/# svc: /' "$T/service.log" | tail -30
	exit 1
}

# sq SQL: query the store; values separated by |, one row per line, NULL as
# nothing, on either backend (psql -A -t prints what sqlite3 prints; every
# statement's rows when SQL holds several).  The SQL must be of both
# dialects: the sql_* helpers below give the expressions that differ, and a
# boolean is CAST to INTEGER (PostgreSQL would print t/f).
sq() {
	if [ "$TEST_DB" = pg ]; then
		psql -XAtq -v ON_ERROR_STOP=1 "$ORCH_DATABASE_URL" -c "$1"
	else
		sqlite3 -cmd '.timeout 5000' "$ORCH_STATE_DIR/tasks.db" "$1"
	fi
}

on_pg() { [ "$TEST_DB" = pg ]; }

# sql_json COLUMN KEY: the expression for COLUMN's JSON member KEY as text.
sql_json() {
	if on_pg; then
		echo "($1::json ->> '$2')"
	else
		echo "json_extract($1, '\$.$2')"
	fi
}

# sql_ago DAYS: a timestamp DAYS days ago, in the store's text format.
sql_ago() {
	if on_pg; then
		echo "to_char((now() AT TIME ZONE 'UTC') - interval '$1 days', 'YYYY-MM-DD HH24:MI:SS.MS')"
	else
		echo "strftime('%Y-%m-%d %H:%M:%f', 'now', '-$1 days')"
	fi
}

# sql_octets EXPR: the length of the text EXPR in bytes.
sql_octets() {
	if on_pg; then
		echo "octet_length($1)"
	else
		echo "length(CAST($1 AS BLOB))"
	fi
}

# sql_chr N: the character of code N (char() in SQLite, chr() in PostgreSQL).
sql_chr() {
	if on_pg; then
		echo "chr($1)"
	else
		echo "char($1)"
	fi
}

# sql_concat EXPR SEP: the aggregate of EXPR's values joined by SEP, in the
# order of the rows' id (group_concat in SQLite, string_agg in PostgreSQL).
sql_concat() {
	if on_pg; then
		echo "string_agg(CAST($1 AS TEXT), '$2' ORDER BY id)"
	else
		echo "group_concat($1, '$2')"
	fi
}

# sql_dump: the whole store as text (every row of every table).
sql_dump() {
	if on_pg; then
		pg_dump --no-owner "$ORCH_DATABASE_URL"
	else
		sqlite3 -cmd '.timeout 5000' "$ORCH_STATE_DIR/tasks.db" .dump
	fi
}

# backup_query FILE SQL: SQL on a backup that `backup` made: the SQLite file
# itself, or on PostgreSQL its pg_dump archive restored into a scratch
# database (made and dropped here).
backup_query() {
	local db url rc
	if ! on_pg; then
		sqlite3 "$1" "$2"
		return
	fi
	db=${TEST_PG_DB}_r
	url=$(pg_url_db "$TEST_PG_URL" "$db")
	# (client_min_messages: no NOTICE when there is nothing to drop.)
	psql -XAtq "$TEST_PG_URL" -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" \
		>/dev/null || return 1
	if pg_restore --no-owner --exit-on-error -d "$url" "$1" \
		2>"$T/restore.err"; then
		psql -XAtq -v ON_ERROR_STOP=1 "$url" -c "$2"
		rc=$?
	else
		rc=1
		cat "$T/restore.err" >&2
	fi
	psql -XAtq "$TEST_PG_URL" -c "DROP DATABASE $db" >/dev/null
	return $rc
}

# backup_intact FILE: "ok" for a sound backup (integrity_check of the SQLite
# file; for a pg_dump archive, that pg_restore reads its whole table of
# contents).
backup_intact() {
	if on_pg; then
		pg_restore --list "$1" >/dev/null && echo ok
	else
		sqlite3 "$1" 'PRAGMA integrity_check'
	fi
}

# skip DESCRIPTION REASON: a TAP test skipped, with why.
skip() {
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $1 # SKIP $2"
}

# db_intact [DESCRIPTION]: the store's own consistency check.  SQLite: integrity_check.
# PostgreSQL: amcheck over every B-tree index of the schema, with every
# heap row looked up in its index (heapallindexed), which is what a torn or
# half-applied write would break.
db_intact() {
	local got
	if on_pg; then
		got=$(psql -XAtq -v ON_ERROR_STOP=1 "$ORCH_DATABASE_URL" 2>&1 <<'SQL'
CREATE EXTENSION IF NOT EXISTS amcheck;
SELECT count(bt_index_check(c.oid, true)) FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am a ON a.oid = c.relam
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE a.amname = 'btree' AND n.nspname = 'public';
SQL
)
		case $got in
		[1-9]*) got=ok ;;
		esac
		is "$got" ok "${1:-the database is intact} (amcheck)"
	else
		is "$(sq 'PRAGMA integrity_check')" ok "${1:-the database is intact}"
	fi
}

# store_new NAME: a new, empty store for a test that moves to a second state
# directory: SQLite makes it there by itself; on PostgreSQL it is a second
# database of the test's (dropped at exit too), in ORCH_DATABASE_URL.
store_new() {
	on_pg || return 0
	psql -XAtq -v ON_ERROR_STOP=1 "$TEST_PG_URL" \
		-c "CREATE DATABASE ${TEST_PG_DB}_$1" >/dev/null ||
		bail "cannot make the database ${TEST_PG_DB}_$1"
	TEST_PG_MORE="$TEST_PG_MORE ${TEST_PG_DB}_$1"
	ORCH_DATABASE_URL=$(pg_url_db "$TEST_PG_URL" "${TEST_PG_DB}_$1")
}

# The test's own database on the PostgreSQL test cluster.
if on_pg; then
	. "$LIB_DIR/../pg/cluster.sh"
	TEST_PG_DB=orch_t_$(basename "$0" .sh | tr -c 'a-z0-9\n' _)_$$
	psql -XAtq -v ON_ERROR_STOP=1 "$TEST_PG_URL" \
		-c "CREATE DATABASE $TEST_PG_DB" >/dev/null ||
		bail "cannot make the database $TEST_PG_DB in $TEST_PG_URL"
	ORCH_DATABASE_URL=$(pg_url_db "$TEST_PG_URL" "$TEST_PG_DB")
	export ORCH_DATABASE_URL
	unset DB_PATH
fi

# script_write_a: the scripted model's script for the small task most tests
# run (plan, write a.txt, finish, approve), in $T/script.json, which
# ORCH_LLM_SCRIPT then names.
script_write_a() {
	cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Planning.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Write a.txt."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Wrote a.txt."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "tool_calls": [{"name": "submit_review", "arguments":
      {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
	export ORCH_LLM_SCRIPT="$T/script.json"
}

# script_write_abc: as script_write_a with three files, the second turn
# answered after 3 s (a window to kill something in).
script_write_abc() {
	cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Planning.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Write a.txt, b.txt and c.txt."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "b", "delay_ms": 3000, "tool_calls": [{"name": "write_file",
      "arguments": {"path": "b.txt", "content": "beta\n"}}]},
    {"text": "c", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "c.txt", "content": "gamma\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Wrote three files."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "tool_calls": [{"name": "submit_review", "arguments":
      {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
	export ORCH_LLM_SCRIPT="$T/script.json"
}

# make_repo DIR: a small git repository with one commit.
make_repo() {
	mkdir -p "$1"
	git -C "$1" init -q -b main
	printf '# Demo project\n' >"$1/README.md"
	printf 'print("hi")\n' >"$1/app.py"
	git -C "$1" add -A
	git -C "$1" -c user.name=t -c user.email=t@t commit -qm init
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local end=$(($(date +%s) + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.05
	done
	return 0
}

state_of() { sq "SELECT workflow_state FROM tasks WHERE id=$1"; }
state_is() { [ "$(state_of "$1")" = "$2" ]; }

service_start() {
	"$SUP" serve >>"$T/service.log" 2>&1 &
	SVC=$!
	wait_for 10 test -S "$ORCH_STATE_DIR/orch.sock" || bail "service did not start"
	wait_for 10 "$SUP" list || bail "service does not answer"
}

service_kill() { # SIGNAL
	kill "-$1" "$SVC" 2>/dev/null
	wait "$SVC" 2>/dev/null
	SVC=
}

# gone PID: the process has exited (a zombie counts: it is only waiting to
# be reaped).
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# ours: the live workers of this test (they get only PATH, LANG and HOME,
# and HOME is the test's).
ours() {
	local p
	for p in $(pgrep -x orch-worker); do
		grep -qz "^HOME=$HOME\$" "/proc/$p/environ" 2>/dev/null &&
			! gone "$p" && echo "$p"
	done
}
no_ours() { [ -z "$(ours)" ]; }
no_sandbox() { ! pgrep -f "bwrap.*$T" >/dev/null; }

# no_strays: once the service has stopped, none of its workers lives on,
# nor a sandbox (it dies with its worker, --die-with-parent, a moment
# later).  A stray is shown for the log.
no_strays() {
	local stray p
	wait_for 10 no_ours
	is "$(ours)" "" "no stray worker"
	wait_for 10 no_sandbox
	stray=$(pgrep -f "bwrap.*$T" || true)
	is "$stray" "" "no stray sandbox"
	for p in $stray; do
		ps -o pid=,ppid=,pgid=,stat=,etime=,wchan:20=,args= -p "$p" |
			cut -c1-240 | sed 's/^/#   /'
	done
}

# The pid of the worker running for task ID (from the process table).
worker_pid() {
	local p
	for p in $(pgrep -x orch-worker; pgrep -x bad-worker); do
		echo "$p"
		return 0
	done
	return 1
}

# bad_worker MODE...: the next worker starts use these modes, then the
# real worker.
bad_worker() {
	printf '%s\n' "$@" >"$HOME/bad-worker.modes"
	: >"$HOME/bad-worker.count"
	echo "$REAL_WORKER" >"$HOME/bad-worker.real"
	export ORCH_WORKER_PATH="$BAD_WORKER"
}
