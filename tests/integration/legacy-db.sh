#!/bin/bash
# A database made by the original Python orchestrator (its schema: no
# repository column) is upgraded; its unfinished tasks fail with what to do,
# and `--resume ID --repo DIR` gives them the repository they lack.
. "$ORCH_TESTS_DIR/integration/lib.sh"
if on_pg; then
	echo "1..0 # SKIP the Python orchestrator's databases are SQLite files (db-copy moves them to PostgreSQL)"
	exit 0
fi

make_repo "$T/repo"
script_write_a
mkdir -p "$ORCH_STATE_DIR"
# The seed's schema, and tasks as the Python orchestrator left them.
sqlite3 "$ORCH_STATE_DIR/tasks.db" <<'SQL'
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    workflow_state TEXT NOT NULL DEFAULT 'pending',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    plan TEXT,
    implementation TEXT,
    review TEXT,
    verification_result TEXT,
    workflow_log TEXT,
    workflow_checkpoint_data TEXT,
    plan_approved_at TIMESTAMP,
    plan_approved_by TEXT,
    plan_rejection_reason TEXT,
    implementation_approved_at TIMESTAMP,
    implementation_approved_by TEXT,
    implementation_rejection_reason TEXT,
    error_details TEXT,
    retry_count INTEGER DEFAULT 0
);
CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL,
    checkpoint_name TEXT NOT NULL,
    checkpoint_data TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (task_id) REFERENCES tasks(id) ON DELETE CASCADE
);
INSERT INTO tasks (request, status, workflow_state)
    VALUES ('Write a.txt', 'in_progress', 'planning');
INSERT INTO tasks (request, status, workflow_state)
    VALUES ('Write a.txt too', 'pending', 'pending');
INSERT INTO tasks (request, status, workflow_state)
    VALUES ('Done long ago', 'completed', 'completed');
INSERT INTO checkpoints (task_id, checkpoint_name, checkpoint_data)
    VALUES (1, 'workflow_start', '{}');
SQL

# The service upgrades the database and tries the unfinished tasks.
service_start
wait_for 20 state_is 1 failed
wait_for 20 state_is 2 failed
is "$(state_of 1)" failed "a Python task in planning fails at once, not in a worker"
err=$(sq 'SELECT error_details FROM tasks WHERE id=1')
like "$err" 'no repository.*--resume 1 --repo DIR' "... saying how to resume it ($err)"
is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND text LIKE '%START data%'")" 0 \
	"... with no worker failing on its START data"
is "$(state_of 3)" completed "a finished Python task is left as it was"

# Without --repo: the CLI offers the directory it runs in.
(cd "$T/repo" && "$SUP" --resume 1) >"$T/out" 2>&1
is "$?" 1 "--resume of a task without a repository exits 1"
like "$(cat "$T/out")" "--resume 1 --repo $T/repo\$" "... offering the current directory"
"$SUP" --resume 1 --repo "$T/nonexistent" >"$T/out" 2>&1
is "$?" 1 "--repo of a missing directory exits 1"
like "$(cat "$T/out")" 'nonexistent' "... naming it"

# Through the service.
(cd "$T/repo" && timeout 60 "$SUP" --resume 1 --repo .) >"$T/out" 2>&1 </dev/null
is "$?" 0 "--resume 1 --repo . through the service exits 0 ($(tail -1 "$T/out"))"
is "$(state_of 1)" plan_awaiting_approval "... and the task is planned"
is "$(sq 'SELECT repo FROM tasks WHERE id=1')" "$T/repo" "... in that repository (an absolute path)"
is "$(sq 'SELECT base_commit FROM tasks WHERE id=1')" "$(git -C "$T/repo" rev-parse HEAD)" \
	"... from its HEAD"
make_repo "$T/other"
"$SUP" --resume 1 --repo "$T/other" >"$T/out" 2>&1
is "$?" 1 "another --repo for a task that has one exits 1"
like "$(cat "$T/out")" "works in $T/repo already" "... saying where it works"
service_kill TERM

# Without the service: the CLI changes the database itself.
timeout 60 "$SUP" --resume 2 --repo "$T/repo" >"$T/out" 2>&1 </dev/null
is "$?" 0 "--resume 2 --repo DIR without the service exits 0 ($(tail -1 "$T/out"))"
is "$(state_of 2)" plan_awaiting_approval "... and the task is planned"
"$SUP" approve 2 >/dev/null 2>&1
timeout 60 "$SUP" --resume 2 >"$T/out" 2>&1 </dev/null
is "$(state_of 2)" implementation_awaiting_approval "... and goes on like any task"

done_testing
