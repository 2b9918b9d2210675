#!/bin/bash
# A node cut off from the database.  Node c reaches PostgreSQL through a
# proxy the test controls; it runs two tasks in a slow model turn when
# the proxy cuts every connection and refuses new ones: c stops its
# workers before its leases can expire (it must not keep working blind),
# says why, and the other nodes complete its tasks after the leases
# expire.  The link restored, c renews its leases and works again.  Then
# the same with a partition that drops packets instead of refusing them
# (the proxy hangs): only a timeout can tell c, and it must still stop
# its workers within the lease.
. "$ORCH_TESTS_DIR/multinode/lib.sh"

mn_script 0.05
mn_setup c
node_start a
mn_audit_install
mn_reference
node_stop a TERM
mn_script 0.05 6

# slow_asked FIRST: the slow turn (implementing, turn 1) of tasks FIRST
# and FIRST+1 was asked.
slow_asked() {
	[ "$(python3 -c 'import json, sys
print(len({r["task"] for r in map(json.loads, open(sys.argv[1]))
           if r.get("stage") == "implementing" and r.get("turn") == 1
           and int(r["task"]) >= int(sys.argv[2])}))' \
		"$T/mock.log" "$1" 2>/dev/null || echo 0)" -ge 2 ]
}

# c_idle: node c runs no worker.
c_idle() { [ -z "$(node_workers c)" ]; }

# partition MODE: c alone takes two tasks; in their slow turn the
# link breaks (MODE: cut or hang); a and b are running by then.
partition() {
	local first=$(($(sq 'SELECT count(*) FROM tasks') + 1)) t0 ms id now hb
	echo "# mn: phase $1" >>"$T/c.log"
	node_start c
	submit_tasks 2
	wait_for 60 slow_asked "$first" || mn_bail "c's tasks never reached the slow turn"
	is "$(node_workers c | wc -l)" 2 "$1: node c runs two tasks"
	node_start a
	node_start b
	t0=$(date +%s%N)
	proxy "$1" >/dev/null
	# (a function: wait_for's arguments are expanded once, at the call)
	wait_for 10 c_idle
	now=$(($(date +%s%N) / 1000000))
	ms=$((now - t0 / 1000000))
	is "$(node_workers c)" "" "$1: c has stopped its workers"
	# Its leases expire a lease after the last heartbeat that got
	# through (the heartbeat renews them in the same transaction); the
	# time since the cut adds the proxy command's own start.
	hb=$(sq "SELECT round(extract(epoch FROM heartbeat_at::timestamp
		AT TIME ZONE 'UTC') * 1000) FROM nodes WHERE name = 'c'")
	ok "$([ -n "$hb" ] && [ $((now - hb)) -lt $((ORCH_LEASE_S * 1000)) ]; echo $?)" \
		"$1: before its leases could expire ($((now - ${hb:-0})) ms after its last heartbeat, $ms ms after the cut; lease ${ORCH_LEASE_S} s)"
	check "$1: c says why it stopped" sh -c "sed -n '/^# mn: phase $1/,\$p' '$T/c.log' | grep -q 'stopping its workers'"
	wait_for 90 all_ended
	for id in $first $((first + 1)); do
		is "$(state_of "$id")" completed "$1: task $id completes"
		like "$(ran_on "$id" | tr '\n' ' ')" "(^| )(a|b) " \
			"$1: on another node ($(ran_on "$id" | tr '\n' ' '))"
	done
	# Restored: c takes work again (a and b drained so that only it can).
	proxy up >/dev/null
	node_stop a TERM
	node_stop b TERM
	wait_for 20 sh -c "sed -n '/^# mn: phase $1/,\$p' '$T/c.log' | grep -q 'renewed again'"
	check "$1: c renews its leases once the link is back" sh -c "sed -n '/^# mn: phase $1/,\$p' '$T/c.log' | grep -q 'renewed again'"
	mn_script 0.05
	submit_tasks 1
	wait_for 60 all_ended
	id=$(sq 'SELECT max(id) FROM tasks')
	is "$(state_of "$id"):$(ran_on "$id")" "completed:c" "$1: c completes a new task after"
	is "$(sq "SELECT count(*) FROM mn_audit WHERE writer = 'c'
		AND task_id IN ($first, $((first + 1))) AND at > to_timestamp($t0 / 1e9)")" 0 \
		"$1: c wrote nothing for its two tasks once cut off, nor after the link was back"
	is "$(sed -n "/^# mn: phase $1/,\$p" "$T/c.log" |
		grep -o 'task=[0-9]* msg="lease lost: another node' | sort | uniq -d)" "" \
		"$1: c tells each lease it lost once"
	node_stop c TERM
	mn_script 0.05 6
}

partition cut
partition hang
mn_invariants
mn_no_strays
done_testing
