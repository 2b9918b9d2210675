#!/bin/bash
# The task's texts that start a worker (request, plan, review) have to fit
# one message: when they do not, the task fails at once, saying so, instead
# of starting a worker that waits for a START that never comes, again and
# again.  (START's texts travel as they are, no longer as JSON: a request of
# 512 KiB and a plan of 3.8 MB, put in the database as a task of the earlier
# orchestrator might have it, are over PROTO_MAX_DATA together.)
. "$ORCH_TESTS_DIR/integration/lib.sh"

export ORCH_MAX_RETRIES=2 ORCH_WORKER_TIMEOUT_S=5
make_repo "$T/repo"
script_write_a
python3 - "$T/script.json" <<'PY'
import json, sys
p = sys.argv[1]
s = json.load(open(p))
s["planning"][0]["tool_calls"][0]["arguments"]["plan"] = "\x01" * 170000
json.dump(s, open(p, "w"))
PY
python3 -c 'import sys; sys.stdout.write("\x01" * (512 * 1024))' >"$T/request.txt"
"$SUP" submit --file "$T/request.txt" --repo "$T/repo" --auto-approve all >"$T/out" 2>&1
is "$?" 0 "a request of 512 KiB of control characters is taken"
if on_pg; then
	sq "UPDATE tasks SET plan = repeat('p', 3800000) WHERE id=1"
else
	sq "UPDATE tasks SET plan = replace(hex(zeroblob(1900000)), '0', 'p') WHERE id=1"
fi
timeout 120 "$SUP" serve >>"$T/service.log" 2>&1 &
SVC=$!
wait_for 90 state_is 1 failed
is "$(state_of 1)" failed "the task fails"
err=$(sq 'SELECT error_details FROM tasks WHERE id=1')
like "$err" 'bytes together, over the [0-9]+ a worker can be started with' \
	"... saying its texts are too large to start a worker with ($(printf '%.200s' "$err"))"
is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND text LIKE '%restarting%'")" 0 \
	"... at once, with no restart"
service_kill TERM
done_testing
