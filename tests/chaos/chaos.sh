#!/bin/bash
# Chaos: run M tasks on the scripted model while killing a random worker, or
# the whole service (then starting it again), at random moments, K times;
# then check that nothing was lost:
#   - every task is completed;
#   - every result branch has the same tree as a run without chaos;
#   - no committed model turn was asked again: at most one repeat (the
#     in-flight turn) per worker killed (a service kill takes its workers);
#   - PRAGMA integrity_check is ok;
#   - no stray process survives, and no worker ever held the database open
#     (on PostgreSQL: a connection to the server's socket).
#
#   tests/chaos/chaos.sh [-m TASKS] [-k KILLS] [-s SEED]
# Defaults: 100 tasks, 50 kills (the long run, by hand).  meson's `chaos`
# test runs a short one (-m 12 -k 10).  Output is TAP.
. "$ORCH_TESTS_DIR/integration/lib.sh"

M=100
K=50
SEED=$$
while getopts m:k:s: o; do
	case $o in
	m) M=$OPTARG ;;
	k) K=$OPTARG ;;
	s) SEED=$OPTARG ;;
	*) exit 2 ;;
	esac
done
RANDOM=$SEED
echo "# chaos: $M tasks, $K kills, seed $SEED"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Looking.", "delay_ms": 60, "tool_calls": [{"name": "list_files",
      "arguments": {"path": ""}}]},
    {"text": "Planning.", "delay_ms": 60, "tool_calls": [{"name": "submit_plan",
      "arguments": {"plan": "Write a.txt and b.txt, then check them."}}]}
  ],
  "implementing": [
    {"text": "a", "delay_ms": 80, "tool_calls": [{"name": "write_file",
      "arguments": {"path": "a.txt", "content": "alpha\n"}}]},
    {"text": "b", "delay_ms": 80, "tool_calls": [{"name": "write_file",
      "arguments": {"path": "b.txt", "content": "beta\n"}}]},
    {"text": "check", "delay_ms": 40, "tool_calls": [{"name": "run_command",
      "arguments": {"command": "cat a.txt b.txt > both.txt"}}]},
    {"text": "Done.", "delay_ms": 40, "tool_calls": [{"name": "finish",
      "arguments": {"summary": "Wrote a.txt, b.txt and both.txt."}}]}
  ],
  "reviewing": [
    {"text": "Fine.", "delay_ms": 60, "tool_calls": [{"name": "submit_review",
      "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
export ORCH_LLM_SCRIPT="$T/script.json" ORCH_SCRIPTED_TRACE="$T/trace"
export ORCH_MAX_RETRIES=100 ORCH_RETRY_BACKOFF_MS=20 ORCH_MAX_WORKERS=4
make_repo "$T/repo"

# pg_clients: the pids holding a connection to a PostgreSQL server's unix
# socket (ss pairs each client socket with the server's end, whose local
# address is the .s.PGSQL file).
pg_clients() {
	ss -xpn | awk '$5 ~ /\.s\.PGSQL\./ { srv[$6] = 1; next }
		{ peer[$8] = peer[$8] " " $0 }
		END { for (i in srv) if (i in peer) print peer[i] }' |
		grep -o 'pid=[0-9]*' | cut -d= -f2
}
done_count() { sq "SELECT count(*) FROM tasks WHERE workflow_state='completed'"; }
all_done() { [ "$(done_count)" -eq "$1" ]; }

# The reference: one task, no chaos.
service_start
"$SUP" submit "Write two files" --repo "$T/repo" --verify "test -s both.txt" \
	--auto-approve all >/dev/null
wait_for 60 all_done 1 || bail "the reference task did not complete"
ref=$(git -C "$T/repo" rev-parse 'orch/task-1^{tree}')
: >"$T/trace"

for i in $(seq 2 $((M + 1))); do
	"$SUP" submit "Write two files ($i)" --repo "$T/repo" \
		--verify "test -s both.txt" --auto-approve all >/dev/null ||
		bail "submit $i failed"
done

kills=0
svc_kills=0
inflight=0 # processes killed: each may have had one model turn in flight
dbfd=0
for _ in $(seq 1 "$K"); do
	sleep "0.$((RANDOM % 4 + 1))"
	all_done $((M + 1)) && break
	on_pg && pgc=" $(pg_clients | tr '\n' ' ') "
	for p in $(ours); do
		if on_pg; then
			case $pgc in
			*" $p "*) dbfd=$((dbfd + 1)) ;;
			esac
			continue
		fi
		for fd in "/proc/$p/fd"/*; do
			case "$(readlink "$fd" 2>/dev/null)" in
			*tasks.db*) dbfd=$((dbfd + 1)); break ;;
			esac
		done
	done
	if [ $((RANDOM % 5)) -eq 0 ]; then
		inflight=$((inflight + $(ours | wc -l)))
		service_kill 9
		service_start
		svc_kills=$((svc_kills + 1))
	else
		# The service's own children only: a worker's child between
		# its fork and its exec of bwrap is named orch-worker too, and
		# killing it is not a worker crash (its command fails instead).
		# shellcheck disable=SC2046 # pids: words by design
		set -- $(pgrep -P "$SVC" -x orch-worker)
		[ $# -eq 0 ] && continue
		shift $((RANDOM % $#))
		kill -9 "$1" 2>/dev/null
		inflight=$((inflight + 1))
	fi
	kills=$((kills + 1))
done
echo "# $kills kills ($svc_kills of the service)"

wait_for $((60 + M * 6)) all_done $((M + 1))
is "$(done_count)" $((M + 1)) "every task completed"
for id in $(sq "SELECT id FROM tasks WHERE workflow_state != 'completed'"); do
	echo "# task $id: $(sq "SELECT workflow_state, retry_count, error_details FROM tasks WHERE id=$id")"
	sq "SELECT ts, kind, stage, text FROM events WHERE task_id=$id ORDER BY id DESC LIMIT 12" |
		sed 's/^/#   /'
done
bad=0
for i in $(seq 2 $((M + 1))); do
	[ "$(git -C "$T/repo" rev-parse "orch/task-$i^{tree}" 2>/dev/null)" = "$ref" ] ||
		bad=$((bad + 1))
done
is "$bad" 0 "every branch has the tree of the run without chaos"
repeats=$(sed 's/ round=[0-9]*//' "$T/trace" | sort | uniq -d -c |
	awk '{s += $1 - 1} END {print s + 0}')
ok "$([ "$repeats" -le "$inflight" ]; echo $?)" \
	"repeated model turns ($repeats) <= workers killed ($inflight): committed turns are never asked again"
db_intact
service_kill TERM
no_strays
is "$dbfd" 0 "no worker ever had the database open"
done_testing
