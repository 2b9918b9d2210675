#!/bin/bash
# Hostile-model chaos: N tasks on a model that answers every turn with seeded
# random abuse (tests/chaos/hostile_model.py: tool calls with escape
# sequences, C0/C1 controls, invalid UTF-8, MiB strings, bad JSON, paths out
# of the workspace, `env`, `git init sub`, huge and binary outputs, odd file
# names, hostile plans, summaries and reviews, transport faults), through the
# real service with the openai provider and a canary API key; then check:
#   - every task ended completed or failed, and a failed one says why;
#   - every task the model did not doom (a reply over a documented size
#     limit may rightly fail its stage) completed;
#   - no crash loop: nothing but the model acts in this run (no process is
#     killed), so no worker may be restarted (retry_count 0, no restart
#     event, no "gave up after N restarts"), and no model turn is asked
#     again except once after a transport fault the model injected;
#   - no request reached the model without its user message (an empty
#     request), and every request carried the key;
#   - no raw control byte (C0 but \n and \t, DEL, C1) on any CLI output:
#     list, show ID, logs ID, logs, stats, --list-resumable, and in the
#     result commits' messages and the service log; every --json output is
#     valid JSON without raw control bytes;
#   - the canary key is nowhere: state directory (database, logs, audit
#     files, worktrees), the repository (every object, refs, logs, config),
#     the service log, any CLI output, any request the model received;
#   - the service ran the whole time, and the database is intact.
#
#   tests/chaos/hostile.sh [-n TASKS] [-s SEED] [-w WORKERS] [-p]
# Defaults: 200 tasks, a random seed (printed; give it with -s to replay),
# 6 workers.  -p plants the key in one more task's request, to see the key
# checks fail.  Output is TAP.  Outside meson, the binaries default to
# build/.
top=$(cd "$(dirname "$0")/../.." && pwd)
export ORCH_TESTS_DIR="${ORCH_TESTS_DIR:-$top/tests}"
export ORCH_SUPERVISOR="${ORCH_SUPERVISOR:-$top/build/supervisor/orch-supervisor}"
export ORCH_WORKER_PATH="${ORCH_WORKER_PATH:-$top/build/worker/orch-worker}"
export ORCH_SANDBOX_PROFILES_DIR="${ORCH_SANDBOX_PROFILES_DIR:-$top/sandbox-profiles}"
CHAOS_DIR="$ORCH_TESTS_DIR/chaos"
. "$ORCH_TESTS_DIR/integration/lib.sh"

N=200
SEED=$(($$ % 100000))
W=6
PLANT=0
while getopts n:s:w:p o; do
	case $o in
	n) N=$OPTARG ;;
	s) SEED=$OPTARG ;;
	w) W=$OPTARG ;;
	p) PLANT=1 ;;
	*) exit 2 ;;
	esac
done
RANDOM=$SEED
start=$(date +%s)
echo "# hostile chaos: $N tasks, seed $SEED, $W workers (replay: -n $N -s $SEED)"

KEY="sk-canary-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
MOCK=
hostile_cleanup() {
	# HOSTILE_KEEP=DIR: keep the outputs, logs and database to look at.
	if [ -n "${HOSTILE_KEEP:-}" ] && mkdir "$HOSTILE_KEEP"; then
		cp -r "$T/out" "$T/model.log" "$T/service.log" "$ORCH_STATE_DIR" \
			"$HOSTILE_KEEP/" 2>/dev/null
	fi
	if [ -n "$MOCK" ]; then
		kill "$MOCK" 2>/dev/null
		wait "$MOCK" 2>/dev/null
	fi
	cleanup
}
trap hostile_cleanup EXIT
trap 'exit 143' TERM INT
CHECK="python3 $CHAOS_DIR/hostile_check.py"

python3 "$CHAOS_DIR/hostile_model.py" --port-file "$T/mock.port" \
	--log "$T/model.log" --seed "$SEED" --key "$KEY" 2>"$T/model.err" &
MOCK=$!
wait_for 10 test -s "$T/mock.port" || bail "the hostile model did not start"
export ORCH_LLM_PROVIDER=openai ORCH_LLM_API_KEY="$KEY"
export ORCH_LLM_MODEL=hostile-model
PORT=$(cat "$T/mock.port")
export ORCH_LLM_BASE_URL="http://127.0.0.1:$PORT/v1"
export ORCH_AUTO_APPROVE=all ORCH_MAX_WORKERS="$W"
export ORCH_RETRY_BACKOFF_MS=200 ORCH_LLM_TIMEOUT_S=60 ORCH_CMD_TIMEOUT_S=20
export ORCH_WORKER_TIMEOUT_S=120
unset ORCH_MAX_RETRIES ORCH_MAX_REVIEW_ROUNDS ORCH_MAX_VERIFY_ROUNDS \
	ORCH_VERIFY_COMMAND ORCH_MAX_STEPS ORCH_LLM_MAX_RETRIES

# The user's repository: a README and a script, nothing odd.
mkdir -p "$T/repo"
git -C "$T/repo" init -q -b main
printf '# Greeter\n\nShell scripts that greet people.\n' >"$T/repo/README.md"
printf 'name=world\n' >"$T/repo/config.sh"
git -C "$T/repo" add -A
git -C "$T/repo" -c user.name=t -c user.email=t@t commit -qm init

service_start
svc_pid=$SVC

# N tasks; some requests are hostile too (a client can send escapes), and
# most have a verification command, all of which pass whatever the model
# did (so that a task the product handles well completes).
for i in $(seq 1 "$N"); do
	case $((RANDOM % 6)) in
	0) req=$(printf 'Fix the \033[8mhidden\033[0m login \033]0;title\007 bug %d \302\233' "$i") ;;
	1) req=$(printf 'Add a greeting (%d)\r\b\x7f\x01 with \342\234\223' "$i") ;;
	*) req="Add a greeting script, variant $i" ;;
	esac
	verify=()
	case $((RANDOM % 5)) in
	0) ;;
	1) verify=(--verify true) ;;
	2) verify=(--verify 'cat -- *.txt *.md 2>/dev/null | head -c 100000; true') ;;
	3) verify=(--verify "printf '\\342\\234\\223 passed %d\\n' \$(seq 1 $((RANDOM % 700 + 300)))") ;;
	4) verify=(--verify "printf '\\033[8mhidden\\033[0m \\033]52;c;aGk=\\007 \\351 \\302\\233\\n'; true") ;;
	esac
	"$SUP" submit "$req" --repo "$T/repo" "${verify[@]}" \
		>"$T/submit.out" 2>&1 || bail "submit $i failed: $(cat "$T/submit.out")"
done
if [ "$PLANT" = 1 ]; then
	N=$((N + 1))
	"$SUP" submit "Use the key $KEY" --repo "$T/repo" >"$T/submit.out" 2>&1 ||
		bail "submit failed: $(cat "$T/submit.out")"
fi
echo "# $N tasks submitted in $(($(date +%s) - start)) s"

# Wait until every task has ended (or nothing happened for 120 s: a task
# stuck); watch that the service stays up.
svc_died=0
pending() { sq "SELECT count(*) FROM tasks WHERE status NOT IN ('completed', 'failed', 'cancelled')"; }
end=$(($(date +%s) + ${HOSTILE_TIMEOUT_S:-900}))
last_ev=
quiet_since=$(date +%s)
while [ "$(pending)" != 0 ]; do
	if ! kill -0 "$svc_pid" 2>/dev/null; then
		svc_died=1
		echo "# the service died after $(($(date +%s) - start)) s"
		break
	fi
	ev=$(sq 'SELECT max(id) FROM events')
	[ "$ev" != "$last_ev" ] && quiet_since=$(date +%s) && last_ev=$ev
	if [ $(($(date +%s) - quiet_since)) -ge 120 ]; then
		echo "# nothing happened for 120 s: stopped waiting"
		break
	fi
	[ "$(date +%s)" -ge "$end" ] && break
	sleep 1
done
echo "# tasks ended after $(($(date +%s) - start)) s: $(sq "SELECT count(*) || ' ' || status FROM tasks GROUP BY status ORDER BY status" | paste -sd ',' | sed 's/,/, /g')"

# --- The tasks ---
is "$(sq 'SELECT count(*) FROM tasks')" "$N" "all $N tasks were submitted"
is "$(sq "SELECT count(*) FROM tasks WHERE status NOT IN ('completed', 'failed') OR workflow_state NOT IN ('completed', 'failed')")" \
	0 "every task ended completed or failed"
sq "SELECT id, status, workflow_state FROM tasks WHERE status NOT IN ('completed', 'failed') LIMIT 10" |
	sed 's/^/#   not ended: /'
is "$(sq "SELECT count(*) FROM tasks WHERE status = 'failed' AND trim(coalesce(error_details, '')) = ''")" \
	0 "every failed task has error_details"

$CHECK model "$T/model.log" >"$T/model.facts"
# The model's own troubles (a traceback is a defect of the test).
[ -s "$T/model.err" ] && sed 's/^/# hostile model stderr: /' "$T/model.err" | head -10
fact() { awk -v k="$1" '$1 == k {print $2}' "$T/model.facts"; }
doomed=$(fact doomed_tasks)
echo "# model: $(fact requests) requests, $(fact faults) transport faults, $(fact doomed) tasks doomed by a reply over a size limit (${doomed:-none})"
grep '^# tags' "$T/model.facts"
# An implementer that finished twice without changing a file fails its
# task with "no changes" (the log story's rule): the model's doing too, as
# long as no result branch was made for it.
empty=$(sq "SELECT id FROM tasks WHERE status = 'failed' AND error_details LIKE 'no changes:%' ORDER BY id" | tr '\n' ' ')
echo "# tasks whose implementer changed nothing twice: ${empty:-none}"
stray=
for id in $empty; do
	git -C "$T/repo" rev-parse -q --verify "refs/heads/orch/task-$id" >/dev/null &&
		stray="$stray $id"
done
is "$stray" "" "no result branch for a task that changed nothing"
undoomed_failed=$(sq "SELECT id FROM tasks WHERE status != 'completed' AND id NOT IN (${doomed:-0}) AND NOT (status = 'failed' AND error_details LIKE 'no changes:%') ORDER BY id" | tr '\n' ' ')
is "$undoomed_failed" "" "every task the model did not doom completed"
# Why they failed: the reasons, grouped (numbers and times left out).
sq "SELECT id, replace(error_details, $(sql_chr 10), ' ') FROM tasks WHERE status = 'failed' ORDER BY id" |
	python3 -c '
import re, sys
from collections import defaultdict
g = defaultdict(list)
for l in sys.stdin:
    i, _, e = l.rstrip("\n").partition("|")
    m = re.search(r"msg=\"(.*?)(\"$|\" [a-z]+=|$)", e)
    key = (e[:e.find(";")] if ";" in e else "") + (": " + m.group(1) if m else "")
    key = key if m else e
    key = re.sub(r"[0-9]+", "N", key)[:170]
    g[key].append(i)
for k, ids in sorted(g.items(), key=lambda kv: -len(kv[1])):
    print("#   failed: %d x %s (tasks %s)" % (len(ids),
          k.encode("unicode_escape").decode(), " ".join(ids[:8])))
'

# --- Crash loops ---
is "$(sq 'SELECT coalesce(sum(retry_count), 0) FROM tasks')" 0 \
	"no worker was restarted (retry_count is 0 for every task: only the model acts in this run)"
sq "SELECT task_id, stage, substr(replace(text, $(sql_chr 10), ' '), 1, 220) FROM events WHERE id IN (SELECT min(id) FROM events WHERE kind = 'error' AND text LIKE '%restarting from the last checkpoint%' GROUP BY task_id) ORDER BY task_id LIMIT 10" |
	python3 -c 'import sys; [print("#   restart:", l.rstrip("\n").encode("unicode_escape").decode()) for l in sys.stdin]'
is "$(sq "SELECT count(*) FROM events WHERE kind = 'error' AND text LIKE '%restarting from the last checkpoint%'")" \
	0 "no stage was restarted (no restart event)"
is "$(sq "SELECT count(*) FROM tasks WHERE error_details LIKE '%gave up after%restarts%'")" \
	0 "no task failed from a worker crashing repeatedly on the same step"
is "$(fact asked_again)" 0 \
	"no model turn was asked again, except once after an injected transport fault"
grep '^# asked_again' "$T/model.facts" | head -10

# --- What the model was sent ---
is "$(fact no_user)" 0 "no request reached the model without its user message (an empty request)"
grep '^# no_user' "$T/model.facts" | head -5
is "$(fact bad_key)" 0 "every request to the model carried the key"

# --- CLI output: collected while the service runs ---
mkdir -p "$T/out"
cli() { # NAME ARGS...: run the CLI, stdout in $T/out/NAME, stderr in err-NAME
	local name=$1
	shift
	"$SUP" "$@" >"$T/out/$name" 2>"$T/out/err-$name"
}
cli list list
cli list-json list --json
cli stats stats
cli stats-json stats --json
cli list-resumable --list-resumable
cli logs-all logs
for id in $(sq 'SELECT id FROM tasks ORDER BY id'); do
	cli "show-$id" show "$id"
	cli "show-json-$id" show "$id" --json
	cli "logs-$id" logs "$id"
done
for what in list:list stats:stats list-resumable:--list-resumable \
	logs-all:"logs (every task)"; do
	$CHECK bytes "$T/out/${what%%:*}" >"$T/check.out"
	ok $? "no raw control byte in \`${what#*:}\`"
	sed 's/^/#   /' "$T/check.out"
done
$CHECK bytes "$T"/out/show-[0-9]* >"$T/check.out"
ok $? "no raw control byte in \`show ID\` (every task)"
sed 's/^/#   /' "$T/check.out"
$CHECK bytes "$T"/out/logs-[0-9]* >"$T/check.out"
ok $? "no raw control byte in \`logs ID\` (every task)"
sed 's/^/#   /' "$T/check.out"
echo "#   events with raw control bytes (kind/stage), which logs prints: $($CHECK events "${ORCH_DATABASE_URL:-$ORCH_STATE_DIR/tasks.db}")"
$CHECK bytes "$T"/out/err-* >"$T/check.out"
ok $? "no raw control byte on the standard error of any of these commands"
sed 's/^/#   /' "$T/check.out"
$CHECK json "$T"/out/[ls]*-json* >"$T/check.out"
ok $? "every --json output is valid JSON"
sed 's/^/#   /' "$T/check.out"
$CHECK bytes "$T"/out/[ls]*-json* >"$T/check.out"
ok $? "no raw control byte in any --json output"
sed 's/^/#   /' "$T/check.out"
$CHECK utf8 "$T"/out/list "$T"/out/stats "$T"/out/list-resumable \
	"$T"/out/logs-* "$T"/out/show-[0-9]* |
	sed 's/^/# note (not a rule): /' | tail -4

# The result commits' messages (request and summary) and the service log
# are read by people too.
for b in $(git -C "$T/repo" for-each-ref --format='%(refname:short)' refs/heads/orch); do
	git -C "$T/repo" cat-file commit "$b" >"$T/out/commit-${b##*/}"
done
set -- "$T"/out/commit-*
[ -e "$1" ] || set --
$CHECK bytes /dev/null "$@" >"$T/check.out"
ok $? "no raw control byte in the result commits' messages ($# branches)"
sed 's/^/#   /' "$T/check.out"
$CHECK bytes "$T/service.log" >"$T/check.out"
ok $? "no raw control byte in the service log"
sed 's/^/#   /' "$T/check.out"

# --- The key ---
keyin() { # DESCRIPTION FILES...: the files that hold the key
	local d=$1
	shift
	grep -rlaF -- "$KEY" "$@" 2>/dev/null >"$T/key.out"
	is "$(wc -l <"$T/key.out")" 0 "the API key is absent from $d"
	head -5 "$T/key.out" | sed 's/^/#   found in: /'
}
keyin "the state directory (database, WAL, logs, audit files, worktrees)" "$ORCH_STATE_DIR"
if on_pg; then
	sql_dump >"$T/dump.sql"
	keyin "the PostgreSQL database (all of it, dumped)" "$T/dump.sql"
fi
keyin "every CLI output" "$T/out" "$T/submit.out"
keyin "the service log" "$T/service.log"
keyin "the repository's files (refs, logs, config)" "$T/repo"
git -C "$T/repo" cat-file --batch-all-objects --batch 2>/dev/null |
	grep -caF -- "$KEY" >"$T/key.out"
is "$(cat "$T/key.out")" 0 "the API key is absent from every object of the repository"
is "$(fact key_in_body)" 0 \
	"the API key is absent from every request the model received (no tool result showed it)"
grep '^# key_in_body' "$T/model.facts" | head -5

# --- The service ---
ok "$svc_died" "the service ran the whole time"
check "the service still answers" "$SUP" list
ok "$([ "$(grep -ciE 'AddressSanitizer|runtime error|Segmentation|Aborted|assertion' "$T/service.log")" -eq 0 ]; echo $?)" \
	"the service log reports no crash of its own"
service_kill TERM
db_intact "the database is intact (after the service stopped)"
if on_pg; then
	dbsize=$(sq 'SELECT pg_size_pretty(pg_database_size(current_database()))')
else
	dbsize=$(du -sh "$ORCH_STATE_DIR/tasks.db" | cut -f1)
fi
echo "# state directory: $(du -sh "$ORCH_STATE_DIR" | cut -f1), database $dbsize"
echo "# elapsed: $(($(date +%s) - start)) s"
done_testing
