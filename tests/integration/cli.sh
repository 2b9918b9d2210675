#!/bin/bash
# The command line: usage errors, --help, configuration errors and the .env
# file, JSON output, submit's checks of the repository, stats, backup,
# cancel, and logs (-f following a running task).
. "$ORCH_TESTS_DIR/integration/lib.sh"

script_write_a
sed 's/"text": "Planning.",/"text": "Planning.", "delay_ms": 2000,/' \
	"$T/script.json" >"$T/slow.json"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# run_sup OUT ARGS...: run the CLI, output in $T/OUT, exit status in $rc.
run_sup() {
	local out=$1
	shift
	timeout 60 "$SUP" "$@" >"$T/$out" 2>&1 </dev/null
	rc=$?
}
make_repo "$T/repo"

# Usage errors exit 2.
for args in "show" "show abc" "show 1 2" "frobnicate" "list --frobnicate" \
	"approve" "approve x" "cancel" "logs 1 2" "submit" "submit x" \
	"--resume" "--resume abc" "--list-resumable x"; do
	run_sup out $args
	is "$rc" 2 "usage error: '$args' exits 2"
done
run_sup out frobnicate
like "$(cat "$T/out")" "frobnicate" "an unknown command is named"

# Before the first task there is no database: the commands that read one
# say so, with what to do, and make none.
if ! on_pg; then
	run_sup out stats
	is "$rc" 1 "stats without a database fails"
	like "$(cat "$T/out")" "no database at .* yet \(submit a task first\)" "... and says what to do"
	run_sup out backup "$T/b.db"
	like "$(cat "$T/out")" "no database at .* to back up" "backup without a database says so"
	run_sup out nodes
	like "$(cat "$T/out")" "no database at .* yet" "nodes without a database says so"
	check "... and none is made" test ! -e "$ORCH_STATE_DIR/tasks.db"
fi

# --help of every command.
for c in serve submit run list show logs approve reject cancel stats backup doctor; do
	timeout 10 "$SUP" "$c" --help >"$T/help.out" 2>"$T/help.err" </dev/null
	rc=$?
	is "$rc" 0 "$c --help exits 0"
	like "$(cat "$T/help.out")" "^usage: orch-supervisor $c" "$c --help prints its usage"
done
run_sup help.out --help
is "$rc" 0 "--help exits 0"
like "$(cat "$T/help.out")" '^usage:' "--help prints usage"

# Configuration errors name the variable.
ORCH_FOO=1 timeout 10 "$SUP" list >"$T/out" 2>&1
is "$?" 2 "an unknown ORCH_FOO exits 2"
like "$(cat "$T/out")" 'ORCH_FOO' "... naming it"
ORCH_MAX_WORKERS=abc timeout 10 "$SUP" list >"$T/out" 2>&1
is "$?" 2 "ORCH_MAX_WORKERS=abc exits 2"
like "$(cat "$T/out")" 'ORCH_MAX_WORKERS' "... naming it"
ORCH_ENABLE_RESUME=maybe timeout 10 "$SUP" list >"$T/out" 2>&1
is "$?" 2 "ORCH_ENABLE_RESUME=maybe exits 2"
like "$(cat "$T/out")" 'ORCH_ENABLE_RESUME' "... naming it"

# The .env file of the current directory.
mkdir -p "$T/cwd"
printf '# settings\nORCH_MAX_WORKERS=abc\n' >"$T/cwd/.env"
(cd "$T/cwd" && timeout 10 "$SUP" list) >"$T/out" 2>&1
is "$?" 2 "a malformed value in .env exits 2"
like "$(cat "$T/out")" '\.env:2.*ORCH_MAX_WORKERS' "... naming file:line and the variable"
(cd "$T/cwd" && ORCH_MAX_WORKERS=2 timeout 10 "$SUP" list) >"$T/out" 2>&1
is "$?" 0 "the environment wins over .env (its bad value is not used)"
printf '# settings\nORCH_MAX_STEPS=1\nthis is not a setting\n' >"$T/cwd/.env"
(cd "$T/cwd" && timeout 10 "$SUP" list) >"$T/out" 2>&1
is "$?" 2 "a bad line in .env exits 2"
like "$(cat "$T/out")" '\.env:3' "... naming file:line"
printf 'ORCH_FOO=1\n' >"$T/other.env"
timeout 10 "$SUP" --env-file "$T/other.env" list >"$T/out" 2>&1
is "$?" 2 "an unknown variable in --env-file exits 2"
like "$(cat "$T/out")" 'other\.env:1.*ORCH_FOO' "... naming file:line and the variable"

printf '# settings\nexport ORCH_MAX_STEPS="1"\n' >"$T/cwd/.env"
(cd "$T/cwd" && timeout 60 "$SUP" run "Write a.txt" --repo "$T/repo" \
	--auto-approve all) >"$T/run1.out" 2>&1 </dev/null
is "$?" 1 ".env ORCH_MAX_STEPS=1: run exits 1"
is "$(state_of 1)" failed "... the task fails"
like "$(sq 'SELECT error_details FROM tasks WHERE id=1')" 'ORCH_MAX_STEPS' \
	"... because .env set ORCH_MAX_STEPS"
(cd "$T/cwd" && ORCH_MAX_STEPS=5 timeout 60 "$SUP" run "Write a.txt" \
	--repo "$T/repo" --auto-approve all) >"$T/run2.out" 2>&1 </dev/null
is "$?" 0 "ORCH_MAX_STEPS=5 in the environment: run exits 0"
is "$(state_of 2)" completed "... the environment won over .env"

# JSON output.
run_sup list.json list --json
is "$rc" 0 "list --json exits 0"
check "list --json is valid JSON" python3 -m json.tool "$T/list.json"
is "$(python3 -c 'import json,sys; print(" ".join(str(t["id"]) for t in json.load(open(sys.argv[1]))))' "$T/list.json" 2>&1)" \
	"1 2" "list --json has both tasks"
run_sup show.json show 2 --json
is "$rc" 0 "show 2 --json exits 0"
check "show --json is valid JSON" python3 -m json.tool "$T/show.json"
missing=$(python3 - "$T/show.json" <<'PY' 2>&1
import json, sys
t = json.load(open(sys.argv[1]))
cols = """id request status workflow_state created_at updated_at plan
implementation review verification_result workflow_log workflow_checkpoint_data
plan_approved_at plan_approved_by plan_rejection_reason implementation_approved_at
implementation_approved_by implementation_rejection_reason error_details
retry_count""".split()
print(" ".join(c for c in cols if c not in t))
PY
)
is "$missing" "" "show --json has every contract column"
is "$(jq -r '.workflow_state + " " + .status + " " + .plan' "$T/show.json")" \
	"completed completed Write a.txt." "show --json has the right values"
run_sup out list --status bogus
is "$rc" 2 "list --status bogus exits 2"
run_sup failed.json list --status failed --json
is "$(jq -r '[.[].id] | join(" ")' "$T/failed.json")" 1 "list --status failed lists only the failed task"
run_sup out show 99
is "$rc" 1 "show of a missing task exits 1"
like "$(cat "$T/out")" 'no task 99' "... naming it"

# submit checks the repository.
mkdir -p "$T/plain" "$T/empty"
git -C "$T/empty" init -q -b main
make_repo "$T/merging"
git -C "$T/merging" checkout -qb other
echo one >"$T/merging/README.md"
git -C "$T/merging" -c user.name=t -c user.email=t@t commit -qam one
git -C "$T/merging" checkout -q main
echo two >"$T/merging/README.md"
git -C "$T/merging" -c user.name=t -c user.email=t@t commit -qam two
git -C "$T/merging" -c user.name=t -c user.email=t@t merge -q other >/dev/null 2>&1
check "the merging repo is mid-merge" test -f "$T/merging/.git/MERGE_HEAD"
run_sup out submit "x" --repo "$T/plain"
is "$rc" 1 "submit to a plain directory exits 1"
like "$(cat "$T/out")" 'not a git repository' "... saying it is not a git repository"
run_sup out submit "x" --repo "$T/empty"
is "$rc" 1 "submit to a repository without commits exits 1"
like "$(cat "$T/out")" 'no commits' "... saying it has no commits"
run_sup out submit "x" --repo "$T/merging"
is "$rc" 1 "submit to a repository mid-merge exits 1"
like "$(cat "$T/out")" 'middle of a merge' "... saying it is mid-merge"
run_sup out submit "x" --repo "$T/nonexistent"
is "$rc" 1 "submit to a missing directory exits 1"
like "$(cat "$T/out")" 'nonexistent' "... naming it"
is "$(sq 'SELECT count(*) FROM tasks')" 2 "none of them made a task"

# cancel.
run_sup out submit "Cancel me" --repo "$T/repo"
is "$(cat "$T/out")" 3 "a third task"
run_sup out cancel 3
is "$rc" 0 "cancel 3 exits 0"
is "$(state_of 3)" cancelled "the task is cancelled"
run_sup out --list-resumable
like "$(cat "$T/out")" '^1 ' "--list-resumable lists the failed task"
is "$(grep -c '^3 ' "$T/out")" 0 "--list-resumable leaves out the cancelled task"
run_sup out --resume 3
is "$rc" 1 "--resume of a cancelled task exits 1"
like "$(cat "$T/out")" 'cancelled' "... saying it is cancelled"
run_sup out cancel 3
is "$rc" 1 "cancelling it again exits 1"

# logs.
run_sup logs.out logs 2
is "$rc" 0 "logs 2 exits 0"
like "$(cat "$T/logs.out")" 'pending -> planning' "logs shows the first state change"
like "$(cat "$T/logs.out")" 'verifying -> completed' "... and the last"
run_sup out logs 99
is "$rc" 1 "logs of a missing task exits 1"

# logs -f follows a task that the service runs.
export ORCH_LLM_SCRIPT="$T/slow.json"
service_start
run_sup out submit "Write a.txt slowly" --repo "$T/repo" --auto-approve all
is "$(cat "$T/out")" 4 "a fourth task, through the service"
timeout 60 "$SUP" logs 4 -f >"$T/follow.out" 2>&1 &
F=$!
has_event() { [ "$(sq "SELECT count(*) FROM events WHERE task_id=4 AND text LIKE '%$1%'")" -gt 0 ]; }
wait_for 20 has_event 'planning -> plan_approved'
t0=$(now_ms)
wait_for 5 grep -q 'planning -> plan_approved' "$T/follow.out"
t1=$(now_ms)
check "logs -f shows the stage change within a second ($((t1 - t0)) ms)" test $((t1 - t0)) -lt 1000
wait_for 30 state_is 4 completed
wait_for 5 sh -c "! kill -0 $F 2>/dev/null"
check "logs -f exits by itself when the task completes" sh -c "! kill -0 $F 2>/dev/null"
wait "$F"
is "$?" 0 "... with status 0"
like "$(cat "$T/follow.out")" 'verifying -> completed' "logs -f printed the end"
is "$(grep -c 'pending -> planning' "$T/follow.out")" 1 "each event is printed once"

# An online backup, while the service runs (recent commits are in its WAL).
run_sup out backup "$T/backup.db"
is "$rc" 0 "backup PATH with the service running exits 0"
is "$(cat "$T/out")" "$T/backup.db" "... and prints the path"
is "$(backup_intact "$T/backup.db" 2>&1)" ok "the backup is intact"
is "$(backup_query "$T/backup.db" "SELECT id || ':' || status FROM tasks ORDER BY id" 2>&1 | paste -sd ' ')" \
	"1:failed 2:completed 3:cancelled 4:completed" "the backup holds the tasks"
service_kill TERM

# stats and backup.
run_sup out submit "Leave me pending" --repo "$T/repo"
is "$(cat "$T/out")" 5 "a fifth task, pending"
run_sup stats.json stats --json
is "$rc" 0 "stats --json exits 0"
check "stats --json is valid JSON" python3 -m json.tool "$T/stats.json"
for s in pending completed failed cancelled; do
	is "$(jq -r ".by_status.$s // 0" "$T/stats.json")" \
		"$(sq "SELECT count(*) FROM tasks WHERE status='$s'")" "stats counts $s tasks"
done
is "$(jq -r '.by_status.completed' "$T/stats.json")" 2 "stats: 2 completed"
is "$(jq -r '.tasks' "$T/stats.json")" 5 "stats: 5 tasks"
run_sup out backup
is "$rc" 0 "backup without a path exits 0"
b=$(cat "$T/out")
like "$b" "^$ORCH_STATE_DIR/backups/.+" "... into \$ORCH_STATE_DIR/backups"
is "$(backup_intact "$b" 2>&1)" ok "that backup is intact"
is "$(backup_query "$b" "SELECT id || ':' || status FROM tasks ORDER BY id" 2>&1 | paste -sd ' ')" \
	"1:failed 2:completed 3:cancelled 4:completed 5:pending" "that backup holds the tasks"
run_sup out backup "$T/no/such/dir/backup.db"
is "$rc" 1 "a backup to a missing directory exits 1"

# submit reads the top, the git directory and HEAD with one git: from a
# directory inside the repository the task gets the top; a path with a
# line break (which would shift git's lines) is refused.
mkdir -p "$T/repo/deep/er"
run_sup out submit "From below" --repo "$T/repo/deep/er"
is "$rc" 0 "submit from a directory inside the repository exits 0"
is "$(sq "SELECT repo || ' ' || base_commit FROM tasks WHERE id=$(cat "$T/out")")" \
	"$(cd "$T/repo" && pwd -P) $(git -C "$T/repo" rev-parse HEAD)" \
	"... and the task has the top of the repository and its HEAD"
make_repo "$T/line
break"
run_sup out submit "x" --repo "$T/line
break"
is "$rc" 1 "submit of a repository whose path has a line break exits 1"
like "$(cat "$T/out")" 'line break' "... saying why"
done_testing
