#!/bin/bash
# A model's reply larger than a journal entry holds is a permanent error of
# its stage, asked for once: over the limit as it streams in (5 MiB of
# text, under the 8 MiB the worker once took), or once JSON-escaped (1 MiB
# of control characters is 6 MiB as JSON).  Neither crash-loops the worker.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

export ORCH_MAX_RETRIES=3 ORCH_LLM_MAX_RETRIES=3
make_repo "$T/repo"
script_base
python3 - "$T/script.json" <<'PY'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
s["planning"][0] = {"text": "x" * (5 * 1024 * 1024), "tool_calls": []}
json.dump(s, open(p, "w"))
PY
mock_start openai
service_start
asked() { # TASK STAGE TURN: requests the mock saw for that turn
	mock_q "sum(1 for r in L if r.get('task') == '$1' and r.get('stage') == '$2' and r.get('turn') == $3)"
}

"$SUP" submit "Add a greeting script" --repo "$T/repo" >/dev/null
wait_for 60 state_is 1 failed
is "$(state_of 1)" failed "a 5 MiB reply fails the task"
err=$(sq 'SELECT error_details FROM tasks WHERE id=1')
like "$err" 'exceeds [0-9]+ bytes, the most a journal entry holds' "... saying why ($(printf '%.150s' "$err"))"
is "$(asked 1 planning 0)" 1 "... and the model was asked once"
is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND text LIKE '%restarting%'")" 0 \
	"... with no worker restart"

# 1 MiB of control characters: taken as it streams, too large as JSON.
python3 - "$T/script.json" <<'PY'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
s["planning"][0] = {"text": "\x01" * (1024 * 1024), "tool_calls": []}
json.dump(s, open(p, "w"))
PY
"$SUP" submit "Add a greeting script" --repo "$T/repo" >/dev/null
wait_for 60 state_is 2 failed
is "$(state_of 2)" failed "a reply that is 6 MiB as JSON fails the task"
err=$(sq 'SELECT error_details FROM tasks WHERE id=2')
like "$err" "model's reply is [0-9]+ bytes as JSON, over the [0-9]+ a journal entry holds" \
	"... saying why ($(printf '%.150s' "$err"))"
is "$(asked 2 planning 0)" 1 "... and the model was asked once"
is "$(sq "SELECT count(*) FROM events WHERE task_id=2 AND text LIKE '%restarting%'")" 0 \
	"... with no worker restart"
db_intact
service_kill TERM

done_testing
