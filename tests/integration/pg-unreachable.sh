#!/bin/bash
# The database unreachable for a while (the server stopped for 6 s) and then
# back: the service keeps its worker waiting and tries again with backoff,
# logging the outage once, not per attempt; a command run meanwhile fails
# at once with a clear message; the task completes, nothing lost or done
# twice.
. "$ORCH_TESTS_DIR/integration/pg-lib.sh"

pg_task_start 2
check "the server stops" pg_cluster_ctl stop -m fast
t0=$(date +%s)
out=$(timeout 30 "$SUP" stats 2>&1)
rc=$?
ok "$([ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; echo $?)" "stats without the database fails, not hangs (exit $rc)"
like "$out" '[Dd]atabase|connect' "... saying the database cannot be reached"
left=$((6 - ($(date +%s) - t0)))
[ "$left" -gt 0 ] && sleep "$left"
check "the service is still up after 6 s without its database" kill -0 "$SVC"
check "the server starts again" pg_cluster_ctl start
pg_task_checks 1 1
done_testing
