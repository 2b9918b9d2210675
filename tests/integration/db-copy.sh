#!/bin/bash
# `db-copy --to URL` moves a SQLite database with resumable tasks (one
# waiting for its plan's approval, one interrupted in the middle of
# implementing) into an empty PostgreSQL database: the same rows in every
# table, and a service on that database resumes them and completes them,
# asking the model again only the turn that was in flight at the kill.
# Runs in the suite's PostgreSQL pass (a TAP skip otherwise, and while the
# command is missing).
. "$ORCH_TESTS_DIR/integration/lib.sh"

if ! on_pg; then
	echo "1..0 # SKIP db-copy needs a PostgreSQL database: ORCH_TEST_PG_URL is not set (the suite's PostgreSQL pass sets it)"
	exit 0
fi
if ! "$SUP" db-copy --help >/dev/null 2>&1; then
	echo "1..0 # SKIP orch-supervisor has no db-copy command (db-copy --help fails)"
	exit 0
fi

# The source: SQLite in the state directory.  The test's own PostgreSQL
# database (lib.sh made it, empty) is the target.
PGURL=$ORCH_DATABASE_URL
unset ORCH_DATABASE_URL
TEST_DB=sqlite

script_write_abc
export ORCH_SCRIPTED_TRACE="$T/trace"
trace_has() { grep -Eq "$1" "$T/trace" 2>/dev/null; }
make_repo "$T/repo"
service_start
is "$("$SUP" submit "Wait for me" --repo "$T/repo")" 1 "task 1 submitted (approvals by hand)"
wait_for 30 state_is 1 plan_awaiting_approval
is "$(state_of 1)" plan_awaiting_approval "task 1 waits for its plan's approval"
is "$("$SUP" submit "Write three files" --repo "$T/repo" --auto-approve all)" 2 \
	"task 2 submitted"
# Implementing turn 1 of task 2 is answered after 3 s: kill the service then.
wait_for 30 trace_has 'task=2 stage=implementing .* turn=1$' ||
	bail "task 2 never asked for implementing turn 1"
service_kill 9
is "$(state_of 2)" implementing "task 2 is interrupted while implementing"
like "$("$SUP" --list-resumable)" '2 +in_progress +implementing' "... and resumable"

# Every table but SQLite's own and meta (the backend's own keys).
tables=$(sq "SELECT name FROM sqlite_master WHERE type = 'table'
	AND name NOT LIKE 'sqlite_%' AND name != 'meta' ORDER BY name")
like "$tables" 'checkpoints' "the source has its tables ($(echo "$tables" | tr '\n' ' '))"
counts() { # the row count of every table, one "table n" a line
	local t
	for t in $tables; do
		echo "$t $(sq "SELECT count(*) FROM $t")"
	done
}
rows() { # what the tasks are, to compare across the copy
	sq "SELECT id, status, workflow_state, retry_count, plan, base_commit FROM tasks ORDER BY id"
}
before=$(counts)
tasks_before=$(rows)
journal_before=$(sq "SELECT task_id, run, seq, stage, kind, data FROM journal ORDER BY task_id, run, seq")

"$SUP" db-copy --to "$PGURL" >"$T/copy.out" 2>&1
is "$?" 0 "db-copy --to URL exits 0 ($(head -c 300 "$T/copy.out"))"

export ORCH_DATABASE_URL=$PGURL
TEST_DB=pg
is "$(counts)" "$before" "every table has the same number of rows"
is "$(rows)" "$tasks_before" "the tasks are the same"
is "$(sq "SELECT task_id, run, seq, stage, kind, data FROM journal ORDER BY task_id, run, seq")" \
	"$journal_before" "the journal is the same, step by step"
"$SUP" db-copy --to "$PGURL" >"$T/copy2.out" 2>&1
ok "$([ $? -ne 0 ]; echo $?)" "a second copy into the now full database is refused"
is "$(counts)" "$before" "... and changes nothing"

# A service on PostgreSQL takes the tasks over.
calls=$(wc -l <"$T/trace")
service_start
wait_for 60 state_is 2 completed
is "$(state_of 2)" completed "the interrupted task is resumed and completes"
is "$(sort "$T/trace" | uniq -c | awk '$1 != 1 { print $1, $2, $3, $6 }')" \
	"2 task=2 stage=implementing turn=1" \
	"only the turn in flight at the kill was asked again"
"$SUP" approve 1 --by alice >"$T/approve.out" 2>&1
is "$?" 0 "task 1's plan is approved on PostgreSQL"
wait_for 60 state_is 1 implementation_awaiting_approval
"$SUP" approve 1 --by alice >"$T/approve.out" 2>&1
wait_for 60 state_is 1 completed
is "$(state_of 1)" completed "... and task 1 completes"
is "$(sq "SELECT plan_approved_by FROM tasks WHERE id=1")" alice "its approval is recorded"
is "$("$SUP" submit "A new one" --repo "$T/repo" --auto-approve all)" 3 \
	"a new task gets the next id (the copy set the sequences on)"
wait_for 60 state_is 3 completed
is "$(state_of 3)" completed "... and completes"
is "$(sq 'SELECT count(*) FROM (SELECT task_id, run, seq FROM journal GROUP BY task_id, run, seq HAVING count(*) > 1) AS d')" \
	0 "no journal step twice"
echo "# the model was asked $(($(wc -l <"$T/trace") - calls)) times after the copy"
db_intact
done_testing
