#!/bin/bash
# Verification end to end on the mock model (openai), the command really run
# in the sandbox.  Task 1: round 1 writes a buggy add.sh, `sh test.sh` fails;
# the next implementing run is told the failing output, fixes the bug, and
# the verification passes.  Task 2: the verification keeps failing past
# ORCH_MAX_VERIFY_ROUNDS: failed, and error_details says so.  Task 3: no
# verify command at all: recorded as skipped, and `show` says so plainly.
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Add add.sh and test.sh."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [
      {"name": "write_file", "arguments": {"path": "add.sh", "content": "echo $(($1 - $2))\n"}},
      {"name": "write_file", "arguments": {"path": "test.sh", "content": "echo \"cwd=$(pwd)\"\ngot=$(sh add.sh 2 3)\n[ \"$got\" = 5 ] || { echo \"FAIL: add 2 3 gave $got, want 5\"; exit 1; }\necho PASS\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Added add.sh and its test."}}]}
  ],
  "implementing#2": [
    {"text": "Fixing.", "tool_calls": [{"name": "edit_file", "arguments": {"path": "add.sh", "old": "$1 - $2", "new": "$1 + $2"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Fixed the sign in add.sh."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON

wf_repo "$T/repo"
wf_mock_start
export ORCH_MAX_VERIFY_ROUNDS=2
service_start
R="git -C $T/repo"

is "$("$SUP" submit "Add an adder" --repo "$T/repo" --verify "sh test.sh" \
	--auto-approve all 2>&1)" 1 "task 1 submitted"
wait_state 1 completed 50
is "$(state_of 1)" completed "task 1 completes after one failed verification"
is "$(sq 'SELECT verify_rounds FROM tasks WHERE id=1')" 1 "verify_rounds is 1"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=1 AND checkpoint_name='after_verification'")" \
	2 "two verifications ran"
first=$(sq "SELECT checkpoint_data FROM checkpoints WHERE task_id=1 AND checkpoint_name='after_verification' ORDER BY id LIMIT 1")
is "$(printf '%s' "$first" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["exit_status"])')" \
	"failed 1" "the first verification failed with exit status 1"
like "$first" "FAIL: add 2 3 gave -1, want 5" "its output tail is recorded"
u2=$(body_user 'r["task"] == "1" and r["stage"] == "implementing" and r["round"] == 2 and r["turn"] == 0')
like "$(printf '%s' "$u2" | tr '\n' ' ')" \
	"Feedback on your previous round, to address now: The verification command failed: .*FAIL: add 2 3 gave -1, want 5" \
	"the next implementing request has the failing command's output"
is "$(body_user 'r["task"] == "1" and r["stage"] == "implementing" and r["round"] == 1 and r["turn"] == 0' | grep -c 'FAIL')" \
	0 "the first implementing request had no failure output"
is "$(vr 1 status)" passed "verification_result: passed"
is "$(vr 1 exit_status)" 0 "verification_result: exit status 0"
like "$(vr 1 output_tail)" "PASS" "verification_result: the passing output"
like "$(vr 1 output_tail)" "cwd=/workspace" "the command ran in the sandbox's /workspace"
like "$(vr 1 duration_ms)" '^[0-9]+$' "verification_result: a duration"
is "$($R show orch/task-1:add.sh)" 'echo $(($1 + $2))' "the branch has the fix"
like "$(sq 'SELECT implementation FROM tasks WHERE id=1')" "^Fixed the sign in add.sh" \
	"implementation has the fixing round's summary"
like "$(sq "SELECT text FROM events WHERE task_id=1 ORDER BY id" | paste -sd '|')" \
	"verification failed, implementing again" "the log says the verification failed"
"$SUP" show 1 >"$T/show1.out" 2>&1
like "$(tr '\n' ' ' <"$T/show1.out")" 'Verification: +passed: ' "show shows it passed"

# Task 2: it keeps failing.
cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Add check.sh."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "check.sh", "content": "echo 'still broken (V-99)'\nexit 3\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Tried again."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
is "$("$SUP" submit "Make check pass" --repo "$T/repo" --verify "sh check.sh" \
	--auto-approve all 2>&1)" 2 "task 2 submitted"
wait_state 2 failed 50
is "$(state_of 2)" failed "task 2 fails once the verification rounds ran out"
is "$(sq 'SELECT status FROM tasks WHERE id=2')" failed "status failed"
like "$(sq 'SELECT error_details FROM tasks WHERE id=2')" \
	"verification .* still fails after [0-9]+ rounds \(ORCH_MAX_VERIFY_ROUNDS=[0-9]+\)" "error_details says so"
is "$(sq 'SELECT verify_rounds FROM tasks WHERE id=2')" 3 "verify_rounds is 3 (2 sent back + the last)"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=2 AND checkpoint_name='start_implementation'")" \
	3 "implementing ran 3 times"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=2 AND checkpoint_name='after_verification'")" \
	3 "verifying ran 3 times"
is "$(vr 2 status) $(vr 2 exit_status)" "failed 3" "verification_result: failed, exit status 3"
like "$(vr 2 output_tail)" "still broken \(V-99\)" "verification_result: the output tail"
"$SUP" show 2 >"$T/show2.out" 2>&1
like "$(tr '\n' ' ' <"$T/show2.out")" "Error.*ORCH_MAX_VERIFY_ROUNDS" "show shows the error"

# Task 3: no verify command at all.
cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Add notes.txt."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "notes.txt", "content": "notes\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Added notes."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
is "$("$SUP" submit "Add notes" --repo "$T/repo" --auto-approve all 2>&1)" 3 \
	"task 3 submitted without --verify"
wait_state 3 completed 50
is "$(state_of 3)" completed "task 3 completes"
is "$(vr 3 status)" skipped "verification_result: skipped"
like "$(vr 3 reason)" "no --verify command and no ORCH_VERIFY_COMMAND" \
	"verification_result says why"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=3 AND checkpoint_name='after_verification'")" \
	1 "the skipped verification is checkpointed"
like "$(sq "SELECT text FROM events WHERE task_id=3 ORDER BY id" | paste -sd '|')" \
	"verification skipped" "the log says it was skipped"
"$SUP" show 3 >"$T/show3.out" 2>&1
like "$(grep -A2 '^Verification' "$T/show3.out" | tr '\n' ' ')" \
	"^Verification:? +skipped: no --verify command and no ORCH_VERIFY_COMMAND" \
	"show says plainly that the verification was skipped"
check "the worktree is removed" test ! -e "$ORCH_STATE_DIR/worktrees/task-3"
# The workers get the state directory's sandbox cache (worker/etcdir.c):
# the verify command ran with the profile's /etc copied there.
check "the verifying sandbox's /etc is a copy in the state directory" \
	test -f "$ORCH_STATE_DIR/sandbox/etc-verifying/current/passwd"
done_testing
