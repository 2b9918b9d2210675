#!/bin/bash
# The rate limit is shared: a 429 with Retry-After seen by one task's call
# holds every call to that provider, so another task's first call waits
# for it too instead of asking at once.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

make_repo "$T/repo"
script_base
script_set planning 0 '{"fault": "429", "retry_after": 4}'
mock_start openai
service_start

"$SUP" submit "Task one" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "submit of task 1 exits 0"
refused() {
	[ "$(mock_q 'sum(1 for r in L if r["task"] == "1" and r["fault"] == "429")')" = 1 ]
}
wait_for 30 refused || bail "task 1 was not refused"
"$SUP" submit "Task two" --repo "$T/repo" --auto-approve all \
	>"$T/run2.out" 2>"$T/run2.err"
ok $? "submit of task 2 exits 0"
wait_for 120 state_is 1 completed
wait_for 120 state_is 2 completed
is "$(state_of 1)" completed "task 1 completes"
is "$(state_of 2)" completed "task 2 completes"
# Without the shared hold task 2 would ask within a second of its submit.
like "$(mock_q '[round(b["t"] - a["t"], 1) for a in L for b in L if a["task"] == "1" and a["fault"] == "429" and b["task"] == "2" and b["stage"] == "planning" and b["turn"] == 0 and b["n"] == 1][0]')" \
	'^(3\.[5-9]|4\.|5\.)' "task 2's first call came after task 1's Retry-After (4 s)"
"$SUP" logs 2 >"$T/log2.out" 2>&1
like "$(cat "$T/log2.out")" "asked every caller to wait" \
	"task 2's log says why it waited"
done_testing
