#!/bin/bash
# Two nodes started at the same moment race to claim the same 40 pending
# tasks, two at a time each: no task ever runs on both.  From the
# database's side (the audit of lease owners): no two claims of a task
# share an epoch and each epoch's rows are one node's; from the model's
# side: no model turn of any task was asked twice (with nothing killed, a
# task run twice at once would ask its turns twice).
. "$ORCH_TESTS_DIR/multinode/lib.sh"
N=${MN_TASKS:-40}

mn_script 0.05
mn_setup
node_start a
mn_audit_install
mn_reference
node_stop a TERM
submit_tasks "$N"
node_spawn a
node_spawn b
node_wait a
node_wait b
wait_for $((60 + N * 4)) all_ended
mn_invariants
r=$(mn_repeats)
like "$r" " repeated=0 " "no model turn was asked twice: no task ran on two nodes at once"
for n in a b; do
	got=$(sq "SELECT count(DISTINCT task_id) FROM events
		WHERE text LIKE 'worker % started on node $n %'")
	ok "$([ "$got" -gt 0 ]; echo $?)" "node $n ran some of the tasks ($got)"
done
is "$(sq "SELECT count(*) FROM mn_audit WHERE what = 'claim' AND lease_node IS DISTINCT FROM writer")" 0 \
	"every claim names the node that made it"
mn_no_strays
done_testing
