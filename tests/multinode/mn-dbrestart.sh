#!/bin/bash
# The database restarted (pg_ctl restart -m immediate: every connection
# cut, what was not committed lost) twice while three nodes run 24 tasks:
# all complete with the reference tree, no committed model reply is asked
# again, no step is applied twice, each lease epoch had one owner.
. "$ORCH_TESTS_DIR/multinode/lib.sh"
N=${MN_TASKS:-24}

mn_script 0.2
mn_setup
node_start a
mn_audit_install
mn_reference
node_start b
node_start c
submit_tasks "$N"
wait_for 120 at_least $((N / 4)) || mn_bail "the tasks do not progress"
echo "# restart with $(count_state completed) completed, $(ours | wc -l) workers"
db_restart
wait_for 180 at_least $((N * 2 / 3)) || mn_bail "no progress after the first restart"
echo "# restart with $(count_state completed) completed, $(ours | wc -l) workers"
db_restart
wait_for $((60 + N * 5)) all_ended
mn_invariants
for n in a b c; do
	check "node $n is still serving" kill -0 "${NODE[$n]}"
done
mn_no_strays
done_testing
