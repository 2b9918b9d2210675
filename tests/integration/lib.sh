# Shared helpers for the integration tests: TAP output, a scratch state
# directory, a throwaway git repository, and the service in the background.
# Each test sources this file; the binaries come from the test environment
# (ORCH_SUPERVISOR, ORCH_WORKER_PATH) that meson sets.
set -u

T=$(mktemp -d "${TMPDIR:-/tmp}/orch-it.XXXXXX")
export ORCH_STATE_DIR="$T/state"
export HOME="$T/home"
export ORCH_RETRY_BACKOFF_MS="${ORCH_RETRY_BACKOFF_MS:-50}"
export ORCH_LLM_PROVIDER="${ORCH_LLM_PROVIDER:-scripted}"
export NO_COLOR=1
unset ORCH_LLM_API_KEY OPENAI_API_KEY ANTHROPIC_API_KEY
mkdir -p "$HOME"
SUP=${ORCH_SUPERVISOR:?set by meson test}
REAL_WORKER=${ORCH_WORKER_PATH:?set by meson test}
BAD_WORKER=${ORCH_BAD_WORKER:-}
# The test's own variables are not the program's: it refuses unknown ORCH_*.
unset ORCH_SUPERVISOR ORCH_BAD_WORKER ORCH_TESTS_DIR ORCH_ESCAPE_PROBE
SVC=
tap_n=0
tap_failed=0

cleanup() {
	if [ -n "$SVC" ]; then
		kill -9 "$SVC" 2>/dev/null
		wait "$SVC" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT

ok() { # STATUS DESCRIPTION
	tap_n=$((tap_n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $tap_n - $2"
	else
		echo "not ok $tap_n - $2"
		tap_failed=$((tap_failed + 1))
	fi
}

check() { # DESCRIPTION COMMAND...
	local d=$1
	shift
	if "$@" >"$T/check.out" 2>&1; then
		ok 0 "$d"
	else
		ok 1 "$d"
		sed 's/^/#   /' "$T/check.out" | head -20
	fi
}

is() { # GOT WANT DESCRIPTION
	if [ "$1" = "$2" ]; then
		ok 0 "$3"
	else
		ok 1 "$3"
		echo "#   got:  '$1'"
		echo "#   want: '$2'"
	fi
}

like() { # GOT PATTERN DESCRIPTION (grep -E)
	if printf '%s' "$1" | grep -Eq -- "$2"; then
		ok 0 "$3"
	else
		ok 1 "$3"
		echo "#   got:  '$(printf '%s' "$1" | head -c 600)'"
		echo "#   want: /$2/"
	fi
}

done_testing() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
	exit $?
}

bail() {
	echo "Bail out! $*"
	[ -f "$T/service.log" ] && sed 's/^/# svc: /' "$T/service.log" | tail -30
	exit 1
}

sq() { # SQL: query the task database
	sqlite3 -cmd '.timeout 5000' "$ORCH_STATE_DIR/tasks.db" "$1"
}

# script_write_a: the scripted model's script for the small task most tests
# run (plan, write a.txt, finish, approve), in $T/script.json, which
# ORCH_LLM_SCRIPT then names.
script_write_a() {
	cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Planning.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Write a.txt."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Wrote a.txt."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "tool_calls": [{"name": "submit_review", "arguments":
      {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
	export ORCH_LLM_SCRIPT="$T/script.json"
}

# script_write_abc: as script_write_a with three files, the second turn
# answered after 3 s (a window to kill something in).
script_write_abc() {
	cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Planning.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Write a.txt, b.txt and c.txt."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "b", "delay_ms": 3000, "tool_calls": [{"name": "write_file",
      "arguments": {"path": "b.txt", "content": "beta\n"}}]},
    {"text": "c", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "c.txt", "content": "gamma\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Wrote three files."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "tool_calls": [{"name": "submit_review", "arguments":
      {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
	export ORCH_LLM_SCRIPT="$T/script.json"
}

# make_repo DIR: a small git repository with one commit.
make_repo() {
	mkdir -p "$1"
	git -C "$1" init -q -b main
	printf '# Demo project\n' >"$1/README.md"
	printf 'print("hi")\n' >"$1/app.py"
	git -C "$1" add -A
	git -C "$1" -c user.name=t -c user.email=t@t commit -qm init
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local end=$(($(date +%s) + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.05
	done
	return 0
}

state_of() { sq "SELECT workflow_state FROM tasks WHERE id=$1"; }
state_is() { [ "$(state_of "$1")" = "$2" ]; }

service_start() {
	"$SUP" serve >>"$T/service.log" 2>&1 &
	SVC=$!
	wait_for 10 test -S "$ORCH_STATE_DIR/orch.sock" || bail "service did not start"
	wait_for 10 "$SUP" list || bail "service does not answer"
}

service_kill() { # SIGNAL
	kill "-$1" "$SVC" 2>/dev/null
	wait "$SVC" 2>/dev/null
	SVC=
}

# The pid of the worker running for task ID (from the process table).
worker_pid() {
	local p
	for p in $(pgrep -x orch-worker; pgrep -x bad-worker); do
		echo "$p"
		return 0
	done
	return 1
}

# bad_worker MODE...: the next worker starts use these modes, then the
# real worker.
bad_worker() {
	printf '%s\n' "$@" >"$HOME/bad-worker.modes"
	: >"$HOME/bad-worker.count"
	echo "$REAL_WORKER" >"$HOME/bad-worker.real"
	export ORCH_WORKER_PATH="$BAD_WORKER"
}
