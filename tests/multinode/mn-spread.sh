#!/bin/bash
# Sixty tasks on three nodes sharing one PostgreSQL database and one
# origin: all complete, each with the reference tree; each result branch
# is on the origin once and was pushed once; every node ran some; no
# lease is left held; each lease epoch had one owner.  The three nodes
# start at once on the empty database: all three come up (they make the
# schema together).
. "$ORCH_TESTS_DIR/multinode/lib.sh"
N=${MN_TASKS:-60}

mn_script 0.05
mn_setup
node_spawn a
node_spawn b
node_spawn c
for n in a b c; do
	wait_for 20 sh -c "test -S '$T/n-$n/orch.sock' || ! kill -0 ${NODE[$n]}"
	check "node $n starts on the empty database with the others" kill -0 "${NODE[$n]}"
done
for n in a b c; do
	kill -0 "${NODE[$n]}" 2>/dev/null || node_restart "$n"
done
mn_audit_install
mn_reference
submit_tasks "$N"
wait_for $((60 + N * 4)) all_ended
mn_invariants
is "$(git -C "$T/origin.git" for-each-ref --format='%(refname)' 'refs/heads/orch/' | sort | uniq -d)" "" \
	"no result branch twice on the origin"
is "$(git -C "$T/origin.git" for-each-ref --format='%(refname)' 'refs/heads/orch/' | wc -l)" \
	"$((N + 1))" "one result branch per task on the origin"
is "$(sq "SELECT count(*) FROM (SELECT task_id FROM events
	WHERE text LIKE 'result branch orch/task-% pushed to %'
	GROUP BY task_id HAVING count(*) = 1) x")" "$((N + 1))" \
	"each task's result branch was pushed once"
for n in a b c; do
	got=$(sq "SELECT count(DISTINCT task_id) FROM events
		WHERE text LIKE 'worker % started on node $n %'")
	ok "$([ "$got" -gt 0 ]; echo $?)" "node $n ran some of the tasks ($got)"
done
is "$(sq 'SELECT count(*) FROM tasks WHERE lease_owner IS NOT NULL')" 0 \
	"no lease is held once every task is done"
like "$(cli nodes)" "^c +live" "nodes lists the cluster"
mn_no_strays
done_testing
