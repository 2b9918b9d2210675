#!/bin/bash
# The openai provider against the mock: a whole task, the contract headers,
# the key kept secret, the token counts; then permanent faults (401,
# insufficient_quota) fail the stage cleanly and --resume continues once
# they are gone.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

make_repo "$T/repo"
script_base
mock_start openai
service_start

"$SUP" run "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "run exits 0"
is "$(state_of 1)" completed "the task is completed on the openai provider"
is "$(git -C "$T/repo" show orch/task-1:hello.sh | tail -1)" "echo 'Hello, world!'" \
	"the branch has the model's file"
is "$(mock_q 'len(L)')" 7 "one request per turn"
is "$(ldd "$ORCH_WORKER_PATH" | grep -c libcurl)" 0 \
	"the worker does not link libcurl: it loads it for its first model call (as here)"
is "$(mock_q 'all(r["headers"].get("X-Orch-Task-Id") == "1" for r in L)')" True \
	"every request has X-Orch-Task-Id"
is "$(mock_q 'sorted(set(r["headers"].get("X-Orch-Stage") for r in L))')" \
	"['implementing', 'planning', 'reviewing']" "every request has X-Orch-Stage"
is "$(mock_q 'all(r["headers"]["X-Orch-Stage"] == r["stage"] for r in L)')" True \
	"the stage header names the stage"
is "$(mock_q 'all(r["key_sent"] and r["stream"] and r["path"] == "/v1/chat/completions" for r in L)')" \
	True "every request sent the key, streamed, to /v1/chat/completions"
is "$(sq 'SELECT sum(tokens_in), sum(tokens_out) FROM usage WHERE task_id=1')" \
	"2800|280" "the token usage is recorded"
"$SUP" logs 1 >"$T/log1.out" 2>&1
like "$(cat "$T/log1.out")" "Let me look at the repository first" \
	"the model's text reaches the task log"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='tool' AND data LIKE '%\"outcome\":\"error\"%'")" \
	1 "the call with invalid JSON arguments was answered with an error"
check_no_key 1

# A permanent fault: 401.
script_set planning 0 '{"fault": "401", "permanent": true}'
"$SUP" run "Second task" --repo "$T/repo" --auto-approve all \
	>"$T/run2.out" 2>"$T/run2.err"
ok $((! $?)) "run exits non-zero when the stage fails"
is "$(sq 'SELECT status FROM tasks WHERE id=2')" failed "a 401 fails the task"
like "$(sq 'SELECT error_details FROM tasks WHERE id=2')" \
	"401 from the LLM API.*check ORCH_LLM_API_KEY" "the error says what to fix"
is "$(mock_q 'sum(1 for r in L if r["task"] == "2")')" 1 "a 401 is not retried"
check "the service is still up" "$SUP" list
script_set planning 0 clear
"$SUP" --resume 2 >"$T/run3.out" 2>"$T/run3.err"
ok $? "--resume exits 0 once the key is fixed"
is "$(state_of 2)" completed "the resumed task completes"

# Out of credit: insufficient_quota is a 429 that waiting does not cure.
script_set implementing 1 '{"fault": "insufficient_quota", "permanent": true}'
"$SUP" run "Third task" --repo "$T/repo" --auto-approve all \
	>"$T/run4.out" 2>"$T/run4.err"
is "$(sq 'SELECT status FROM tasks WHERE id=3')" failed \
	"insufficient_quota fails the task"
like "$(sq 'SELECT error_details FROM tasks WHERE id=3')" \
	"out of credit or over its spend limit.*add credit" "the error says what to fix"
is "$(mock_q 'sum(1 for r in L if r["task"] == "3" and r["stage"] == "implementing" and r["turn"] == 1)')" \
	1 "insufficient_quota is not retried"
script_set implementing 1 clear
"$SUP" --resume 3 >"$T/run5.out" 2>"$T/run5.err"
is "$(state_of 3)" completed "the resumed task completes"
is "$(mock_q 'sum(1 for r in L if r["task"] == "3" and r["stage"] == "implementing" and r["turn"] == 0)')" \
	1 "the committed turn before the fault was not asked again"
check_no_key 3
db_intact
done_testing
