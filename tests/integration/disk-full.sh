#!/bin/bash
# The database on a small file system that fills up: the service says so,
# pauses (no restart loop, little CPU) instead of spinning, loses nothing
# committed, and goes on by itself once there is space again.  Needs a
# tmpfs mount, so root (as in CI); skipped otherwise.
. "$ORCH_TESTS_DIR/integration/lib.sh"
if on_pg; then
	echo "1..0 # SKIP the database is not in the state directory on PostgreSQL (the server's disk is the server's)"
	exit 0
fi

mkdir -p "$ORCH_STATE_DIR"
if ! mount -t tmpfs -o size=8m,mode=0700 tmpfs "$ORCH_STATE_DIR" 2>/dev/null; then
	echo "1..0 # SKIP cannot mount a tmpfs here (needs root)"
	exit 0
fi
umount_state() {
	[ -n "$SVC" ] && { kill -9 "$SVC" 2>/dev/null; wait "$SVC" 2>/dev/null; SVC=; }
	umount "$ORCH_STATE_DIR" 2>/dev/null
	cleanup
}
trap umount_state EXIT

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Look.", "delay_ms": 1500, "tool_calls": [{"name": "list_files",
      "arguments": {"path": ""}}]},
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments":
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
export ORCH_LLM_SCRIPT="$T/script.json" ORCH_SCRIPTED_TRACE="$T/trace"
export ORCH_RETRY_BACKOFF_MS=20
make_repo "$T/repo"
trace_has() { grep -Eq "$1" "$T/trace" 2>/dev/null; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SVC/stat"; }

service_start
"$SUP" submit "First" --repo "$T/repo" --auto-approve all >/dev/null
wait_for 30 state_is 1 completed || bail "task 1 did not complete"
before=$(sq "SELECT count(*) FROM events WHERE task_id=1; SELECT count(*) FROM journal WHERE task_id=1; SELECT count(*) FROM checkpoints WHERE task_id=1" | tr '\n' ' ')

"$SUP" submit "Second" --repo "$T/repo" --auto-approve all >/dev/null
wait_for 20 trace_has 'task=2 stage=planning .* turn=0$' || bail "task 2 never asked the model"
# Fill the file system while the model "thinks".
dd if=/dev/zero of="$ORCH_STATE_DIR/fill" bs=64k 2>/dev/null
wait_for 10 grep -q 'cannot be written' "$T/service.log"
like "$(grep 'cannot be written' "$T/service.log" | head -1)" \
	'(full|disk).*pausing every task' "the service says the database cannot be written, and pauses"
calls=$(wc -l <"$T/trace")
t0=$(cpu_ticks)
sleep 3
t1=$(cpu_ticks)
check "the service is still up" kill -0 "$SVC"
ok "$([ $((t1 - t0)) -le 30 ]; echo $?)" "it does not spin while paused ($((t1 - t0)) ticks of CPU in 3 s)"
ok "$([ "$(wc -l <"$T/trace")" -le $((calls + 1)) ]; echo $?)" \
	"no restart loop while the disk is full"
like "$("$SUP" submit "Third" --repo "$T/repo" 2>&1)" 'full|disk' \
	"a submit while full gets a clear error"

rm -f "$ORCH_STATE_DIR/fill"
wait_for 40 grep -q 'written again: resuming' "$T/service.log"
check "once there is space it resumes by itself" grep -q 'written again: resuming' "$T/service.log"
wait_for 40 state_is 2 completed
is "$(state_of 2)" completed "the task that was running completes"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=2')" 0 "the pause is not counted as a crash"
after=$(sq "SELECT count(*) FROM events WHERE task_id=1; SELECT count(*) FROM journal WHERE task_id=1; SELECT count(*) FROM checkpoints WHERE task_id=1" | tr '\n' ' ')
is "$after" "$before" "nothing committed before the fault was lost"
db_intact
is "$(git -C "$T/repo" show orch/task-2:a.txt)" alpha "the result is right"
done_testing
