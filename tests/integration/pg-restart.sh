#!/bin/bash
# PostgreSQL restarted in the middle of a task (pg_ctl restart -m immediate:
# every connection cut, crash recovery at the start): the service
# reconnects, its worker waits, the task completes with nothing lost,
# nothing asked of the model again and nothing applied twice.
. "$ORCH_TESTS_DIR/integration/pg-lib.sh"

pg_task_start 3
# The worker waits 3 s for implementing turn 1: the server goes down and
# comes back (crash recovery) meanwhile.
check "the server restarts (-m immediate)" pg_cluster_ctl restart -m immediate
check "the service is still up" kill -0 "$SVC"
pg_task_checks 1 1
# Again, with the worker asking the model at once: the restart lands
# wherever the service is, likely in one of its commits.
# (Its id need not be 2: after a crash PostgreSQL's sequences go on from
# the last value they logged, up to 32 further.)
id2=$("$SUP" submit "Add it again" --repo "$T/repo" --auto-approve all 2>&1)
like "$id2" '^[0-9]+$' "a second task is submitted"
sleep 0.3
check "a second restart, at once" pg_cluster_ctl restart -m immediate
wait_for 120 state_is "$id2" completed
is "$(state_of "$id2")" completed "the second task completes too"
is "$(sq 'SELECT count(*) FROM (SELECT task_id, run, seq FROM journal GROUP BY task_id, run, seq HAVING count(*) > 1) AS d')" \
	0 "... with no journal step twice"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=$id2 AND kind='reply'")" 7 \
	"... and each reply once"
done_testing
