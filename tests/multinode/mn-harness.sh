#!/bin/bash
# The multi-node suite's own tools, without any node: the cluster answers
# on its unix socket and on loopback TCP and comes back after an immediate
# restart; the proxy forwards, cuts (open connections reset, new ones
# refused), hangs (new connections never answered) and is restored; the
# check of repeated model requests and the audit of lease owners both
# find what they must (a check that cannot fail proves nothing).
. "$ORCH_TESTS_DIR/multinode/lib.sh"

mn_base proxied
viaproxy="postgresql://postgres@127.0.0.1:$MN_PROXY_PORT/orch?connect_timeout=2"
pq() { timeout 20 psql -XAtq -v ON_ERROR_STOP=1 "$@"; }

is "$(pq "$MN_URL" -c 'SELECT 1')" 1 "the cluster answers on its unix socket"
is "$(pq "postgresql://postgres@127.0.0.1:$MN_PG_PORT/orch" -c 'SELECT 1')" 1 \
	"and on loopback TCP"
is "$(pq "$viaproxy" -c 'SELECT 2')" 2 "the proxy forwards"

# cut: a session in a query is reset at once; a new one is refused.
pq "$viaproxy" -c 'SELECT pg_sleep(20)' >/dev/null 2>"$T/cut.err" &
held=$!
wait_for 10 sh -c "python3 '$MN_LIB_DIR/pgproxy.py' ctl '$T/proxy.sock' status | grep -q 'open=1'"
like "$(proxy status)" "open=1" "the proxy holds the session"
s=$SECONDS
proxy cut >/dev/null
wait "$held"
rc=$?
ok "$([ "$rc" -ne 0 ] && [ $((SECONDS - s)) -le 3 ]; echo $?)" \
	"cut: the open session ends at once, failed (rc $rc, $((SECONDS - s)) s)"
s=$SECONDS
pq "$viaproxy" -c 'SELECT 3' >/dev/null 2>"$T/cut2.err"
rc=$?
ok "$([ "$rc" -ne 0 ] && [ $((SECONDS - s)) -le 1 ]; echo $?)" \
	"cut: a new connection fails at once (rc $rc, $((SECONDS - s)) s)"
proxy up >/dev/null
is "$(pq "$viaproxy" -c 'SELECT 4')" 4 "up: it forwards again"

# hang: a new connection is never answered (only its timeout ends it).
proxy hang >/dev/null
s=$(date +%s%N)
pq "$viaproxy" -c 'SELECT 5' >/dev/null 2>"$T/hang.err"
rc=$?
ms=$((($(date +%s%N) - s) / 1000000))
ok "$([ "$rc" -ne 0 ] && [ "$ms" -ge 1500 ]; echo $?)" \
	"hang: a new connection times out (rc $rc after $ms ms)"
like "$(cat "$T/hang.err")" "timeout" "saying so"
proxy up >/dev/null
is "$(pq "$viaproxy" -c 'SELECT 6')" 6 "up again: it forwards"

db_restart
is "$(pq "$MN_URL" -c 'SELECT 7')" 7 "the cluster answers after an immediate restart"

# check.py: a request made again before its reply was committed is
# allowed; one made after is found.
cat >"$T/j.txt" <<'J'
1|planning|1|1|2026-01-01 00:00:10.000
1|planning|1|2|2026-01-01 00:00:20.000
J
t0=$(date -u -d '2026-01-01 00:00:00' +%s)
for x in "0 1 5" "1 1 15" "1 2 16" "0 2 30"; do
	# shellcheck disable=SC2086 # three words
	set -- $x
	echo "{\"task\": \"1\", \"stage\": \"planning\", \"turn\": $1, \"n\": $2, \"round\": 1, \"t\": $((t0 + $3))}"
done >"$T/m.log"
is "$(python3 "$MN_LIB_DIR/check.py" repeats "$T/m.log" "$T/j.txt" 2>"$T/c.err")" \
	"requests=4 repeated=2 after_commit=1" \
	"check.py: one repeat before the commit (allowed), one after (found)"
like "$(cat "$T/c.err")" "task 1 planning round 1 turn 0 asked at" "naming it"

# The audit, on stand-in tables: claims and rows by two nodes.
psql -XAtq -v ON_ERROR_STOP=1 "$MN_URL" >/dev/null <<'SQL' || bail "stand-in tables"
CREATE TABLE tasks (id BIGINT PRIMARY KEY, workflow_state TEXT,
  lease_owner TEXT, lease_node TEXT, lease_epoch BIGINT DEFAULT 0);
CREATE TABLE events (task_id BIGINT);
CREATE TABLE journal (task_id BIGINT);
CREATE TABLE checkpoints (task_id BIGINT);
INSERT INTO tasks (id, workflow_state) VALUES (1, 'pending'), (2, 'pending');
SQL
mn_audit_install
as_node() { # NAME SQL
	psql -XAtq -v ON_ERROR_STOP=1 "$MN_URL&application_name=orch-node-$1" -c "$2" >/dev/null
}
as_node a "UPDATE tasks SET lease_owner='a1', lease_node='a', lease_epoch=1 WHERE id=1"
as_node a "INSERT INTO journal VALUES (1); INSERT INTO events VALUES (1)"
as_node b "UPDATE tasks SET lease_owner='b1', lease_node='b', lease_epoch=2 WHERE id=1"
as_node b "INSERT INTO checkpoints VALUES (1)"
is "$(mn_shared_claims)$(mn_epoch_writers)$(mn_unleased_steps)" "" \
	"the audit: a fair takeover is no finding"
# a, paused past its lease, writes as if it still held task 1.
as_node a "INSERT INTO journal VALUES (1)"
like "$(mn_unleased_steps)" "^journal task 1 epoch 2 by a \(lease: b\)" \
	"the audit: a step by a node that lost the lease is found"
like "$(mn_epoch_writers)" "^task 1 epoch 2: a,b" "and an epoch with two writers"
# Two claims of one epoch (a claim without the epoch's increment).
as_node a "UPDATE tasks SET lease_owner='a2', lease_node='a', lease_epoch=1 WHERE id=2"
as_node b "UPDATE tasks SET lease_owner=NULL, lease_epoch=0 WHERE id=2"
as_node b "UPDATE tasks SET lease_owner='b2', lease_node='b', lease_epoch=1 WHERE id=2"
like "$(mn_shared_claims)" "^task 2 epoch 1: 2 claims" \
	"the audit: two claims of one epoch are found"
done_testing
