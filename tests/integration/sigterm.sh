#!/bin/bash
# SIGTERM stops the service at a safe point: its workers end, the task stays
# resumable and nothing of it survives.  With ORCH_ENABLE_RESUME=false a new
# service leaves the task alone until --resume; DB_BACKUP_ON_START backs up.
. "$ORCH_TESTS_DIR/integration/lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Write a.txt."}}]}
  ],
  "implementing": [
    {"text": "slow", "delay_ms": 4000, "tool_calls": [{"name": "write_file",
      "arguments": {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Wrote a.txt."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "tool_calls": [{"name": "submit_review", "arguments":
      {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
export ORCH_LLM_SCRIPT="$T/script.json" ORCH_SCRIPTED_TRACE="$T/trace"
trace_has() { grep -Eq "$1" "$T/trace" 2>/dev/null; }

make_repo "$T/repo"
service_start
"$SUP" submit "Write a file" --repo "$T/repo" --auto-approve all >/dev/null
wait_for 20 trace_has 'stage=implementing .* turn=0$' || bail "implementing never started"
svc=$SVC
start=$(date +%s%N)
kill -TERM "$svc"
wait "$svc"
rc=$?
SVC=
ms=$((($(date +%s%N) - start) / 1000000))
is "$rc" 0 "SIGTERM: the service exits 0"
ok "$([ "$ms" -lt 3000 ]; echo $?)" "it stops promptly (${ms} ms), not after the slow turn"
is "$(ours)" "" "no worker of it survives"
like "$(grep 'signal 15' "$T/service.log")" 'safe point' "the log says it stops at a safe point"
is "$(state_of 1)" implementing "the task stays where it was"
like "$("$SUP" --list-resumable)" '^1 +in_progress +implementing' "and is resumable"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 0 "a stop is not counted as a crash"
check "the socket is removed" test ! -e "$ORCH_STATE_DIR/orch.sock"

# A new service with resume off leaves the task alone.
calls=$(wc -l <"$T/trace")
ORCH_ENABLE_RESUME=false DB_BACKUP_ON_START=true service_start
sleep 1
is "$(wc -l <"$T/trace")" "$calls" "ORCH_ENABLE_RESUME=false: the task is not resumed"
is "$(state_of 1)" implementing "... and keeps its state"
if on_pg; then
	# pg_dump's custom format: pg_restore reads it back as SQL.
	b=$(ls "$ORCH_STATE_DIR"/backups/* 2>/dev/null | head -1)
	like "$b" 'backups/.' "DB_BACKUP_ON_START made a backup"
	check "the backup is a pg_dump archive" pg_restore --list "$b"
	like "$(pg_restore --data-only --table=tasks -f - "$b" 2>&1)" "Write a file" "... holding the task"
else
	b=$(ls "$ORCH_STATE_DIR"/backups/*.db 2>/dev/null | head -1)
	like "$b" 'backups/tasks-.*\.db$' "DB_BACKUP_ON_START made a backup"
	is "$(sqlite3 "$b" 'PRAGMA integrity_check')" ok "the backup is a sound database"
	is "$(sqlite3 "$b" 'SELECT request FROM tasks WHERE id=1')" "Write a file" "... holding the task"
fi

"$SUP" --resume 1 >"$T/resume.out" 2>&1
like "$(cat "$T/resume.out")" 'completed' "--resume through the service follows it to the end"
is "$(state_of 1)" completed "the task completes"
is "$(git -C "$T/repo" show orch/task-1:a.txt)" alpha "with its file"
done_testing
