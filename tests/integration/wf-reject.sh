#!/bin/bash
# Rejections reach the model, end to end on the mock model (openai).
# Task 1 (the plan auto-approved, the implementation not): at
# implementation_awaiting_approval, `reject 1 --reason "use printf not
# echo"`; the next implementing request has that reason;
# implementation_rejection_reason is set; the second implementation is
# approved and the task completes.  Task 2 (nothing auto-approved): a
# rejected plan; the next planning request has the reason and the earlier
# plan; the new plan is the one implemented.
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Add greet.sh."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "greet.sh", "content": "echo Hello\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "greet.sh with echo."}}]}
  ],
  "implementing#2": [
    {"text": "As asked.", "tool_calls": [{"name": "write_file", "arguments": {"path": "greet.sh", "content": "printf 'Hello\\n'\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "greet.sh with printf."}}]}
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

is "$("$SUP" submit "Add a greeting" --repo "$T/repo" --verify "sh greet.sh" \
	--auto-approve plan 2>&1)" 1 "task 1 submitted (plan auto-approved only)"
wait_state 1 implementation_awaiting_approval 40
is "$(state_of 1)" implementation_awaiting_approval "the implementation waits for a person"
is "$(mock_q 'sum(1 for r in L if r["stage"] == "reviewing")')" 0 "no review before the approval"
"$SUP" reject 1 --reason "use printf not echo" --by dave >"$T/reject1.out" 2>&1
ok $? "reject exits 0"
wait_state 1 implementation_awaiting_approval 40
is "$(state_of 1)" implementation_awaiting_approval "the second implementation waits for a person"
is "$(sq 'SELECT implementation_rejection_reason FROM tasks WHERE id=1')" \
	"use printf not echo" "implementation_rejection_reason is set"
u2=$(body_user 'r["task"] == "1" and r["stage"] == "implementing" and r["round"] == 2 and r["turn"] == 0')
like "$(printf '%s' "$u2" | tr '\n' ' ')" \
	"Feedback on your previous round, to address now: A person rejected the implementation: use printf not echo" \
	"the next implementing request has the reason"
like "$(printf '%s' "$u2" | tr '\n' ' ')" "^Request: Add a greeting .*The approved plan: Add greet.sh\." \
	"... and the request and the plan"
like "$(sq "SELECT text FROM events WHERE task_id=1 ORDER BY id" | paste -sd '|')" \
	"implementation rejected by dave: use printf not echo" "the log says who rejected it and why"
"$SUP" show 1 >"$T/show1.out" 2>&1
like "$(tr '\n' ' ' <"$T/show1.out")" "Implementation rejected because:? +use printf not echo" \
	"show shows the rejection reason"
"$SUP" approve 1 --by dave >/dev/null 2>&1
ok $? "approve exits 0"
wait_state 1 completed 40
is "$(state_of 1)" completed "task 1 completes"
is "$($R show orch/task-1:greet.sh)" "printf 'Hello\n'" "the branch has the second implementation"
is "$($R rev-list --count main..orch/task-1)" 1 "the branch is one commit"
is "$(vr 1 output_tail)" "Hello" "the verification ran the second implementation"
is "$(mock_q 'sum(1 for r in L if r["task"] == "1" and r["stage"] == "implementing")')" 4 \
	"implementing ran twice (2 turns each)"

# Task 2: a rejected plan.
cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Plan v1: add bye.sh (PLAN-ONE)."}}]}
  ],
  "planning#2": [
    {"text": "Plan again.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Plan v2: add bye.sh and bye-test.sh (PLAN-TWO)."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "bye.sh", "content": "echo Bye\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "bye.sh."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
is "$("$SUP" submit "Add a farewell" --repo "$T/repo" 2>&1)" 2 "task 2 submitted (nothing auto-approved)"
wait_state 2 plan_awaiting_approval 40
is "$(state_of 2)" plan_awaiting_approval "the plan waits for a person"
"$SUP" reject 2 --reason "also add a test (P-12)" >"$T/reject2.out" 2>&1
ok $? "reject exits 0"
wait_state 2 plan_awaiting_approval 40
is "$(mock_q 'sum(1 for r in L if r["task"] == "2" and r["stage"] == "planning")')" 2 \
	"planning ran again"
is "$(sq 'SELECT plan_rejection_reason FROM tasks WHERE id=2')" "also add a test (P-12)" \
	"plan_rejection_reason is set"
p2=$(body_user 'r["task"] == "2" and r["stage"] == "planning" and r["round"] == 2 and r["turn"] == 0')
like "$(printf '%s' "$p2" | tr '\n' ' ')" \
	"A person rejected your earlier plan. Reason: also add a test \(P-12\)" \
	"the next planning request has the reason"
like "$(printf '%s' "$p2" | tr '\n' ' ')" "The earlier plan: Plan v1: add bye.sh \(PLAN-ONE\)\." \
	"... and the earlier plan"
like "$(printf '%s' "$p2" | tr '\n' ' ')" "^Request: Add a farewell " "... and the request"
is "$(body_user 'r["task"] == "2" and r["stage"] == "planning" and r["round"] == 1 and r["turn"] == 0' | grep -c 'rejected')" \
	0 "the first planning request had no rejection"
is "$(sq 'SELECT plan FROM tasks WHERE id=2')" "Plan v2: add bye.sh and bye-test.sh (PLAN-TWO)." \
	"the plan column holds the new plan"
"$SUP" approve 2 --by erin >/dev/null 2>&1
ok $? "the new plan is approved"
wait_state 2 implementation_awaiting_approval 40
is "$(state_of 2)" implementation_awaiting_approval "the implementation waits for a person"
i1=$(body_user 'r["task"] == "2" and r["stage"] == "implementing" and r["turn"] == 0')
like "$(printf '%s' "$i1" | tr '\n' ' ')" "The approved plan: Plan v2: .*PLAN-TWO" \
	"implementing is told the approved (second) plan"
is "$(printf '%s' "$i1" | grep -c 'PLAN-ONE')" 0 "... not the rejected one"
"$SUP" approve 2 --by erin >/dev/null 2>&1
wait_state 2 completed 40
is "$(state_of 2)" completed "task 2 completes"
is "$(sq "SELECT plan_approved_by || '|' || implementation_approved_by FROM tasks WHERE id=2")" \
	"erin|erin" "the approvers are recorded"
is "$(vr 2 status)" skipped "no verify command: skipped"
done_testing
