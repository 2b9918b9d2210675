#!/bin/bash
# kill -9 the service in the middle of a stage: its worker dies with it, the
# task is listed as resumable, a new service resumes it from the journal
# (committed model calls are not asked again) and completes it.
. "$ORCH_TESTS_DIR/integration/lib.sh"

script_write_abc
export ORCH_SCRIPTED_TRACE="$T/trace"

trace_has() { grep -Eq "$1" "$T/trace" 2>/dev/null; }

make_repo "$T/repo"
service_start
is "$("$SUP" submit "Write three files" --repo "$T/repo" --auto-approve all)" 1 \
	"submit prints id 1"
wait_for 20 trace_has 'task=1 stage=implementing .* turn=1$' ||
	bail "the model was never asked for implementing turn 2"
wpid=$(pgrep -P "$SVC" -x orch-worker)
like "$wpid" '^[0-9]+$' "the service has one worker running"
service_kill 9
wait_for 5 gone "$wpid"
is "$?" 0 "the worker died with the service (parent-death signal)"
is "$(ours)" "" "no orch-worker of this test remains"
is "$(state_of 1)" implementing "the task is still implementing"

like "$("$SUP" --list-resumable)" '^1 +in_progress +implementing' "--list-resumable lists the task"

service_start
wait_for 40 state_is 1 completed
is "$(state_of 1)" completed "the new service completes the task"
is "$(grep -c 'resuming' "$T/service.log")" 1 "the new service says it is resuming"
like "$(grep 'resuming' "$T/service.log")" 'implementing' "... from implementing"
like "$("$SUP" --list-resumable)" 'no resumable tasks' "nothing is resumable any more"

# Every model call once, except the one in flight when the service died.
is "$(sort "$T/trace" | uniq -c | awk '$1 != 1 { print $1, $3, $6 }')" \
	"2 stage=implementing turn=1" \
	"only the turn in flight was asked twice"
is "$(grep 'stage=implementing' "$T/trace" | sed 's/.* run=\([0-9]*\) .*/\1/' | sort -u | wc -l)" \
	1 "implementing kept its stage run across the restart"
is "$(wc -l <"$T/trace")" 7 "7 model calls in all (6 turns + 1 repeated)"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=1 AND checkpoint_name='snapshot' AND checkpoint_data LIKE '%\"stage\":\"implementing\",\"step\":1}'")" \
	1 "the first write was snapshotted once (not redone)"

is "$(git -C "$T/repo" show orch/task-1:a.txt)" alpha "the branch has a.txt"
is "$(git -C "$T/repo" show orch/task-1:b.txt)" beta "the branch has b.txt"
is "$(git -C "$T/repo" show orch/task-1:c.txt)" gamma "the branch has c.txt"
check "the snapshot ref exists" git -C "$T/repo" rev-parse -q --verify refs/orch/tasks/1
db_intact
done_testing
