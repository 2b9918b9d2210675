#!/bin/bash
# GET /metrics: a task run through the service against the mock model, then
# the exposition parsed with the Prometheus client's own parser: every
# metric is there, and the counts match what the task did.  The model's
# name carries a quote, a backslash and a newline: it must stay one label.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

# Debian's python3 has the parser (python3-prometheus-client); a python3
# of its own earlier in PATH may not.
PY=python3
if ! "$PY" -c 'import prometheus_client' 2>/dev/null && [ -x /usr/bin/python3 ]; then
	PY=/usr/bin/python3
fi
"$PY" -c 'import prometheus_client' 2>/dev/null ||
	bail "python3-prometheus-client is not installed (contrib/setup.sh test)"

make_repo "$T/repo"
script_base
# Implementing runs two commands: one exits 3, one outlives its timeout.
script_set implementing 1 '{"tool_calls": [
  {"name": "run_command", "arguments": {"command": "exit 3"}},
  {"name": "run_command", "arguments": {"command": "sleep 30", "timeout_s": 1}}]}'
# One turn takes a second: the model call's duration must show it.
script_set reviewing 0 '{"delay": 1}'
mock_start openai
MODEL=$'mock"model\\x\nnext'
export ORCH_LLM_MODEL="$MODEL"
service_start

scrape() {
	curl -s --max-time 10 --unix-socket "$ORCH_STATE_DIR/orch.sock" \
		-D "$T/metrics.head" -o "$T/metrics.txt" http://orch/metrics
}
check "GET /metrics answers before any task" scrape
like "$(tr -d '\r' <"$T/metrics.head")" \
	'Content-Type: text/plain; version=0.0.4; charset=utf-8' \
	"as text/plain version 0.0.4"

id=$("$SUP" submit "Add a greeting script" --repo "$T/repo" \
	--auto-approve implementation --verify true)
is "$id" 1 "a task is submitted"
wait_for 60 state_is 1 plan_awaiting_approval || bail "no plan: $(state_of 1)"
sleep 1.2
check "the plan is approved after a second" "$SUP" approve 1 --by tester
wait_for 120 state_is 1 completed || bail "not completed: $(state_of 1)"
check "GET /metrics answers" scrape

# name{labels} -> value for every sample, and the families' types, from
# the reference parser; a line it cannot read fails the parse.
"$PY" - "$T/metrics.txt" >"$T/samples.txt" 2>"$T/parse.err" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    print("TYPE %s %s" % (fam.name, fam.type))
    for s in fam.samples:
        print("%s %r %s" % (s.name, sorted(s.labels.items()), s.value))
PY
ok $? "the Prometheus parser reads the whole exposition"
sed 's/^/#   /' "$T/parse.err" | head -5

# type NAME TYPE; val NAME 'LABELS' (python repr of the sorted items)
type_is() {
	is "$(grep -c "^TYPE $1 $2\$" "$T/samples.txt")" 1 "$1 is a $2"
}
val() { # (through the environment: awk -v would read the backslashes)
	K="$1 $2" awk 'index($0, ENVIRON["K"] " ") == 1 {print $NF}' "$T/samples.txt"
}
type_is orch_tasks gauge
type_is orch_queue_depth gauge
type_is orch_stage_duration_seconds histogram
type_is orch_model_call_duration_seconds histogram
# The parser names counter families without _total.
type_is orch_model_tokens counter
type_is orch_worker_starts counter
type_is orch_worker_restarts counter
type_is orch_worker_kills counter
type_is orch_approval_wait_seconds histogram
type_is orch_store_commit_duration_seconds histogram
type_is orch_sandbox_commands counter

is "$(val orch_tasks "[('status', 'completed'), ('workflow_state', 'completed')]")" \
	1.0 "one completed task"
is "$(val orch_tasks "[('status', 'pending'), ('workflow_state', 'pending')]")" \
	0.0 "none pending"
is "$(val orch_queue_depth "[('queue', 'pending')]")" 0.0 "queue depth: pending 0"
is "$(val orch_queue_depth "[('queue', 'waiting_for_worker')]")" 0.0 \
	"queue depth: waiting for a worker 0"
for s in planning implementing reviewing verifying; do
	is "$(val orch_stage_duration_seconds_count "[('stage', '$s')]")" 1.0 \
		"one $s stage in the stage histogram"
	is "$(val orch_worker_starts_total "[('stage', '$s')]")" 1.0 \
		"one $s worker started"
done
is "$(val orch_stage_duration_seconds_bucket "[('le', '+Inf'), ('stage', 'implementing')]")" \
	1.0 "the +Inf bucket holds it"
# The parser gives label values unescaped: the model's name as it was.
mlabels="[('model', $("$PY" -c 'import sys; print(repr(sys.argv[1]))' "$MODEL")), ('provider', 'openai')"
is "$(val orch_model_call_duration_seconds_count "$mlabels]")" 7.0 \
	"seven model calls, under the model's whole name"
msum=$(val orch_model_call_duration_seconds_sum "$mlabels]")
check "the calls' durations hold the slow turn's second ($msum s)" \
	"$PY" -c "assert $msum >= 1.0, $msum"
is "$(val orch_model_tokens_total "[('direction', 'in'), ${mlabels#[}]")" 2800.0 \
	"tokens in: the sum of the replies' usage"
is "$(val orch_model_tokens_total "[('direction', 'out'), ${mlabels#[}]")" 280.0 \
	"tokens out"
is "$(val orch_approval_wait_seconds_count "[('gate', 'plan')]")" 1.0 \
	"one plan approval waited for"
sum=$(val orch_approval_wait_seconds_sum "[('gate', 'plan')]")
check "... for about a second ($sum s)" "$PY" -c "assert 1.0 <= $sum < 30, $sum"
is "$(val orch_sandbox_commands_total "[('exit', 'status')]")" 2.0 \
	"two commands exited (exit 3 and the verification)"
is "$(val orch_sandbox_commands_total "[('exit', 'timeout')]")" 1.0 \
	"one command timed out"
is "$(val orch_worker_kills_total "[('reason', 'heartbeat')]")" 0.0 \
	"no worker was killed"
n=$(val orch_store_commit_duration_seconds_count "[('durability', 'durable')]")
check "the store's durable commits are timed ($n)" "$PY" -c "assert $n >= 10, $n"
n=$(val orch_store_commit_duration_seconds_count "[('durability', 'lazy')]")
check "... and the lazy ones, a stage start at least ($n)" "$PY" -c \
	"assert $n >= 1, $n"
is "$(grep -c '^mock' "$T/metrics.txt")" 0 "the model's newline starts no line"

# A task cancelled while its worker waits for the model: a kill to stop it.
script_set planning 0 '{"delay": 30}'
is "$("$SUP" submit "Another" --repo "$T/repo")" 2 "a second task is submitted"
wait_for 30 test "$(mock_q 'len(L)')" -ge 8 || bail "its model call never came"
check "it is cancelled while it waits for the model" "$SUP" cancel 2
wait_for 30 sh -c '! pgrep -P "$1" -x orch-worker' - "$SVC" || bail "its worker still runs"
check "GET /metrics answers again" scrape
"$PY" - "$T/metrics.txt" >"$T/samples.txt" 2>"$T/parse.err" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        print("%s %r %s" % (s.name, sorted(s.labels.items()), s.value))
PY
ok $? "and it parses"
is "$(val orch_worker_kills_total "[('reason', 'stop')]")" 1.0 \
	"the cancelled task's worker is counted as killed to stop it"
is "$(val orch_tasks "[('status', 'cancelled'), ('workflow_state', 'cancelled')]")" \
	1.0 "one cancelled task"
is "$(val orch_worker_starts_total "[('stage', 'planning')]")" 2.0 \
	"two planning workers started in all"
done_testing
