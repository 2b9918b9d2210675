#!/bin/bash
# Several services (nodes) on one PostgreSQL database, on a private
# throwaway cluster, with ORCH_LEASE_S=3: a node name is one live service;
# tasks spread over the nodes and all complete; a node killed mid-task
# has its task completed by another; a node paused past its lease commits
# nothing for the task it lost and stops its worker when it wakes; a
# cancel from another node reaches the running one within a second; a
# drained node (SIGTERM) lets go of its leases at once; `nodes` and
# `show` tell who runs what.  Skipped where PostgreSQL 15 is not installed.
. "$ORCH_TESTS_DIR/integration/lib.sh"

PGBIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PGBIN/initdb" ] || ! id postgres >/dev/null 2>&1; then
	echo "1..0 # SKIP PostgreSQL 15 is not installed (apt-get install postgresql-15)"
	exit 0
fi
unset DB_PATH ORCH_TEST_PG_URL

PGD=$(mktemp -d /tmp/orch-pg.XXXXXX)
chown postgres "$PGD"
as_pg() { runuser -u postgres -- "$@"; }
declare -A NODE=()
mn_cleanup() {
	local n rc=$?
	if [ "$rc" -ne 0 ] || [ "${tap_failed:-0}" -ne 0 ]; then
		for n in "$T"/*.log; do
			[ -f "$n" ] && tail -n 15 "$n" | sed "s|^|# ${n##*/}: |"
		done
		rm -rf /tmp/mn-lease-last && mkdir -p /tmp/mn-lease-last &&
			cp "$T"/*.log /tmp/mn-lease-last/ 2>/dev/null
	fi
	for n in "${!NODE[@]}"; do
		kill -CONT "${NODE[$n]}" 2>/dev/null
		kill -9 "${NODE[$n]}" 2>/dev/null
	done
	wait 2>/dev/null
	as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -m immediate stop >/dev/null 2>&1
	rm -rf "$PGD"
	cleanup
}
trap mn_cleanup EXIT
as_pg "$PGBIN/initdb" -D "$PGD/data" -U orch --auth=trust >/dev/null ||
	bail "initdb failed"
as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -w -l "$PGD/log" \
	-o "-k $PGD -c listen_addresses=''" start >/dev/null ||
	bail "the cluster did not start"
as_pg "$PGBIN/createdb" -h "$PGD" -U orch orch || bail "createdb failed"
export ORCH_DATABASE_URL="postgresql:///orch?host=$PGD&user=orch"
export ORCH_LEASE_S=3 ORCH_MAX_WORKERS=2 ORCH_RETRY_BACKOFF_MS=200
export ORCH_SCRIPTED_TRACE="$T/trace"
pq() { psql -X -A -t -q "$ORCH_DATABASE_URL" -c "$1"; }
pstate() { pq "SELECT workflow_state FROM tasks WHERE id=$1"; }
pstate_is() { [ "$(pstate "$1")" = "$2" ]; }
# The node whose live lease the task runs under (show --json's "node").
node_of() { "$SUP" show "$1" --json | python3 -c \
	'import json,sys; print(json.load(sys.stdin).get("node") or "")'; }
node_is() { [ "$(node_of "$1")" = "$2" ]; }
all_done() {
	[ "$(pq "SELECT count(*) FROM tasks WHERE workflow_state <> 'completed'")" = 0 ]
}
# The CLI of a machine without a service: only the database's URL.
cli() { ORCH_STATE_DIR="$T/cli" "$SUP" "$@"; }

# A slow implementing turn (the window to kill, pause or cancel in).
slow_script() { # DELAY_MS (replaced at once: a worker may be reading it)
	cat >"$T/script.json.new" <<JSON
{
  "planning": [
    {"text": "Planning.", "tool_calls": [{"name": "submit_plan", "arguments":
      {"plan": "Write a.txt and b.txt."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments":
      {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "b", "delay_ms": $1, "tool_calls": [{"name": "write_file",
      "arguments": {"path": "b.txt", "content": "beta\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Wrote two files."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "tool_calls": [{"name": "submit_review", "arguments":
      {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
	mv "$T/script.json.new" "$T/script.json"
	export ORCH_LLM_SCRIPT="$T/script.json"
}
in_slow_turn() { # TASK [TIMES]: the slow turn was asked (TIMES times)
	[ "$(grep -Ec "task=$1 stage=implementing .* turn=1$" "$T/trace" 2>/dev/null)" -ge "${2:-1}" ]
}

node_start() { # NAME
	ORCH_STATE_DIR="$T/$1" ORCH_NODE_NAME="$1" "$SUP" serve >>"$T/$1.log" 2>&1 &
	NODE[$1]=$!
	wait_for 10 test -S "$T/$1/orch.sock" || bail "node $1 did not start"
}
node_stop() { # NAME SIGNAL
	kill "-$2" "${NODE[$1]}" 2>/dev/null
	wait "${NODE[$1]}" 2>/dev/null
	unset "NODE[$1]"
}
# ms: from the cancel's commit (its event's time) to the log line of
# node NAME that stops the task's worker (5 s at most to appear).
stop_ms() { # TASK NAME
	local line
	# The notification, or the fence of a write the worker asked for
	# meanwhile (the lease of a cancelled task is gone), whichever first.
	local re="task=$1 .*(now cancelled|lease lost).*stopping worker"
	wait_for 5 grep -Eq "$re" "$T/$2.log"
	line=$(grep -E "$re" "$T/$2.log" | head -n 1)
	ms=$(python3 - "$(pq "SELECT ts FROM events WHERE task_id=$1 AND state='cancelled'")" \
		"${line%% *}" <<'PY'
import datetime, sys
db = datetime.datetime.strptime(sys.argv[1], "%Y-%m-%d %H:%M:%S.%f")
lg = datetime.datetime.strptime(sys.argv[2][3:], "%Y-%m-%dT%H:%M:%S.%fZ")
print(int((lg - db).total_seconds() * 1000))
PY
)
	[ -n "$ms" ] || echo "# no stop of task $1 in $2.log: ${line:-none}"
}
# ms: how long since t0 until fewer workers run than $before (10 s at most).
# a_workers: how many workers node a runs (its children only: other
# tests on the machine run workers too).
a_workers() { pgrep -c -P "${NODE[a]}" -x orch-worker; }
worker_gone_ms() {
	local i
	for i in $(seq 100); do
		[ "$(a_workers)" -lt "$before" ] && break
		sleep 0.1
	done
	ms=$((($(date +%s%N) - t0) / 1000000))
}
submit() { cli submit "$1" --repo "$T/repo" --auto-approve all; }

make_repo "$T/repo"
slow_script 1000

# A node name is one live service.
node_start a
out=$(ORCH_STATE_DIR="$T/a2" ORCH_NODE_NAME=a timeout 20 "$SUP" serve 2>&1)
is "$?" 1 "a second service named a on the same database exits 1"
like "$out" "runs as node 'a' on the database" "saying why"
out=$(ORCH_NODE_NAME='a b' "$SUP" nodes 2>&1)
like "$out" "ORCH_NODE_NAME: must be 1 to 63 letters" \
	"an unfit node name is refused"

# Six tasks, three nodes of two slots: they spread and all complete.
node_start b
node_start c
for i in 1 2 3 4 5 6; do
	submit "Task $i" >/dev/null || bail "submit $i failed"
done
wait_for 120 all_done
check "six tasks on three nodes all complete" all_done
nodes_used=$(pq "SELECT count(DISTINCT substring(text from 'on node ([a-z]+)'))
	FROM events WHERE text LIKE 'worker % started on node %'")
ok "$([ "$nodes_used" -ge 2 ]; echo $?)" "their workers ran on several nodes ($nodes_used)"
is "$(pq "SELECT count(*) FROM tasks WHERE lease_owner IS NOT NULL")" 0 \
	"no lease is held once they are done"
is "$(sort "$T/trace" | uniq -d)" "" "no model turn was asked twice"
out=$(cli nodes)
like "$out" "^a +live .* 0/2" "nodes: a, live, running 0 of 2"
like "$out" "^c +live" "nodes: c"
is "$(cli nodes --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" 3 \
	"nodes --json: three"
like "$(cli stats)" "nodes:" "stats lists the nodes"

# SIGKILL of the node running a task: another completes it within the
# lease and a heartbeat or two.
slow_script 6000
node_stop c TERM
t=$(submit "Killed midway")
wait_for 30 in_slow_turn "$t" || bail "task $t never reached the slow turn"
victim=$(node_of "$t")
ok "$([ -n "$victim" ]; echo $?)" "show names the node running task $t ($victim)"
like "$(cli show "$t")" "Node: +$victim" "in the text too"
start=$(date +%s)
node_stop "$victim" KILL
slow_script 1000
wait_for 60 pstate_is "$t" completed
is "$(pstate "$t")" completed "task $t completes after its node was killed"
took=$(($(date +%s) - start))
ok "$([ "$took" -le 20 ]; echo $?)" "within 20 s ($took s)"
other=$(pq "SELECT substring(text from 'on node ([a-z]+)') FROM events
	WHERE task_id=$t AND text LIKE 'worker % started on node %' ORDER BY id DESC LIMIT 1")
ok "$([ "$other" != "$victim" ]; echo $?)" "on another node ($other)"
ok "$([ "$(pq "SELECT lease_epoch FROM tasks WHERE id=$t")" -ge 2 ]; echo $?)" \
	"the takeover bumped its lease epoch"
node_start "$victim"

# A node paused past its lease: another takes the task over; the paused
# one, woken while the other is paused in turn, commits nothing for it
# and stops its worker.
for n in a b c; do [ -n "${NODE[$n]:-}" ] && node_stop "$n" TERM; done
node_start a
slow_script 5000
t=$(submit "Paused midway")
wait_for 30 in_slow_turn "$t" || bail "task $t never reached the slow turn"
node_is "$t" a || bail "task $t is not on a"
kill -STOP "${NODE[a]}"
# b's own leases are long: they outlast its pause below, so that the
# woken a cannot take the task back legitimately in the meantime.
ORCH_LEASE_S=30 node_start b
wait_for 20 node_is "$t" b
is "$(node_of "$t")" b "node b took the task of the paused node a"
wait_for 20 in_slow_turn "$t" 2 || bail "b never asked the slow turn"
kill -STOP "${NODE[b]}"
# By now a's worker has its slow turn's reply, waiting to be journaled
# when a wakes, with a lease that is b's.
sleep 3
ev=$(pq "SELECT count(*) || '/' || coalesce(max(id), 0) FROM events WHERE task_id=$t")
jr=$(pq "SELECT count(*) FROM journal WHERE task_id=$t")
cp=$(pq "SELECT count(*) FROM checkpoints WHERE task_id=$t")
kill -CONT "${NODE[a]}"
sleep 10 # a's worker finishes its slow turn meanwhile, and a wakes
is "$(pq "SELECT count(*) || '/' || coalesce(max(id), 0) FROM events WHERE task_id=$t")" "$ev" \
	"the woken node wrote no event for the task it lost"
pq "SELECT id, ts, kind, text FROM events WHERE task_id=$t AND id > ${ev#*/}" | sed 's/^/# new: /'

is "$(pq "SELECT count(*) FROM journal WHERE task_id=$t")" "$jr" "nor a journal entry"
is "$(pq "SELECT count(*) FROM checkpoints WHERE task_id=$t")" "$cp" "nor a checkpoint"
check "and says why it stops" grep -Eq "lease lost|not renewed its leases" "$T/a.log"
is "$(grep -c "task=$t .*lease lost" "$T/a.log")" 1 "once"
check "its worker is gone" sh -c "! pgrep -P '${NODE[a]}' >/dev/null"
kill -CONT "${NODE[b]}"
wait_for 60 pstate_is "$t" completed
is "$(pstate "$t")" completed "task $t completes on b"
is "$(git -C "$T/repo" show "orch/task-$t:b.txt")" beta "with the right result"

# A cancel from another node (through its service) reaches the node
# running the task within a second.
slow_script 8000
t=$(submit "Cancelled from elsewhere")
wait_for 30 in_slow_turn "$t" || bail "task $t never reached the slow turn"
runner=$(node_of "$t")
[ "$runner" = a ] && other=b || other=a
ORCH_STATE_DIR="$T/$other" "$SUP" cancel "$t" >/dev/null || bail "cancel failed"
stop_ms "$t" "$runner"
is "$(pstate "$t")" cancelled "task $t is cancelled from node $other"
ok "$([ -n "$ms" ] && [ "$ms" -le 1000 ]; echo $?)" \
	"its worker on node $runner is stopped within a second ($ms ms after the commit)"
wait_for 5 node_is "$t" ""
is "$(node_of "$t")" "" "no node holds it any more"

# A direct cancel (a machine with only the database) reaches it as well.
t=$(submit "Cancelled from the database")
wait_for 30 in_slow_turn "$t" || bail "task $t never reached the slow turn"
runner=$(node_of "$t")
cli cancel "$t" >/dev/null || bail "direct cancel failed"
stop_ms "$t" "$runner"
ok "$([ -n "$ms" ] && [ "$ms" -le 1000 ]; echo $?)" \
	"a direct cancel reaches the running node within a second ($ms ms)"

# Drain: SIGTERM stops the worker and lets the lease go at once.
slow_script 8000
t=$(submit "Drained")
wait_for 30 in_slow_turn "$t" || bail "task $t never reached the slow turn"
runner=$(node_of "$t")
node_stop "$runner" TERM
# Free, or already taken by the other node (told by the release).
is "$(pq "SELECT count(*) FROM tasks WHERE id=$t AND lease_owner IS NOT NULL
	AND lease_node = '$runner'")" 0 "a drained node's lease is released at once"
like "$(cli nodes)" "^$runner +stopped" "nodes: the drained node is stopped"
slow_script 1000
wait_for 60 pstate_is "$t" completed
is "$(pstate "$t")" completed "its task completes on the other node"

# Cut off from the database during a long model turn (no write due): the
# node stops its worker before its lease can expire, and the task goes on
# once the database is back.
for n in a b c; do [ -n "${NODE[$n]:-}" ] && node_stop "$n" TERM; done
node_start a
slow_script 8000
t=$(submit "Cut off")
wait_for 30 in_slow_turn "$t" || bail "task $t never reached the slow turn"
before=$(a_workers)
as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -m immediate stop >/dev/null
t0=$(date +%s%N)
worker_gone_ms
ok "$([ "$ms" -le 6000 ]; echo $?)" "a node cut off from the database stops its worker ($ms ms)"
wait_for 5 grep -q "has not renewed its leases" "$T/a.log"
blind=$(sed -n 's/.*has not renewed its leases for \([0-9]*\) ms.*/\1/p' "$T/a.log" | head -n 1)
ok "$([ -n "$blind" ] && [ "$blind" -lt 3000 ]; echo $?)" \
	"before its 3 s lease could expire (${blind:-?} ms after its last renewal)"
as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -w -l "$PGD/log" \
	-o "-k $PGD -c listen_addresses=''" start >/dev/null ||
	bail "the cluster did not restart"
slow_script 1000
wait_for 60 pstate_is "$t" completed
is "$(pstate "$t")" completed "the task completes once the database is back"
check "the node says it renews again" grep -q "renewed again" "$T/a.log"

done_testing
