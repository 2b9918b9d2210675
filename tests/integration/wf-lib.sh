# Helpers for the wf-*.sh tests (the coding workflow end to end on the mock
# model with the openai provider, on a small real repository, verification
# really run in the sandbox).  Sourced instead of llm-lib.sh (which it
# sources).  Not a test itself.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

# The workflow's own limits are set by each test; keep the defaults of the
# environment out of it.
unset ORCH_MAX_REVIEW_ROUNDS ORCH_MAX_VERIFY_ROUNDS ORCH_VERIFY_COMMAND \
	ORCH_AUTO_APPROVE

# wf_mock_start: the mock (openai), saving every request body in
# $T/bodies, the service's LLM settings pointing at it.
wf_mock_start() {
	python3 "$MOCK_PY" --port-file "$T/mock.port" --script "$T/script.json" \
		--log "$T/mock.log" --key "$KEY" --bodies "$T/bodies" \
		2>"$T/mock.err" &
	MOCK=$!
	wait_for 10 test -s "$T/mock.port" || bail "the mock did not start"
	PORT=$(cat "$T/mock.port")
	export ORCH_LLM_PROVIDER=openai ORCH_LLM_API_KEY="$KEY"
	export ORCH_LLM_MODEL=mock-model
	export ORCH_LLM_BASE_URL="http://127.0.0.1:$PORT/v1"
}

# wf_repo DIR: a small real repository: a README, a shell library and a
# branch of its own, so that the test can check nothing of it changes.
wf_repo() {
	mkdir -p "$1"
	git -C "$1" init -q -b main
	printf '# Greeter\n\nShell scripts that greet people.\n' >"$1/README.md"
	printf 'name=world\n' >"$1/config.sh"
	git -C "$1" add -A
	git -C "$1" -c user.name=t -c user.email=t@t commit -qm init
	git -C "$1" branch feature
	printf 'local change\n' >"$1/WIP.txt"
}

# wf_repo_state DIR: what the user owns: HEAD, the index, the branches, the
# working tree's status.
wf_repo_state() {
	git -C "$1" rev-parse HEAD
	git -C "$1" symbolic-ref HEAD
	git -C "$1" ls-files --stage | git hash-object --stdin
	git -C "$1" for-each-ref --format='%(refname) %(objectname)' refs/heads
	git -C "$1" status --porcelain=v1 --untracked-files=all
}

# body_user WHERE: the first user message of the first request matching the
# python condition WHERE over the log record r (e.g. 'r["stage"] ==
# "implementing" and r["round"] == 2 and r["turn"] == 0').
body_user() {
	python3 - "$T/mock.log" "$T/bodies" "$1" <<'PY'
import json, os, sys
L = [json.loads(l) for l in open(sys.argv[1])]
for r in L:
    if eval(sys.argv[3]):
        b = json.load(open(os.path.join(sys.argv[2], r["body"])))
        print([m for m in b["messages"] if m["role"] == "user"][0]["content"])
        break
else:
    print("(no such request)")
PY
}

# wait_state ID STATE [SECONDS]: wait until the task is in STATE (or a
# terminal state), then report whether it is STATE.
wait_state() {
	local end=$(($(date +%s) + ${3:-40})) s
	while :; do
		s=$(state_of "$1" 2>/dev/null)
		[ "$s" = "$2" ] && return 0
		case $s in completed | failed | cancelled) return 1 ;; esac
		[ "$(date +%s)" -ge "$end" ] && return 1
		sleep 0.05
	done
}

# vr ID KEY: a key of the task's verification_result (JSON).
vr() {
	sq "SELECT $(sql_json verification_result "$2") FROM tasks WHERE id=$1"
}
