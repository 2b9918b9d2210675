#!/bin/bash
# Approval gates: reject and approve a plan with no service running (the CLI
# drives the task in the foreground with --resume), approve an implementation
# through the running service, reject an implementation so that it is done
# again with the reason; and the errors of approve and reject.
. "$ORCH_TESTS_DIR/integration/lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Planning.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Plan v1: write a.txt."}}]}
  ],
  "planning#2": [
    {"text": "Planning again.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Plan v2: write a.txt holding alpha, then stop."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Wrote a.txt."}}]}
  ],
  "implementing#2": [
    {"text": "Again, in capitals.", "delay_ms": 1500, "tool_calls": [{"name": "write_file",
      "arguments": {"path": "a.txt", "content": "ALPHA\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Rewrote a.txt in capitals."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "tool_calls": [{"name": "submit_review", "arguments":
      {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
export ORCH_LLM_SCRIPT="$T/script.json" ORCH_SCRIPTED_TRACE="$T/trace"
col() { sq "SELECT $2 FROM tasks WHERE id=$1"; }
resume() { timeout 60 "$SUP" --resume "$1" </dev/null >"$T/resume.out" 2>&1; }
calls() { grep -c "^task=$1 stage=$2 .* round=$3 " "$T/trace"; }

make_repo "$T/repo"

# (a) No service: the CLI writes the database and drives the task itself.
is "$("$SUP" submit "Write a.txt" --repo "$T/repo")" 1 "submit prints id 1"
is "$(state_of 1)" pending "the task is pending"
"$SUP" approve 1 --by alice >"$T/out" 2>&1
is "$?" 1 "approving a pending task exits 1"
like "$(cat "$T/out")" 'task 1 is pending.*awaiting approval' "... saying why"
resume 1
ok $? "--resume 1 plans in the foreground and exits 0"
is "$(state_of 1)" plan_awaiting_approval "it stops at plan_awaiting_approval"
like "$(cat "$T/resume.out")" 'approve 1' "it says how to approve"
like "$(col 1 plan)" 'Plan v1' "the plan is stored"
check "no service was left running" test ! -S "$ORCH_STATE_DIR/orch.sock"
resume 1
is "$?" 1 "--resume of a task at the gate exits 1"
like "$(cat "$T/resume.out")" 'waiting for approval' "... saying it waits for approval"

"$SUP" reject 1 --reason "too vague" --by bob >"$T/out" 2>&1
ok $? "reject 1 --reason exits 0"
is "$(col 1 plan_rejection_reason)" "too vague" "plan_rejection_reason is stored"
is "$(state_of 1)" planning "the task goes back to planning"
like "$(sq "SELECT text FROM events WHERE task_id=1 AND kind='state'")" \
	'plan_awaiting_approval -> planning' "the rejection is in the event log"
resume 1
ok $? "--resume 1 plans again"
is "$(state_of 1)" plan_awaiting_approval "and stops at the gate again"
is "$(calls 1 planning 1)" 1 "planning round 1 asked the model once"
is "$(calls 1 planning 2)" 1 "planning round 2 asked the model once"
like "$(col 1 plan)" 'Plan v2' "the new plan replaces the old"

"$SUP" approve 1 --by alice >"$T/out" 2>&1
ok $? "approve 1 --by alice exits 0"
is "$(col 1 plan_approved_by)" alice "plan_approved_by is alice"
like "$(col 1 plan_approved_at)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}.[0-9]{2}:[0-9]{2}' "plan_approved_at is set"
is "$(state_of 1)" plan_approved "the task is plan_approved"
is "$(col 1 status)" in_progress "its status is in_progress"
resume 1
ok $? "--resume 1 implements"
is "$(state_of 1)" implementation_awaiting_approval "and stops at implementation_awaiting_approval"
is "$(col 1 status)" awaiting_approval "its status is awaiting_approval"
is "$(calls 1 implementing 1)" 2 "implementing asked the model twice"

# (b) The service runs: approve goes through it and the task completes.
service_start
is "$(state_of 1)" implementation_awaiting_approval "the service leaves a waiting task alone"
"$SUP" approve 1 --by carol >"$T/out" 2>&1
ok $? "approve 1 --by carol exits 0"
is "$(col 1 implementation_approved_by)" carol "implementation_approved_by is carol"
like "$(col 1 implementation_approved_at)" '^[0-9]{4}-' "implementation_approved_at is set"
wait_for 30 state_is 1 completed
is "$(state_of 1)" completed "the service completes the task"
like "$(col 1 verification_result)" 'skipped' "verification is recorded as skipped"
like "$(col 1 review)" '"verdict":"approve"' "the review ran"
is "$(git -C "$T/repo" show orch/task-1:a.txt)" alpha "the branch has a.txt"

"$SUP" approve 1 >"$T/out" 2>&1
is "$?" 1 "approving a completed task exits 1"
like "$(cat "$T/out")" 'task 1 is completed.*awaiting approval' "... with a clear message"
"$SUP" approve 99 >"$T/out" 2>&1
is "$?" 1 "approving a missing task exits 1"
like "$(cat "$T/out")" 'no task 99' "... naming it"

# (c) Reject an implementation with the service running.
is "$("$SUP" submit "Write a.txt again" --repo "$T/repo" --auto-approve plan)" 2 \
	"a second task, plan auto-approved"
wait_for 30 state_is 2 implementation_awaiting_approval
is "$(state_of 2)" implementation_awaiting_approval "it waits for the implementation's approval"
is "$(col 2 plan_approved_by)" auto-approve "its plan was auto-approved"
"$SUP" reject 2 >"$T/out" 2>&1
is "$?" 2 "reject without --reason is a usage error"
is "$(state_of 2)" implementation_awaiting_approval "... and changes nothing"
"$SUP" reject 2 --reason "use capitals" --by erin >"$T/out" 2>&1
ok $? "reject 2 --reason exits 0"
is "$(col 2 implementation_rejection_reason)" "use capitals" \
	"implementation_rejection_reason is stored"
is "$(state_of 2)" implementing "the task goes back to implementing"
like "$(col 2 feedback)" 'use capitals' "the reason is the feedback for the next round"
wait_for 30 state_is 2 implementation_awaiting_approval
is "$(state_of 2)" implementation_awaiting_approval "round 2 stops at the gate again"
is "$(calls 2 implementing 2)" 2 "round 2 of implementing ran on its own script"
like "$(col 2 implementation)" 'capitals' "the new implementation is stored"
"$SUP" approve 2 --by dave >/dev/null 2>&1
ok $? "approve 2 exits 0"
wait_for 30 state_is 2 completed
is "$(state_of 2)" completed "the second task completes"
is "$(git -C "$T/repo" show orch/task-2:a.txt)" ALPHA "its branch has round 2's file"
done_testing
