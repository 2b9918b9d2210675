# Helpers for the multi-node tests (tests/multinode/mn-*.sh): several
# services (nodes) on one machine sharing one throwaway PostgreSQL, a bare
# origin repository, the mock model with latency, and a TCP proxy the test
# controls between one node and the database.  Sourced by each test after
# it sets what it needs; not a test itself.
#
#   mn_setup [PROXIED]       the cluster (unix socket and a loopback TCP
#                            port), the database orch, the origin, the
#                            mock; PROXIED names the node whose database
#                            connection goes through the proxy
#   mn_script DELAY [SLOW]   the mock's script: each turn answered after
#                            DELAY s, implementing's second turn after SLOW
#   node_start NAME          `serve` as node NAME (state in $T/n-NAME, log
#                            $T/NAME.log, ORCH_LEASE_S=3, ORCH_MAX_WORKERS=2)
#   node_stop NAME SIGNAL    signal it and reap it
#   node_workers NAME        the pids of its workers
#   proxy CMD                cut | hang | up | status (tests/multinode/
#                            pgproxy.py)
#   db_restart               pg_ctl restart -m immediate
#   cli ARGS...              the CLI of a machine with no service: only
#                            the database's URL
#   submit_tasks N           N tasks on the origin, auto-approved, verified
#   mn_reference             one task alone first: the tree every task
#                            must end with ($REF)
#   mn_invariants            every task completed with the reference
#                            tree, no committed reply asked again, one
#                            owner per lease epoch, no stray worker
#
# MN_KEEP=DIR keeps the logs (nodes, mock) in DIR after the test.
#
# The database is PostgreSQL 15's (tests/pg/cluster.sh); without it the
# test is skipped, and so it is without the nodes of issue 13, except under
# CI (CI set), where either is a failure: the suite must run there.
#
# Each node's connection names it (application_name=orch-node-NAME), and
# mn_audit_install puts triggers on the store's tables that record, for
# every row a node writes for a task, the lease the task had at that
# moment: the fence is checked from the database's side, not from what the
# nodes say of themselves.

MN_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# A cluster of our own, restartable and with a TCP port: never the
# cluster of a PostgreSQL pass (lib.sh would make a database there).
unset ORCH_TEST_PG_URL
MN_TESTS_DIR=${ORCH_TESTS_DIR:?set by meson test}
. "$MN_TESTS_DIR/integration/lib.sh"
. "$MN_TESTS_DIR/pg/cluster.sh"

export ORCH_LEASE_S=${ORCH_LEASE_S:-3}
export ORCH_MAX_WORKERS=${ORCH_MAX_WORKERS:-2}
export ORCH_RETRY_BACKOFF_MS=${ORCH_RETRY_BACKOFF_MS:-200}
export ORCH_MAX_RETRIES=${ORCH_MAX_RETRIES:-100}
export ORCH_LLM_MAX_RETRIES=${ORCH_LLM_MAX_RETRIES:-5}
unset ORCH_MAX_REVIEW_ROUNDS ORCH_MAX_VERIFY_ROUNDS ORCH_VERIFY_COMMAND \
	ORCH_AUTO_APPROVE ORCH_LLM_SCRIPT ORCH_SCRIPTED_TRACE ORCH_NODE_NAME

declare -A NODE=()
MN_PROXIED=
MN_PROXY=
MN_MOCK=
MN_URL=
ORIGIN=
REF=
KEY="sk-mn-$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')"

mn_cleanup() {
	local n
	for n in "${!NODE[@]}"; do
		kill -CONT "${NODE[$n]}" 2>/dev/null
		kill -9 "${NODE[$n]}" 2>/dev/null
		wait "${NODE[$n]}" 2>/dev/null
	done
	for n in $MN_MOCK $MN_PROXY; do
		kill "$n" 2>/dev/null
		wait "$n" 2>/dev/null
	done
	pg_cluster_stop
	# MN_KEEP=DIR keeps the nodes' logs and the mock's request log.
	if [ -n "${MN_KEEP:-}" ]; then
		mkdir -p "$MN_KEEP" && cp "$T"/*.log "$MN_KEEP/" 2>/dev/null
	fi
	cleanup
}
trap mn_cleanup EXIT

# mn_skip REASON: skipped, except under CI, where it fails.
mn_skip() {
	if [ -n "${CI:-}" ]; then
		echo "Bail out! $1 (CI must run the multi-node suite)"
		exit 1
	fi
	echo "1..0 # SKIP $1"
	exit 0
}

mn_bail() {
	local n
	echo "Bail out! $*"
	for n in "${!NODE[@]}" $MN_PROXIED; do
		[ -f "$T/$n.log" ] && tail -15 "$T/$n.log" | sed "s/^/# $n: /"
	done
	exit 1
}

# A free loopback TCP port (the kernel's pick; it may be taken again
# before we bind it, hence the tries of mn_setup).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# mn_pg_start: the cluster of cluster.sh, moved to a free port that it
# also listens on over loopback TCP (for the proxy).  Trust authentication
# as in cluster.sh: anything on this machine could connect for the
# test's lifetime, nothing elsewhere.
mn_pg_start() {
	local i port
	pg_cluster_start || mn_bail "cannot start a PostgreSQL cluster"
	for i in 1 2 3 4 5; do
		port=$(free_port)
		pg_as tee -a "$PG_CLUSTER_DIR/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
max_connections = 300
EOF
		if pg_cluster_ctl restart; then
			MN_PG_PORT=$port
			MN_PG_ADMIN="postgresql:///postgres?host=$PG_CLUSTER_DIR&port=$port&user=postgres"
			psql -XAtq -v ON_ERROR_STOP=1 "$MN_PG_ADMIN" \
				-c "CREATE DATABASE orch" >/dev/null ||
				mn_bail "cannot make the database"
			MN_URL="postgresql:///orch?host=$PG_CLUSTER_DIR&port=$port&user=postgres"
			return 0
		fi
		echo "# port $port: the server did not start (try $i)"
		pg_cluster_ctl start 2>/dev/null
	done
	mn_bail "the cluster did not start on a TCP port"
}

db_restart() {
	pg_cluster_ctl restart -m immediate || mn_bail "the database did not restart"
}

# node_url NAME: the database URL node NAME uses.
node_url() {
	if [ "$1" = "$MN_PROXIED" ]; then
		echo "postgresql://postgres@127.0.0.1:$MN_PROXY_PORT/orch?application_name=orch-node-$1&connect_timeout=2"
	else
		echo "$MN_URL&application_name=orch-node-$1"
	fi
}

mn_proxy_start() {
	python3 "$MN_LIB_DIR/pgproxy.py" serve --target "127.0.0.1:$MN_PG_PORT" \
		--port-file "$T/proxy.port" --control "$T/proxy.sock" \
		2>"$T/proxy.err" &
	MN_PROXY=$!
	wait_for 10 test -s "$T/proxy.port" || mn_bail "the proxy did not start"
	MN_PROXY_PORT=$(cat "$T/proxy.port")
}

proxy() { python3 "$MN_LIB_DIR/pgproxy.py" ctl "$T/proxy.sock" "$1"; }

# mn_script DELAY [SLOW]: two files written, a command that appends (run
# twice, it would leave two lines: a step applied twice shows in the
# tree), verified; every turn answered after DELAY seconds, the second
# implementing turn after SLOW (default DELAY).
mn_script() {
	python3 - "$T/script.json" "$1" "${2:-$1}" <<'PY'
import json, os, sys
path, d, slow = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def turn(text, name, args, delay=d):
    return {"text": text, "delay": delay,
            "tool_calls": [{"name": name, "arguments": args}]}
s = {
  "planning": [
    turn("Looking.", "list_files", {"path": ""}),
    turn("Planning.", "submit_plan",
         {"plan": "Write a.txt and b.txt, then append both to both.txt."}),
  ],
  "implementing": [
    turn("a", "write_file", {"path": "a.txt", "content": "alpha\n"}),
    turn("b", "write_file", {"path": "b.txt", "content": "beta\n"}, slow),
    turn("append", "run_command",
         {"command": "cat a.txt b.txt >> both.txt"}),
    turn("Done.", "finish", {"summary": "Wrote a.txt, b.txt, both.txt."}),
  ],
  "reviewing": [
    turn("Fine.", "submit_review", {"verdict": "approve", "comments": "OK."}),
  ],
}
tmp = path + ".tmp"
json.dump(s, open(tmp, "w"))
os.rename(tmp, path)
PY
}

mn_mock_start() {
	python3 "$MN_TESTS_DIR/mock_llm.py" --port-file "$T/mock.port" \
		--script "$T/script.json" --log "$T/mock.log" --key "$KEY" \
		2>"$T/mock.err" &
	MN_MOCK=$!
	wait_for 10 test -s "$T/mock.port" || mn_bail "the mock did not start"
	export ORCH_LLM_PROVIDER=openai ORCH_LLM_API_KEY="$KEY"
	export ORCH_LLM_MODEL=mock-model
	ORCH_LLM_BASE_URL="http://127.0.0.1:$(cat "$T/mock.port")/v1"
	export ORCH_LLM_BASE_URL
}

# mn_base [PROXIED]: the cluster, the database orch, the proxy (when a
# node is PROXIED), the origin and the mock: all but the nodes.
mn_base() {
	pg_available ||
		mn_skip "PostgreSQL 15 is not installed (bash contrib/setup.sh test installs it)"
	MN_PROXIED=${1:-}
	mn_pg_start
	export ORCH_DATABASE_URL=$MN_URL
	TEST_DB=pg
	[ -n "$MN_PROXIED" ] && mn_proxy_start
	make_repo "$T/work"
	git clone -q --bare "$T/work" "$T/origin.git"
	mkdir -p "$T/cli"
	ORIGIN="file://$T/origin.git"
	[ -f "$T/script.json" ] || mn_script 0.05
	mn_mock_start
}

mn_setup() {
	pg_available ||
		mn_skip "PostgreSQL 15 is not installed (bash contrib/setup.sh test installs it)"
	"$SUP" help </dev/null 2>&1 | grep -q 'nodes \[--json\]' ||
		mn_skip "this orch-supervisor has no nodes (issue 13's leases)"
	mn_base "$@"
}

node_start() { # NAME
	node_spawn "$1"
	node_wait "$1"
}

# node_spawn NAME: start it without waiting (node_wait waits): several
# nodes started at once race for the same tasks.
node_spawn() {
	# (A killed node leaves its socket behind: wait for the new one.)
	rm -f "$T/n-$1/orch.sock"
	ORCH_STATE_DIR="$T/n-$1" ORCH_NODE_NAME="$1" \
		ORCH_DATABASE_URL="$(node_url "$1")" \
		"$SUP" serve >>"$T/$1.log" 2>&1 &
	NODE[$1]=$!
}
node_wait() { # NAME
	wait_for 20 test -S "$T/n-$1/orch.sock" || mn_bail "node $1 did not start"
}

# node_restart NAME: start it again after it was killed: its name stays
# taken while its last heartbeat is younger than a lease, so a start
# refused for that is tried again.
node_restart() {
	local i
	for i in $(seq 1 20); do
		node_spawn "$1"
		wait_for 10 sh -c "test -S '$T/n-$1/orch.sock' || ! kill -0 ${NODE[$1]}"
		sleep 0.3
		if kill -0 "${NODE[$1]}" 2>/dev/null; then
			return 0
		fi
		wait "${NODE[$1]}" 2>/dev/null
		unset "NODE[$1]"
		sleep 0.5
	done
	mn_bail "node $1 could not start again"
}

node_stop() { # NAME SIGNAL
	[ -n "${NODE[$1]:-}" ] || return 0
	kill -CONT "${NODE[$1]}" 2>/dev/null
	kill "-$2" "${NODE[$1]}" 2>/dev/null
	wait "${NODE[$1]}" 2>/dev/null
	unset "NODE[$1]"
}

node_workers() { # NAME
	[ -n "${NODE[$1]:-}" ] && pgrep -P "${NODE[$1]}" -x orch-worker
}

# The CLI of a machine without a service: the database's URL only.
cli() {
	ORCH_STATE_DIR="$T/cli" ORCH_DATABASE_URL="$MN_URL&application_name=orch-cli" \
		"$SUP" "$@"
}

submit_tasks() { # N
	local i
	for i in $(seq 1 "$1"); do
		cli submit "Write the files ($i)" --repo "$ORIGIN" \
			--verify "test -s both.txt" --auto-approve all >/dev/null ||
			mn_bail "submit $i failed"
	done
}

# at_least N: N tasks or more completed.
at_least() { [ "$(count_state completed)" -ge "$1" ]; }
count_state() { sq "SELECT count(*) FROM tasks WHERE workflow_state='$1'"; }
count_done() { # every task ended: completed, failed or cancelled
	sq "SELECT count(*) FROM tasks WHERE workflow_state IN ('completed', 'failed', 'cancelled')"
}
all_ended() { [ "$(count_done)" -eq "$(sq 'SELECT count(*) FROM tasks')" ]; }

# The nodes whose workers ran task $1, from the events.
ran_on() {
	sq "SELECT DISTINCT substring(text from 'started on node ([a-z0-9-]+)')
		FROM events WHERE task_id=$1 AND text LIKE 'worker % started on node %'"
}

# mn_audit_install: for every row a node writes (events, journal,
# checkpoints; a task's state change or claim), the task's lease at that
# moment and the writer's node.  Installed once the first node has made
# the schema.
mn_audit_install() {
	sq "CREATE TABLE IF NOT EXISTS mn_audit (
		id BIGSERIAL PRIMARY KEY, tbl TEXT, task_id BIGINT,
		epoch BIGINT, lease_node TEXT, lease_owner TEXT, writer TEXT,
		what TEXT, at TIMESTAMPTZ DEFAULT clock_timestamp());
	CREATE OR REPLACE FUNCTION mn_audit_row() RETURNS trigger AS \$\$
	BEGIN
		IF current_setting('application_name') LIKE 'orch-node-%' THEN
			INSERT INTO mn_audit (tbl, task_id, epoch, lease_node,
				lease_owner, writer, what)
			SELECT TG_TABLE_NAME, t.id, t.lease_epoch, t.lease_node,
				t.lease_owner,
				substr(current_setting('application_name'), 11),
				TG_OP FROM tasks t WHERE t.id = NEW.task_id;
		END IF;
		RETURN NEW;
	END \$\$ LANGUAGE plpgsql;
	CREATE OR REPLACE FUNCTION mn_audit_task() RETURNS trigger AS \$\$
	BEGIN
		IF current_setting('application_name') LIKE 'orch-node-%' AND
		   (NEW.lease_epoch IS DISTINCT FROM OLD.lease_epoch OR
		    NEW.workflow_state IS DISTINCT FROM OLD.workflow_state) THEN
			INSERT INTO mn_audit (tbl, task_id, epoch, lease_node,
				lease_owner, writer, what)
			VALUES ('tasks', NEW.id, NEW.lease_epoch, NEW.lease_node,
				NEW.lease_owner,
				substr(current_setting('application_name'), 11),
				CASE WHEN NEW.lease_epoch IS DISTINCT FROM
					OLD.lease_epoch THEN 'claim'
				ELSE 'state ' || NEW.workflow_state END);
		END IF;
		RETURN NEW;
	END \$\$ LANGUAGE plpgsql;
	CREATE OR REPLACE TRIGGER mn_audit AFTER INSERT ON events
		FOR EACH ROW EXECUTE FUNCTION mn_audit_row();
	CREATE OR REPLACE TRIGGER mn_audit AFTER INSERT ON journal
		FOR EACH ROW EXECUTE FUNCTION mn_audit_row();
	CREATE OR REPLACE TRIGGER mn_audit AFTER INSERT ON checkpoints
		FOR EACH ROW EXECUTE FUNCTION mn_audit_row();
	CREATE OR REPLACE TRIGGER mn_audit AFTER UPDATE ON tasks
		FOR EACH ROW EXECUTE FUNCTION mn_audit_task();" >/dev/null ||
		mn_bail "cannot install the audit triggers"
}

# The audit's findings, one line each (none when all is well):
# mn_shared_claims: two claims of a task that took the same epoch;
# mn_epoch_writers: an epoch of a task whose rows more than one node wrote;
# mn_unleased_steps: a step (journal entry, checkpoint) written by a node
# while the task's lease was another's.
mn_shared_claims() {
	sq "SELECT 'task ' || task_id || ' epoch ' || epoch || ': ' || count(*) || ' claims'
		FROM mn_audit WHERE what = 'claim'
		GROUP BY task_id, epoch HAVING count(*) > 1 LIMIT 10"
}
mn_epoch_writers() {
	sq "SELECT 'task ' || task_id || ' epoch ' || epoch || ': ' || string_agg(DISTINCT writer, ',')
		FROM mn_audit WHERE lease_owner IS NOT NULL
		GROUP BY task_id, epoch HAVING count(DISTINCT writer) > 1 LIMIT 10"
}
mn_unleased_steps() {
	sq "SELECT tbl || ' task ' || task_id || ' epoch ' || epoch || ' by ' || writer || ' (lease: ' || coalesce(lease_node, 'none') || ')'
		FROM mn_audit WHERE tbl IN ('journal', 'checkpoints')
		AND lease_node IS DISTINCT FROM writer LIMIT 10"
}

# mn_owner_checks: the three above, and that the audit saw claims at all.
mn_owner_checks() {
	is "$(mn_shared_claims)" "" "no two claims of a task took the same lease epoch"
	is "$(mn_epoch_writers)" "" "one owner per lease epoch: each epoch's rows were written by one node"
	is "$(mn_unleased_steps)" "" "no node wrote a step for a task whose lease it did not hold"
	is "$(sq "SELECT count(*) > 0 FROM mn_audit WHERE what = 'claim'")" t \
		"the audit saw the claims (it checks something)"
}

# mn_reference: task 1, alone, on node $1: its result's tree is what every
# task must end with.
mn_reference() {
	submit_tasks 1
	wait_for 120 all_ended || mn_bail "the reference task did not end"
	is "$(state_of 1)" completed "the reference task completes"
	REF=$(git -C "$T/origin.git" rev-parse 'orch/task-1^{tree}' 2>/dev/null)
	[ -n "$REF" ] || mn_bail "no result branch orch/task-1 on the origin"
}

# mn_trees: how many tasks' result branches on the origin lack the
# reference tree (or are missing).
mn_trees() {
	local id bad=0
	for id in $(sq "SELECT id FROM tasks ORDER BY id"); do
		if [ "$(git -C "$T/origin.git" rev-parse "orch/task-$id^{tree}" 2>/dev/null)" != "$REF" ]; then
			bad=$((bad + 1))
			[ $bad -le 5 ] && echo "# task $id: $(git -C "$T/origin.git" rev-parse "orch/task-$id^{tree}" 2>&1 | head -1)" >>"$T/trees.txt"
		fi
	done
	echo "$bad"
}

# mn_unfinished: why the tasks that did not complete did not.
mn_unfinished() {
	local id
	for id in $(sq "SELECT id FROM tasks WHERE workflow_state <> 'completed' LIMIT 5"); do
		echo "# task $id: $(sq "SELECT workflow_state, retry_count, lease_node, error_details FROM tasks WHERE id=$id")"
		sq "SELECT ts, kind, stage, text FROM events WHERE task_id=$id ORDER BY id DESC LIMIT 8" |
			cut -c1-200 | sed 's/^/#   /'
	done
}

mn_repeats() {
	sq "SELECT task_id, stage, run, seq, created_at FROM journal
		WHERE kind = 'reply' ORDER BY task_id, stage, run, seq" >"$T/journal.txt"
	python3 "$MN_LIB_DIR/check.py" repeats "$T/mock.log" "$T/journal.txt" \
		2>"$T/repeats.err"
}

mn_invariants() {
	local total r
	total=$(sq "SELECT count(*) FROM tasks")
	is "$(count_state completed)" "$total" "every task completed ($total)"
	mn_unfinished
	: >"$T/trees.txt"
	is "$(mn_trees)" 0 "every result branch on the origin has the reference tree (no step applied twice)"
	cat "$T/trees.txt"
	r=$(mn_repeats)
	echo "# model requests: $r"
	like "$r" "after_commit=0$" "no committed model reply was asked again"
	head -5 "$T/repeats.err"
	mn_owner_checks
	db_intact
}

# mn_no_strays: once every node has stopped (SIGTERM), none of their
# workers or sandboxes lives on.
mn_no_strays() {
	local n
	for n in "${!NODE[@]}"; do
		node_stop "$n" TERM
	done
	no_strays
}
