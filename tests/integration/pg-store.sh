#!/bin/bash
# The store on PostgreSQL (ORCH_DATABASE_URL), on a private throwaway
# cluster: choosing it, masking its password, one live service per node
# name, the connection killed during a task (the task completes,
# no model reply is asked twice), an outage logged once, and doctor,
# stats and backup.  Skipped where PostgreSQL 15 is not installed.
. "$ORCH_TESTS_DIR/integration/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PGBIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
	echo "1..0 # SKIP PostgreSQL 15 is not installed (apt-get install postgresql-15)"
	exit 0
fi
unset DB_PATH ORCH_TEST_PG_URL

# The cluster runs as postgres (initdb refuses root), on a unix socket in
# its own directory: no port, nothing reachable from outside.
PGD=$(mktemp -d /tmp/orch-pg.XXXXXX)
chown postgres "$PGD"
as_pg() { runuser -u postgres -- "$@"; }
pg_stop() { as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -m immediate stop >/dev/null 2>&1; }
pg_start() {
	as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -w -l "$PGD/log" \
		-o "-k $PGD -c listen_addresses=''" start >/dev/null
}
pg_cleanup() {
	[ -n "$SVC" ] && { kill -9 "$SVC" 2>/dev/null; wait "$SVC" 2>/dev/null; SVC=; }
	pg_stop
	rm -rf "$PGD"
	cleanup
}
trap pg_cleanup EXIT
as_pg "$PGBIN/initdb" -D "$PGD/data" -U orch --auth=trust >/dev/null ||
	bail "initdb failed"
pg_start || bail "the cluster did not start"
as_pg "$PGBIN/createdb" -h "$PGD" -U orch orch || bail "createdb failed"
export ORCH_DATABASE_URL="postgresql:///orch?host=$PGD&user=orch"
pq() { psql -X -A -t -q "$ORCH_DATABASE_URL" -c "$1"; }
pstate() { pq "SELECT workflow_state FROM tasks WHERE id=$1"; }
pstate_is() { [ "$(pstate "$1")" = "$2" ]; }
kill_backends() {
	pq "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
	    WHERE application_name = 'orch-supervisor'"
}

# Choosing it: both variables are an error naming both; an unreachable
# database is a clear error that never shows the password.
out=$(DB_PATH="$T/x.db" "$SUP" list 2>&1)
rc=$?
is "$rc" 2 "DB_PATH and ORCH_DATABASE_URL together: exit 2"
like "$out" 'DB_PATH.*ORCH_DATABASE_URL' "the error names both"
out=$(ORCH_DATABASE_URL="postgresql://orch:s3cr3t@/orch?host=$T/none" "$SUP" list 2>&1)
like "$out" "cannot connect to postgresql://orch:\*\*\*\*@/orch\?host=" \
	"an unreachable database: a clear error naming the masked URL"
ok "$(printf '%s' "$out" | grep -q s3cr3t; [ $? -eq 1 ]; echo $?)" \
	"the password is not in it"
out=$("$SUP" list 2>&1)
is "$?" 0 "list on an empty database works (no schema yet)"

script_write_abc
export ORCH_SCRIPTED_TRACE="$T/trace"
make_repo "$T/repo"
trace_has() { grep -Eq "$1" "$T/trace" 2>/dev/null; }

service_start
check "the service made the schema" test "$(pq "SELECT value FROM meta WHERE key='schema_version'")" = 6

# A second service on the same database under the same node name
# (another state directory, as on another host) is refused; several
# nodes under their own names are tests/integration/mn-lease.sh's.
out=$(ORCH_STATE_DIR="$T/state2" timeout 20 "$SUP" serve 2>&1)
rc=$?
is "$rc" 1 "a second service with the same node name exits 1"
like "$out" "runs as node '[^']+' on the database postgresql:///orch" \
	"with a message that says why"

# The service's connection killed while the model thinks (the delayed
# turn): the task completes and no model reply is asked twice.
"$SUP" submit "Three files" --repo "$T/repo" --auto-approve all >/dev/null
wait_for 30 trace_has 'task=1 stage=implementing .* turn=1$' ||
	bail "the task never reached the slow turn"
is "$(kill_backends)" 1 "the service's connection is terminated"
wait_for 60 pstate_is 1 completed
is "$(pstate 1)" completed \
	"the task completes after its connection was killed"
is "$(sort "$T/trace" | uniq -d)" "" "no model reply was asked twice"
is "$(git -C "$T/repo" show orch/task-1:c.txt)" gamma "the result is right"
like "$(pq 'SELECT created_at FROM tasks WHERE id=1')" \
	'^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}$' \
	"timestamps in the SQLite store's text format"
is "$(pq 'SELECT count(*) > 0 FROM turns WHERE task_id=1')" t \
	"the task's model turns are in turns"
is "$(pq "SELECT count(*) > 0 FROM events WHERE task_id=1 AND kind='result' AND data LIKE '{%'")" t \
	"its results are events with data"

# An outage: the server gone for a few seconds during a task.  Logged
# once, the task waits, and completes once the database is back.
"$SUP" submit "Again" --repo "$T/repo" --auto-approve all >/dev/null
wait_for 30 trace_has 'task=2 stage=implementing .* turn=1$' ||
	bail "task 2 never reached the slow turn"
# The lines of this outage only: the killed connection above may have
# paused the service too.
mark=$(wc -l <"$T/service.log")
pg_stop
sleep 4
pg_start || bail "the cluster did not restart"
wait_for 90 pstate_is 2 completed
is "$(pstate 2)" completed \
	"a task completes across a database outage"
# Once per outage, not per attempt (a probe every 0.5 s doubling would log
# four or five lines): the connection's loss, the pause and the return.
tail -n "+$((mark + 1))" "$T/service.log" >"$T/outage.log"
is "$(grep -c 'database unreachable: ' "$T/outage.log")" 1 \
	"the outage is logged once, not per attempt"
is "$(grep -c 'cannot be written' "$T/outage.log")" 1 \
	"... and the pause once"
check "and its end" grep -q 'written again: resuming' "$T/outage.log"
# The worker waited for the database with the reply it had: no reply is
# asked again, not even the one that came while the database was down.
is "$(sort "$T/trace" | uniq -d)" "" \
	"no reply was asked again, not even the one of the outage"

# What the operator sees.
out=$("$SUP" stats 2>&1)
like "$out" 'backend: postgresql' "stats names the backend"
like "$out" 'completed +2' "stats counts the tasks"
out=$("$SUP" doctor 2>&1)
like "$out" 'ok   database postgresql:///orch.*PostgreSQL 15' "doctor: connected, server version"
like "$out" 'synchronous_commit is on' "doctor: synchronous_commit"
pq "ALTER DATABASE orch SET synchronous_commit = off" >/dev/null
like "$("$SUP" doctor 2>&1)" 'WARN synchronous_commit is off' \
	"doctor warns when synchronous_commit is off"
pq "ALTER DATABASE orch RESET synchronous_commit" >/dev/null
if command -v pg_dump >/dev/null; then
	out=$("$SUP" backup 2>&1)
	like "$out" "backups/tasks-.*\.dump$" "backup runs pg_dump into backups/"
	check "the dump is pg_dump's custom format" \
		sh -c "head -c 5 '$out' | grep -q PGDMP"
fi
service_kill TERM

# db-copy: a SQLite state directory with a finished task and a queued
# one, copied into an empty database; the queued one then completes there.
as_pg "$PGBIN/createdb" -h "$PGD" -U orch orch2 || bail "createdb orch2 failed"
URL2="postgresql://orch:pw@/orch2?host=$PGD"
export ORCH_STATE_DIR="$T/lite"
(
	unset ORCH_DATABASE_URL
	"$SUP" run "Lite one" --repo "$T/repo" --auto-approve all >/dev/null 2>&1
	"$SUP" submit "Lite two" --repo "$T/repo" --auto-approve all >/dev/null
)
lite() { sqlite3 "$ORCH_STATE_DIR/tasks.db" "$1"; }
pq2() { psql -X -A -t -q "postgresql:///orch2?host=$PGD&user=orch" -c "$1"; }
is "$(lite 'SELECT status FROM tasks ORDER BY id' | tr '\n' ' ')" "completed pending " \
	"the SQLite database has a finished and a queued task"
out=$(ORCH_DATABASE_URL="" "$SUP" db-copy --to "$URL2" 2>&1)
is "$?" 0 "db-copy exits 0"
like "$out" 'orch:\*\*\*\*@' "db-copy names the destination masked"
for t in tasks checkpoints events journal usage turns; do
	is "$(pq2 "SELECT count(*) FROM $t")" "$(lite "SELECT count(*) FROM $t")" \
		"db-copy: every row of $t"
done
is "$(pq2 'SELECT string_agg(id || workflow_state || created_at, $$,$$ ORDER BY id) FROM tasks')" \
	"$(lite "SELECT group_concat(id || workflow_state || created_at, ',') FROM tasks ORDER BY id")" \
	"db-copy: ids, states and timestamps kept"
is "$(pq2 "SELECT value FROM meta WHERE key='state_id'")" \
	"$(lite "SELECT value FROM meta WHERE key='state_id'")" "db-copy: the state id moves too"
like "$(ORCH_DATABASE_URL="" "$SUP" db-copy --to "$URL2" 2>&1)" 'already holds 2 tasks' \
	"db-copy refuses a database that has tasks"
export ORCH_DATABASE_URL="postgresql:///orch2?host=$PGD&user=orch"
service_start
wait_for 60 pstate_is 2 completed
is "$(pq2 'SELECT workflow_state FROM tasks WHERE id=2')" completed \
	"the queued task completes on PostgreSQL"
is "$("$SUP" submit "Lite three" --repo "$T/repo")" 3 "new ids go on after the copied ones"
service_kill TERM
done_testing
