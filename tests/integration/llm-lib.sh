# Helpers for the llm-*.sh tests: the real binaries against tests/mock_llm.py
# over loopback.  Sourced instead of lib.sh (which it sources).
MOCK_PY="$ORCH_TESTS_DIR/mock_llm.py"
. "$ORCH_TESTS_DIR/integration/lib.sh"

# A key nobody else has, to look for everywhere it must not be.
KEY="sk-mock-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"
MOCK=
export ORCH_LLM_MAX_RETRIES="${ORCH_LLM_MAX_RETRIES:-5}"

llm_cleanup() {
	if [ -n "$MOCK" ]; then
		kill "$MOCK" 2>/dev/null
		wait "$MOCK" 2>/dev/null
	fi
	cleanup
}
trap llm_cleanup EXIT

# mock_start PROVIDER: the mock on a free port, the service's LLM settings
# pointing at it.
mock_start() {
	python3 "$MOCK_PY" --port-file "$T/mock.port" --script "$T/script.json" \
		--log "$T/mock.log" --key "$KEY" 2>"$T/mock.err" &
	MOCK=$!
	wait_for 10 test -s "$T/mock.port" || bail "the mock did not start"
	PORT=$(cat "$T/mock.port")
	export ORCH_LLM_PROVIDER="$1" ORCH_LLM_API_KEY="$KEY"
	export ORCH_LLM_MODEL=mock-model
	case $1 in
	openai) export ORCH_LLM_BASE_URL="http://127.0.0.1:$PORT/v1" ;;
	anthropic) export ORCH_LLM_BASE_URL="http://127.0.0.1:$PORT" ;;
	esac
}

# script_base: a whole task (no run_command, no verification): planning
# 2 turns, implementing 3, reviewing 2.
script_base() {
	cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Let me look at the repository first.\nThen plan.",
     "tool_calls": [{"name": "list_files", "arguments": {"path": ""}}],
     "usage": {"in": 100, "out": 10}},
    {"text": "I have what I need.",
     "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "1. Add hello.sh that prints a greeting."}}],
     "usage": {"in": 200, "out": 20}}
  ],
  "implementing": [
    {"text": "Writing the script.",
     "tool_calls": [{"name": "write_file", "arguments": {"path": "hello.sh", "content": "#!/bin/sh\necho 'Hello, world!'\n"}}],
     "usage": {"in": 300, "out": 30}},
    {"text": "Checking it.",
     "tool_calls": [{"name": "read_file", "arguments": {"path": "hello.sh"}},
                    {"name": "read_file", "arguments": "{not json"}],
     "usage": {"in": 400, "out": 40}},
    {"text": "Done.",
     "tool_calls": [{"name": "finish", "arguments": {"summary": "Added hello.sh."}}],
     "usage": {"in": 500, "out": 50}}
  ],
  "reviewing": [
    {"text": "Reading the change.",
     "tool_calls": [{"name": "read_file", "arguments": {"path": "hello.sh"}}],
     "usage": {"in": 600, "out": 60}},
    {"text": "Good.",
     "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "Fine."}}],
     "usage": {"in": 700, "out": 70}}
  ]
}
JSON
}

# script_set STAGE TURN JSON: merge JSON's keys into that turn (or remove
# the fault keys when JSON is "clear").
script_set() {
	python3 - "$T/script.json" "$1" "$2" "$3" <<'PY'
import json, os, sys
path, stage, turn, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = json.load(open(path))
t = s[stage][turn]
if extra == "clear":
    for k in ("fault", "times", "permanent", "retry_after", "retry_after_date", "stall", "delay"):
        t.pop(k, None)
else:
    t.update(json.loads(extra))
tmp = path + ".tmp"
json.dump(s, open(tmp, "w"))
os.rename(tmp, path)
PY
}

# mock_q PYTHON-EXPR: evaluate over L, the list of logged requests.
mock_q() {
	python3 - "$T/mock.log" "$1" <<'PY'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
print(eval(sys.argv[2]))
PY
}

# The key appears nowhere it must not: the database, the service log,
# what the CLI printed, the task log.
check_no_key() { # ID
	"$SUP" logs "$1" >"$T/tasklog.out" 2>&1
	sql_dump >"$T/dump.sql"
	is "$(grep -lF -- "$KEY" "$T/dump.sql" "$T/service.log" "$T"/run*.out \
		"$T"/run*.err "$T/tasklog.out" 2>/dev/null | wc -l)" 0 \
		"the API key is in no database row, log or output"
}

# The pid of the worker the service started (its child).
svc_worker() {
	pgrep -P "$SVC" -x orch-worker
}

# llm_faults PROVIDER: one transient fault on each turn (429 with
# Retry-After in seconds or as a date, 500, 529, garbage, cut_tool, sse_error, stall), each retried
# once; the task completes and no turn is asked more than twice.
llm_faults() {
	export ORCH_LLM_TIMEOUT_S=3
	make_repo "$T/repo"
	script_base
	# Retry-After in seconds (openai), as an HTTP date (anthropic).
	# (Without it the backoff would wait 0.5-1 s.)
	if [ "$1" = anthropic ]; then
		script_set planning 0 '{"fault": "429", "retry_after_date": 3}'
		waited='^(2\.|3\.)'
	else
		script_set planning 0 '{"fault": "429", "retry_after": 2}'
		waited='^2\.'
	fi
	script_set planning 1 '{"fault": "500"}'
	script_set implementing 0 '{"fault": "529"}'
	script_set implementing 1 '{"fault": "garbage"}'
	script_set implementing 2 '{"fault": "cut_tool"}'
	script_set reviewing 0 '{"fault": "sse_error"}'
	script_set reviewing 1 '{"fault": "stall", "stall": 10}'
	mock_start "$1"
	service_start
	"$SUP" run "Add a greeting script" --repo "$T/repo" --auto-approve all \
		>"$T/run1.out" 2>"$T/run1.err"
	ok $? "run exits 0"
	is "$(state_of 1)" completed "the task completes despite the faults"
	is "$(mock_q 'sorted((r["stage"], r["turn"], r["n"], r["fault"]) for r in L)')" \
		"$(printf '%s' "[('implementing', 0, 1, '529'), ('implementing', 0, 2, None), " \
			"('implementing', 1, 1, 'garbage'), ('implementing', 1, 2, None), " \
			"('implementing', 2, 1, 'cut_tool'), ('implementing', 2, 2, None), " \
			"('planning', 0, 1, '429'), ('planning', 0, 2, None), " \
			"('planning', 1, 1, '500'), ('planning', 1, 2, None), " \
			"('reviewing', 0, 1, 'sse_error'), ('reviewing', 0, 2, None), " \
			"('reviewing', 1, 1, 'stall'), ('reviewing', 1, 2, None)]")" \
		"each faulted turn was asked exactly twice"
	like "$(mock_q '[round(b["t"] - a["t"], 1) for a in L for b in L if a["fault"] == "429" and b["stage"] == "planning" and b["turn"] == 0 and b["n"] == 2][0]')" \
		"$waited" "the retry waited for Retry-After (2 s, or a date 3 s ahead)"
	is "$(sq 'SELECT sum(tokens_in), sum(tokens_out) FROM usage WHERE task_id=1')" \
		"2800|280" "only the successful replies count tokens"
	is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='reply'")" 7 \
		"a failed attempt is never journaled"
	"$SUP" logs 1 >"$T/log1.out" 2>&1
	like "$(cat "$T/log1.out")" "trying again" "the retries are in the task log"
	like "$(cat "$T/log1.out")" "did not answer in time" "the stall was cut by the timeout"
	check_no_key 1
	cp "$T/log1.out" "${LLM_KEEP_LOG:-/dev/null}" 2>/dev/null
	done_testing
}
