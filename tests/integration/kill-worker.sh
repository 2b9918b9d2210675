#!/bin/bash
# kill -9 a worker in the middle of a stage: the stage restarts from its last
# checkpoint, nothing journaled is asked of the model again, and the task
# completes with the expected result.
. "$ORCH_TESTS_DIR/integration/lib.sh"

script_write_abc
export ORCH_SCRIPTED_TRACE="$T/trace"

make_repo "$T/repo"
service_start
is "$("$SUP" submit "Write three files" --repo "$T/repo" --auto-approve all)" 1 \
	"submit prints id 1"

trace_has() { grep -Eq "$1" "$T/trace" 2>/dev/null; }
wait_for 20 trace_has 'task=1 stage=implementing .* turn=1$' ||
	bail "the model was never asked for implementing turn 2"
wpid=$(pgrep -P "$SVC" -x orch-worker)
like "$wpid" '^[0-9]+$' "the service has one worker running"
kill -9 "$wpid"

wait_for 40 state_is 1 completed
is "$(state_of 1)" completed "the task completes after the worker was killed"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 1 "retry_count is 1"
like "$(sq "SELECT text FROM events WHERE task_id=1 AND kind='error'")" \
	"worker $wpid killed by signal 9.*restarting from the last checkpoint" \
	"an event says the killed worker is restarted from its checkpoint"
like "$(sq "SELECT text FROM events WHERE task_id=1 AND stage='implementing'")" \
	"worker [0-9]+ started (on node [^ ]+ )?\(run [0-9]+, restarted\)" \
	"an event says the restarted worker started"

# Every model call once, except the one in flight when the worker died.
runs=$(grep 'stage=implementing' "$T/trace" | sed 's/.* run=\([0-9]*\) .*/\1/' | sort -u)
is "$(echo "$runs" | wc -l)" 1 "implementing kept its stage run across the restart"
is "$(sort "$T/trace" | uniq -c | awk '$1 != 1 { print $1, $3, $6 }')" \
	"2 stage=implementing turn=1" \
	"only the killed turn was asked twice"
is "$(wc -l <"$T/trace")" 7 "7 model calls in all (6 turns + 1 repeated)"
is "$(grep -c 'stage=implementing' "$T/trace")" 5 "implementing asked 5 times"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=1 AND checkpoint_name='snapshot' AND checkpoint_data LIKE '%\"stage\":\"implementing\",\"step\":1}'")" \
	1 "the first write was snapshotted once (not redone)"
is "$(sq 'SELECT count(*) FROM (SELECT run, seq FROM journal WHERE task_id=1 GROUP BY run, seq HAVING count(*) > 1) AS d')" \
	0 "no journal entry is duplicated"

is "$(git -C "$T/repo" show orch/task-1:a.txt)" alpha "the branch has a.txt"
is "$(git -C "$T/repo" show orch/task-1:b.txt)" beta "the branch has b.txt"
is "$(git -C "$T/repo" show orch/task-1:c.txt)" gamma "the branch has c.txt"
check "the snapshot ref exists" git -C "$T/repo" rev-parse -q --verify refs/orch/tasks/1
check "the killed worker is gone" sh -c "! kill -0 $wpid 2>/dev/null || grep -q '^State:.*Z' /proc/$wpid/status"
db_intact
done_testing
