#!/bin/bash
# kill -9 of the worker in the middle of the implementing stage, end to end
# on the mock model (openai), the same script three times:
#   task 1: no crash (the reference);
#   task 2: killed right after a write_file, while the model's next turn is
#           in flight (the mock delays it): the write was journaled and
#           snapshotted by then;
#   task 3: killed while a run_command runs in the sandbox (the worker, not
#           the sandbox): the command's result was never journaled.
# After each restart the workspace is exactly the last snapshot (a file the
# interrupted command made does not survive), nothing journaled is asked of
# the model again (only the turn in flight is asked twice), and the branch's
# tree is the same as the run without a crash.
export ORCH_RETRY_BACKOFF_MS=600
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

SL="3.$((RANDOM % 900 + 100))" # a sleep this test's command alone runs
cat >"$T/script.json" <<JSON
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Write a.txt and b.txt, then run the generator."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "alpha\\n"}}]},
    {"text": "b", "delay": 2, "tool_calls": [{"name": "write_file", "arguments": {"path": "b.txt", "content": "beta\\n"}}]},
    {"text": "generate", "tool_calls": [{"name": "run_command", "arguments": {"command": "ls -A | grep -v '^.git\$' > /tmp/seen; mv /tmp/seen seen.txt; echo partial > partial.txt; sleep $SL; echo full > done.txt"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Wrote the files."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON

wf_repo "$T/repo"
wf_mock_start
service_start
R="git -C $T/repo"
WT="$ORCH_STATE_DIR/worktrees"

# "path blob" of every file of a worktree, and of a commit's tree.
wt_files() {
	(cd "$1" && find . -path ./.git -prune -o -type f -print | sed 's|^\./||' |
		LC_ALL=C sort | while read -r f; do echo "$f $(git hash-object "$f")"; done)
}
commit_files() { $R ls-tree -r "$1" | awk '{ print $4, $3 }'; }
last_snapshot() {
	sq "SELECT $(sql_json checkpoint_data commit) FROM checkpoints WHERE task_id=$1 AND checkpoint_name='snapshot' ORDER BY id DESC LIMIT 1"
}
asked() { # TASK STAGE TURN: how many times the model was asked that turn
	mock_q "sum(1 for r in L if r['task'] == '$1' and r['stage'] == '$2' and r['turn'] == $3)"
}
submit() {
	"$SUP" submit "Write the files" --repo "$T/repo" --verify "cat done.txt" \
		--auto-approve all 2>"$T/submit.err"
}

# Task 1: no crash.
is "$(submit)" 1 "task 1 (no crash) submitted"
wait_state 1 completed 40
is "$(state_of 1)" completed "task 1 completes"
tree1=$($R rev-parse 'orch/task-1^{tree}')
is "$($R show orch/task-1:seen.txt | tr '\n' ' ')" "README.md a.txt b.txt config.sh " \
	"the command saw the files of the snapshot before it"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 0 "task 1 was not restarted"

# Task 2: killed right after a write_file, while the next turn is in flight.
is "$(submit)" 2 "task 2 (killed after a write) submitted"
in_flight() { [ "$(asked 2 implementing 1)" -ge "$1" ]; }
wait_for 30 in_flight 1 || bail "task 2 never asked for implementing turn 1"
W=$(svc_worker)
like "$W" '^[0-9]+$' "the service's worker runs"
snap=$(last_snapshot 2)
like "$snap" '^[0-9a-f]{40}$' "the write_file was snapshotted before the next turn was asked"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=2 AND stage='implementing' AND kind='tool' AND data LIKE '%write_file%a.txt%'")" \
	1 "... and its result journaled"
kill -9 "$W"
wait_for 30 in_flight 2 || bail "the restarted worker never asked for turn 1 again"
W2=$(svc_worker)
check "a new worker runs" test "$W2" != "$W"
is "$(wt_files "$WT/task-2")" "$(commit_files "$snap")" \
	"the restarted worker's files are the last snapshot's tree"
is "$(ls "$WT/task-2" | tr '\n' ' ')" "README.md a.txt config.sh " \
	"(a.txt written before the kill, nothing else)"
wait_state 2 completed 40
is "$(state_of 2)" completed "task 2 completes"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=2')" 1 "task 2 was restarted once"
is "$(mock_q "sorted((r['stage'], r['turn'], r['n']) for r in L if r['task'] == '2')")" \
	"[('implementing', 0, 1), ('implementing', 1, 1), ('implementing', 1, 2), ('implementing', 2, 1), ('implementing', 3, 1), ('planning', 0, 1), ('reviewing', 0, 1)]" \
	"only the turn in flight was asked twice"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=2 AND checkpoint_name='snapshot' AND checkpoint_data LIKE '%\"step\":1}'")" \
	1 "the write was not redone (one snapshot of step 1)"
is "$($R rev-parse 'orch/task-2^{tree}')" "$tree1" "the branch's tree is the same as without the crash"

# Task 3: killed while a run_command runs.
is "$(submit)" 3 "task 3 (killed in a command) submitted"
wait_for 30 test -e "$WT/task-3/partial.txt" || bail "task 3's command never started"
W=$(svc_worker)
SP=$(pgrep -f "^sleep $SL\$")
like "$SP" '^[0-9]+$' "the sandboxed command is running"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=3 AND stage='implementing' AND kind='tool' AND data LIKE '%run_command%'")" \
	0 "(the command's result is not journaled yet)"
snap=$(last_snapshot 3)
kill -9 "$W"
t0=$(date +%s%N)
wait_for 5 gone "$SP"
is "$(( ($(date +%s%N) - t0) / 1000000 < 1500 ))" 1 \
	"the sandbox died with the worker (its command did not run to the end)"
restarted() { [ -n "$(svc_worker)" ] && [ "$(svc_worker)" != "$W" ]; }
wait_for 20 restarted || bail "no worker restarted for task 3"
wait_state 3 completed 40
is "$(state_of 3)" completed "task 3 completes"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=3')" 1 "task 3 was restarted once"
is "$($R show orch/task-3:seen.txt | tr '\n' ' ')" "README.md a.txt b.txt config.sh " \
	"the repeated command started from the last snapshot: partial.txt of the killed run did not survive"
is "$(commit_files "$snap" | cut -d' ' -f1 | tr '\n' ' ')" "README.md a.txt b.txt config.sh " \
	"(the snapshot before the command holds no output of it)"
is "$(mock_q "sorted((r['stage'], r['turn'], r['n']) for r in L if r['task'] == '3')")" \
	"[('implementing', 0, 1), ('implementing', 1, 1), ('implementing', 2, 1), ('implementing', 3, 1), ('planning', 0, 1), ('reviewing', 0, 1)]" \
	"no turn was asked twice (the reply with the command was journaled)"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=3 AND stage='implementing' AND kind='tool' AND data LIKE '%run_command%'")" \
	1 "the command's result is journaled once"
is "$(sq 'SELECT count(*) FROM (SELECT run, seq FROM journal WHERE task_id=3 GROUP BY run, seq HAVING count(*) > 1) AS d')" \
	0 "no journal entry is duplicated"
is "$($R rev-parse 'orch/task-3^{tree}')" "$tree1" "the branch's tree is the same as without the crash"
is "$($R ls-tree -r --name-only orch/task-3 | tr '\n' ' ')" \
	"README.md a.txt b.txt config.sh done.txt partial.txt seen.txt " "the branch has the expected files"
is "$(vr 3 status)" passed "the verification passed"
check "the worktrees are removed" test ! -e "$WT/task-1" -a ! -e "$WT/task-2" -a ! -e "$WT/task-3"
db_intact
done_testing
