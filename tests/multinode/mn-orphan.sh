#!/bin/bash
# A lease whose release fails is let go later (issue 13, the database
# restart's defect).  A node lets a task's lease go when the task stops at
# a gate; the test makes that release fail (a trigger refuses it), then
# lets releases through again: the node must let the lease go at a later
# heartbeat.  Its heartbeat renews every lease it owns, so without the
# retry the task stays leased to it, running nowhere, for ever.
. "$ORCH_TESTS_DIR/multinode/lib.sh"

mn_script 0.05
mn_setup
node_start a # (the schema)
sq "CREATE TABLE mn_refuse (x int);
CREATE FUNCTION mn_refuse_release() RETURNS trigger AS \$\$
BEGIN
	IF OLD.lease_owner IS NOT NULL AND NEW.lease_owner IS NULL AND
	    EXISTS (SELECT 1 FROM mn_refuse) THEN
		RAISE EXCEPTION 'mn: release refused';
	END IF;
	RETURN NEW;
END \$\$ LANGUAGE plpgsql;
CREATE TRIGGER mn_refuse_release BEFORE UPDATE ON tasks
	FOR EACH ROW EXECUTE FUNCTION mn_refuse_release();
INSERT INTO mn_refuse VALUES (1);" >/dev/null || mn_bail "cannot install the trigger"
cli submit "Write the files" --repo "$ORIGIN" --verify "test -s both.txt" \
	>/dev/null || mn_bail "submit failed"
at_gate() { [ "$(count_state plan_awaiting_approval)" = 1 ]; }
# (lease_expires_at is UTC text, as every time in the store)
live="lease_owner IS NOT NULL AND lease_expires_at >
	to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')"
leased() { # the tasks under a live lease
	sq "SELECT count(*) FROM tasks WHERE $live"
}
unleased() { [ "$(leased)" = 0 ]; }
wait_for 60 at_gate ||
	mn_bail "the task never reached its plan's gate"
wait_for 10 grep -q 'cannot release its lease' "$T/a.log"
check "the release at the gate failed" grep -q 'cannot release its lease' "$T/a.log"
# Three heartbeats renew it meanwhile.
sleep 3
is "$(sq "SELECT lease_node FROM tasks WHERE $live")" a "the lease is still a's, renewed"
sq 'DELETE FROM mn_refuse' >/dev/null
wait_for 10 unleased
is "$(leased)" 0 \
	"a lets the lease go at a later heartbeat, once it can"
is "$(node_workers a)" "" "no worker runs the task"
node_stop a TERM
done_testing
