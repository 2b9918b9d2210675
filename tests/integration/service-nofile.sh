#!/bin/bash
# The service raises its soft descriptor limit to the hard one at start:
# each worker holds two of its descriptors, so a thousand workers need more
# than the 1024 most systems start a process with.
. "$ORCH_TESTS_DIR/integration/lib.sh"

hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -le 256 ]; then
	echo "1..0 # SKIP the hard descriptor limit is $hard"
	exit 0
fi
ulimit -Sn 256 || bail "cannot lower the soft limit"
make_repo "$T/repo"
service_start
soft=$(awk '/^Max open files/ {print $4}' "/proc/$SVC/limits")
is "$soft" "$hard" "the service's soft RLIMIT_NOFILE is raised to the hard one"
is "$(ulimit -Sn)" 256 "the shell that started it keeps its own"
is "$("$SUP" submit "Do something" --repo "$T/repo")" 1 "the service takes a task"
ORCH_MAX_WORKERS=4096 timeout 10 "$SUP" list >"$T/out" 2>&1
is "$?" 0 "ORCH_MAX_WORKERS=4096 is accepted"
ORCH_MAX_WORKERS=4097 timeout 10 "$SUP" list >"$T/out" 2>&1
is "$?" 2 "ORCH_MAX_WORKERS=4097 is refused"
like "$(cat "$T/out")" 'ORCH_MAX_WORKERS' "... naming it"
done_testing
