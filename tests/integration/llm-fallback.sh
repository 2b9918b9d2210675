#!/bin/bash
# ORCH_LLM_FALLBACK_MODELS: when the configured model keeps failing with
# errors waiting does not cure (here a 500 on every try), the model process
# asks the next model of the list; the turn is counted under the model that
# answered.  A malformed list is refused at start.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

export ORCH_LLM_MAX_RETRIES=1
export ORCH_LLM_FALLBACK_MODELS="backup-model,last-model"

ORCH_LLM_FALLBACK_MODELS="a,,b" "$SUP" list >"$T/bad.out" 2>&1
is "$?" 2 "an empty name in the list is refused (exit 2)"
like "$(cat "$T/bad.out")" "ORCH_LLM_FALLBACK_MODELS: an empty model name" \
	"and the message names the variable"
ORCH_LLM_FALLBACK_MODELS='gpt 4"' "$SUP" list >"$T/bad2.out" 2>&1
is "$?" 2 "a name with a space or a quote is refused"

make_repo "$T/repo"
script_base
script_set planning 0 '{"fault": "500", "permanent": true, "fault_model": "mock-model"}'
mock_start openai
service_start

"$SUP" run "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "run exits 0"
is "$(state_of 1)" completed "the task completes on the fallback model"
is "$(mock_q '[r["model"] for r in L if r["stage"] == "planning" and r["turn"] == 0]')" \
	"['mock-model', 'mock-model', 'backup-model']" \
	"the configured model was tried twice (1 retry), then the first fallback"
is "$(mock_q 'sorted(set(r["model"] for r in L if not (r["stage"] == "planning" and r["turn"] == 0)))')" \
	"['mock-model']" "every other turn asked the configured model"
"$SUP" logs 1 >"$T/log1.out" 2>&1
like "$(cat "$T/log1.out")" "trying the fallback model backup-model" \
	"the log says why another model answered"
like "$(cat "$T/log1.out")" "model turn \(backup-model\): 100 tokens in" \
	"the turn is counted under the model that answered"
is "$(sq "SELECT count(*) FROM turns WHERE task_id=1 AND model='backup-model'")" 1 \
	"one turn's row names the fallback model"
check_no_key 1
done_testing
