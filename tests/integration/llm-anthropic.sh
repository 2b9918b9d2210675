#!/bin/bash
# The anthropic provider against the mock: a whole task, the contract
# headers, anthropic-version, the key kept secret, the token counts; then a
# permanent 400 fails the stage cleanly and --resume continues once it is
# gone.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

make_repo "$T/repo"
script_base
mock_start anthropic
service_start

"$SUP" run "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "run exits 0"
is "$(state_of 1)" completed "the task is completed on the anthropic provider"
is "$(git -C "$T/repo" show orch/task-1:hello.sh | tail -1)" "echo 'Hello, world!'" \
	"the branch has the model's file"
is "$(mock_q 'len(L)')" 7 "one request per turn"
is "$(mock_q 'all(r["headers"].get("X-Orch-Task-Id") == "1" and r["headers"].get("X-Orch-Stage") == r["stage"] for r in L)')" \
	True "every request has X-Orch-Task-Id and X-Orch-Stage"
is "$(mock_q 'sorted(set(r["stage"] for r in L))')" \
	"['implementing', 'planning', 'reviewing']" "all three stages asked"
is "$(mock_q 'all(r["key_sent"] and r["stream"] and r["path"] == "/v1/messages" and r["anthropic_version"] == "2023-06-01" for r in L)')" \
	True "every request sent x-api-key and anthropic-version, streamed, to /v1/messages"
is "$(sq 'SELECT sum(tokens_in), sum(tokens_out) FROM usage WHERE task_id=1')" \
	"2800|280" "the token usage is recorded"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='tool' AND data LIKE '%\"outcome\":\"error\"%'")" \
	1 "the call with invalid JSON arguments was answered with an error"
"$SUP" logs 1 >"$T/log1.out" 2>&1
like "$(cat "$T/log1.out")" "Let me look at the repository first" \
	"the model's text reaches the task log"
check_no_key 1

script_set reviewing 1 '{"fault": "400", "permanent": true}'
"$SUP" run "Second task" --repo "$T/repo" --auto-approve all \
	>"$T/run2.out" 2>"$T/run2.err"
ok $((! $?)) "run exits non-zero when the stage fails"
is "$(sq 'SELECT status FROM tasks WHERE id=2')" failed "a 400 fails the task"
like "$(sq 'SELECT error_details FROM tasks WHERE id=2')" \
	"400 from the LLM API: it refused the request \(mock: the request was refused\): check ORCH_LLM_MODEL" \
	"the error quotes the API and says what to check"
is "$(mock_q 'sum(1 for r in L if r["task"] == "2" and r["stage"] == "reviewing" and r["turn"] == 1)')" \
	1 "a 400 is not retried"
check "the service is still up" "$SUP" list
script_set reviewing 1 clear
"$SUP" --resume 2 >"$T/run3.out" 2>"$T/run3.err"
ok $? "--resume exits 0 once the fault is gone"
is "$(state_of 2)" completed "the resumed task completes"
is "$(mock_q 'sum(1 for r in L if r["task"] == "2" and r["stage"] == "reviewing" and r["turn"] == 0)')" \
	1 "the committed turn before the fault was not asked again"
check_no_key 2
db_intact
done_testing
