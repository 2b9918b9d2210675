#!/bin/bash
# kill -9 the worker while the openai model is answering: the restarted
# worker replays the committed turns and asks only for the one in flight.
# The model takes longer than the watchdog allows: the worker heartbeats
# while it waits, so only the kill restarts it.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

make_repo "$T/repo"
script_base
script_set implementing 1 '{"delay": 3}'
mock_start openai
export ORCH_WORKER_TIMEOUT_S=2
service_start

"$SUP" submit "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "submit exits 0"
in_flight() {
	[ "$(mock_q 'sum(1 for r in L if r["stage"] == "implementing" and r["turn"] == 1)')" = 1 ]
}
wait_for 60 in_flight ||
	bail "the worker did not ask for implementing turn 1"
W=$(svc_worker)
like "$W" '^[0-9]+$' "the worker is running"
is "$(tr '\0' '\n' <"/proc/$W/environ" | grep -c -- "$KEY")" 0 \
	"the worker's environment has no API key"
is "$(tr '\0' '\n' <"/proc/$W/environ" | grep -c '^PATH=')" 1 \
	"(the worker's environment was read)"
kill -9 "$W"
wait_for 120 state_is 1 completed
is "$(state_of 1)" completed "the task completes after the kill"
is "$(mock_q 'sorted((r["stage"], r["turn"], r["n"]) for r in L)')" \
	"[('implementing', 0, 1), ('implementing', 1, 1), ('implementing', 1, 2), ('implementing', 2, 1), ('planning', 0, 1), ('planning', 1, 1), ('reviewing', 0, 1), ('reviewing', 1, 1)]" \
	"only the turn in flight was asked twice"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND stage='implementing' AND kind='reply'")" \
	3 "each implementing turn is journaled once"
check_no_key 1
done_testing
