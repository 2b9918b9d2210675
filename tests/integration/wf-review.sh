#!/bin/bash
# A review that asks for changes, end to end on the mock model (openai).
# Task 1: the reviewer requests changes once; the second implementing run is
# told the review comments (checked in the saved request body), changes the
# file, and the second review approves: review_rounds 1, completed.
# Task 2, with ORCH_MAX_REVIEW_ROUNDS=1 and a reviewer that always requests
# changes: the task stops at implementation_awaiting_approval with the
# review shown by `show`; `approve` overrides the review and goes straight
# to verifying.
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Add greet.sh."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "greet.sh", "content": "echo Hello\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Added greet.sh with echo."}}]}
  ],
  "implementing#2": [
    {"text": "Addressing the review.", "tool_calls": [{"name": "edit_file", "arguments": {"path": "greet.sh", "old": "echo Hello", "new": "printf 'Hello\\n'"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "greet.sh uses printf now."}}]}
  ],
  "reviewing": [
    {"text": "Not yet.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "request_changes", "comments": "Use printf instead of echo in greet.sh (R-7731)."}}]}
  ],
  "reviewing#2": [
    {"text": "Good now.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "Thanks."}}]}
  ]
}
JSON

wf_repo "$T/repo"
wf_mock_start
export ORCH_MAX_REVIEW_ROUNDS=2
service_start
R="git -C $T/repo"

is "$("$SUP" submit "Add a greeting" --repo "$T/repo" --verify "sh greet.sh" \
	--auto-approve all 2>&1)" 1 "task 1 submitted"
wait_state 1 completed 50
is "$(state_of 1)" completed "task 1 completes after one round of changes"
is "$(sq 'SELECT review_rounds FROM tasks WHERE id=1')" 1 "review_rounds is 1"
is "$(mock_q '[(r["stage"], r["round"], r["turn"]) for r in L if r["task"] == "1"]')" \
	"[('planning', 1, 0), ('implementing', 1, 0), ('implementing', 1, 1), ('reviewing', 1, 0), ('implementing', 2, 0), ('implementing', 2, 1), ('reviewing', 2, 0)]" \
	"the stages ran: plan, implement, review, implement again, review again"
u2=$(body_user 'r["task"] == "1" and r["stage"] == "implementing" and r["round"] == 2 and r["turn"] == 0')
like "$(printf '%s' "$u2" | tr '\n' ' ')" \
	"Feedback on your previous round, to address now: The reviewer asked for changes: Use printf instead of echo in greet.sh \(R-7731\)\." \
	"the second implementing run's first request has the review comments"
like "$(printf '%s' "$u2" | tr '\n' ' ')" "^Request: Add a greeting .*The approved plan: Add greet.sh\." \
	"... and still the request and the plan"
is "$(body_user 'r["task"] == "1" and r["stage"] == "implementing" and r["round"] == 1 and r["turn"] == 0' | grep -c 'R-7731')" \
	0 "the first implementing run had no review comments"
like "$(body_user 'r["task"] == "1" and r["stage"] == "reviewing" and r["round"] == 2 and r["turn"] == 0' | tr '\n' ' ')" \
	"\+printf 'Hello\\\\n'" "the second review is shown the changed diff"
is "$($R show orch/task-1:greet.sh)" "printf 'Hello\n'" "the branch has the changed file"
is "$($R rev-list --count main..orch/task-1)" 1 "the branch is still one commit"
like "$(sq 'SELECT implementation FROM tasks WHERE id=1')" "^greet.sh uses printf now\." \
	"implementation has the second round's summary"
like "$(sq 'SELECT review FROM tasks WHERE id=1')" '"verdict":"approve"' \
	"review holds the final verdict"
is "$(sq 'SELECT CAST(feedback IS NULL AS INTEGER) FROM tasks WHERE id=1')" 1 \
	"the feedback is cleared once it was used"
is "$(vr 1 status)" passed "verification passed"
like "$(sq "SELECT text FROM events WHERE task_id=1 ORDER BY id" | paste -sd '|')" \
	"review asked for changes" "the log says the review asked for changes"

# Task 2: the review rounds run out.
service_kill 9
export ORCH_MAX_REVIEW_ROUNDS=1
cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Add usage.sh."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "usage.sh", "content": "echo usage\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Added usage.sh."}}]}
  ],
  "reviewing": [
    {"text": "No.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "request_changes", "comments": "Still needs a --help option (R-4410)."}}]}
  ]
}
JSON
service_start
is "$("$SUP" submit "Add usage" --repo "$T/repo" --verify "sh usage.sh" \
	--auto-approve all 2>&1)" 2 "task 2 submitted"
wait_state 2 implementation_awaiting_approval 50
is "$(state_of 2)" implementation_awaiting_approval \
	"the task waits for a person once ORCH_MAX_REVIEW_ROUNDS ran out"
is "$(sq 'SELECT status FROM tasks WHERE id=2')" awaiting_approval "status awaiting_approval"
is "$(sq 'SELECT review_rounds FROM tasks WHERE id=2')" 2 "review_rounds is 2"
is "$(mock_q 'sum(1 for r in L if r["task"] == "2" and r["stage"] == "reviewing")')" 2 \
	"two reviews ran (1 allowed round + the last)"
like "$(body_user 'r["task"] == "2" and r["stage"] == "implementing" and r["round"] == 2 and r["turn"] == 0' | tr '\n' ' ')" \
	"The reviewer asked for changes: Still needs a --help option \(R-4410\)" \
	"the one allowed round had the comments"
"$SUP" show 2 >"$T/show2.out" 2>&1
like "$(tr '\n' ' ' <"$T/show2.out")" "Review: +changes requested: .*Still needs a --help option \(R-4410\)" \
	"show shows the review"
like "$(cat "$T/show2.out")" "approve 2 \| reject 2 --reason" "show says how to decide"
like "$(sq "SELECT text FROM events WHERE task_id=2 ORDER BY id DESC LIMIT 1")" \
	"ORCH_MAX_REVIEW_ROUNDS" "the log says why it waits"
"$SUP" approve 2 --by carol >"$T/approve.out" 2>&1
ok $? "approve exits 0"
wait_state 2 completed 40
is "$(state_of 2)" completed "the approved task completes"
is "$(mock_q 'sum(1 for r in L if r["task"] == "2" and r["stage"] == "reviewing")')" 2 \
	"approve skipped the review: no third review"
is "$(sq 'SELECT implementation_approved_by FROM tasks WHERE id=2')" carol \
	"implementation_approved_by is the approver"
is "$(vr 2 status)" passed "the verification ran and passed"
like "$(vr 2 output_tail)" "^usage" "its output is the script's"
is "$($R show orch/task-2:usage.sh)" "echo usage" "the branch has the file"
done_testing
