#!/bin/bash
# One service per state directory: a second one exits at once and says why;
# the first goes on answering.
. "$ORCH_TESTS_DIR/integration/lib.sh"

health_pid() {
	curl -s --max-time 5 --unix-socket "$ORCH_STATE_DIR/orch.sock" \
		http://orch/v1/health | jq -r .pid
}
make_repo "$T/repo"
service_start
is "$(health_pid)" "$SVC" "the first service answers"
t0=$(date +%s%N)
timeout 20 "$SUP" serve >"$T/second.out" 2>&1
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
is "$rc" 1 "a second serve exits 1"
check "... quickly (${ms} ms)" test "$ms" -lt 3000
like "$(cat "$T/second.out")" 'another .*(service|orch-supervisor).* running' \
	"it says another service is running"
like "$(cat "$T/second.out")" "$ORCH_STATE_DIR" "it names the state directory"
timeout 20 "$SUP" >"$T/third.out" 2>&1
is "$?" 1 "a second service without the word serve exits 1 too"
check "the first service is still running" kill -0 "$SVC"
check "its socket is still there" test -S "$ORCH_STATE_DIR/orch.sock"
is "$(health_pid)" "$SVC" "the first service still answers"
is "$("$SUP" submit "Do something" --repo "$T/repo")" 1 "and takes a task"
like "$("$SUP" list)" '^1 +' "list shows it"
done_testing
