#!/bin/bash
# A model process that cannot run at all (here: it exits at once) does not
# hold its tasks forever: after 5 failures in a row the calls in flight
# fail as transient errors, the stage is retried with its backoff and, its
# retries spent, the task fails saying why.  Once the program runs again
# the service starts it (its restarts never stopped) and --resume goes on.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

REAL_MODEL="$(dirname "$ORCH_WORKER_PATH")/orch-model"
[ -x "$REAL_MODEL" ] || bail "no orch-model beside $ORCH_WORKER_PATH"
cat >"$T/model" <<MODEL
#!/bin/sh
[ -e "$T/fixed" ] && exec "$REAL_MODEL"
echo x >>"$T/model-runs"
exit 1
MODEL
chmod +x "$T/model"
export ORCH_MODEL_PATH="$T/model" ORCH_MAX_RETRIES=1 ORCH_RETRY_BACKOFF_MS=100

make_repo "$T/repo"
script_base
mock_start openai
service_start

"$SUP" submit "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "submit exits 0"
wait_for 60 state_is 1 failed
is "$(state_of 1)" failed "the task fails instead of waiting for ever"
like "$(sq 'SELECT error_details FROM tasks WHERE id=1')" \
	"the model process failed [0-9]+ times in a row \(the last: (it exited|its link failed)\)" \
	"the reason says the model process keeps failing"
like "$(cat "$T/service.log")" "the calls in flight failed: their stages retry" \
	"the service log says the calls failed"
is "$(mock_q 'len(L)')" 0 "no request reached the model"
check "the service is still up" "$SUP" list

touch "$T/fixed"
"$SUP" --resume 1 >"$T/run2.out" 2>"$T/run2.err"
wait_for 60 state_is 1 completed
is "$(state_of 1)" completed "once the program runs, --resume completes the task"
is "$(pgrep -P "$SVC" -x orch-model | wc -l)" 1 "one model process runs"
done_testing
