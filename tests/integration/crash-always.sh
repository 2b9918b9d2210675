#!/bin/bash
# A worker that crashes on every start: restarted ORCH_MAX_RETRIES times, then
# the task fails with the signal and the worker's last words; the service
# keeps serving other tasks, and --resume runs the failed task again.
. "$ORCH_TESTS_DIR/integration/lib.sh"

script_write_a
export ORCH_MAX_RETRIES=2
starts() { wc -c <"$HOME/bad-worker.count" | tr -d ' '; }

make_repo "$T/repo"
bad_worker crash crash crash crash
service_start
is "$("$SUP" submit "Write a file" --repo "$T/repo" --auto-approve all)" 1 "submit prints id 1"
wait_for 30 state_is 1 failed
is "$(state_of 1)" failed "the task fails"
is "$(sq 'SELECT status FROM tasks WHERE id=1')" failed "its status is failed"
err=$(sq 'SELECT error_details FROM tasks WHERE id=1')
like "$err" 'signal 6' "error_details names the signal (abort)"
like "$err" 'crashing on purpose' "error_details has the worker's last stderr line"
like "$err" 'gave up after 2 restarts \(ORCH_MAX_RETRIES=2\)' "error_details says it gave up"
is "$(starts)" 3 "the worker was started 1 + ORCH_MAX_RETRIES times"
# retry_count counts restarts: the message says 2, `show` prints it as "Restarts".
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 2 "retry_count is the number of restarts (2)"
is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND kind='error' AND text LIKE '%restarting from the last checkpoint%'")" \
	2 "two restart events"
check "the service is still running" kill -0 "$SVC"

# One crash mode is left: the next task's first worker crashes, then the
# real worker runs.
is "$("$SUP" submit "Write a file again" --repo "$T/repo" --auto-approve all)" 2 \
	"a second task is accepted"
wait_for 30 state_is 2 completed
is "$(state_of 2)" completed "the second task completes"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=2')" 1 "after one restart"
is "$(git -C "$T/repo" show orch/task-2:a.txt)" alpha "its branch has a.txt"
is "$(state_of 1)" failed "the first task stays failed"

timeout 60 "$SUP" --resume 1 </dev/null >"$T/resume.out" 2>&1
ok $? "--resume 1 through the service exits 0"
like "$(cat "$T/resume.out")" 'completed' "--resume follows the task to the end"
is "$(state_of 1)" completed "the failed task runs again and completes"
is "$(git -C "$T/repo" show orch/task-1:a.txt)" alpha "its branch has a.txt"
like "$(sq "SELECT text FROM events WHERE task_id=1 AND kind='state'")" 'failed -> planning: resumed' \
	"the resume is in the event log"
check "the same service still runs" kill -0 "$SVC"

# Without a service: a foreground run gives up the same way, and a
# foreground --resume runs the task again.
service_kill TERM
bad_worker crash crash crash
timeout 60 "$SUP" run "Write a file in the foreground" --repo "$T/repo" \
	--auto-approve all </dev/null >"$T/run.out" 2>&1
is "$?" 1 "a foreground run whose workers always crash exits 1"
is "$(state_of 3)" failed "its task fails"
like "$(sq 'SELECT error_details FROM tasks WHERE id=3' | tr '\n' ' ')" 'signal 6.*crashing on purpose' \
	"error_details names the signal and the worker's last words"
is "$(wc -c <"$HOME/bad-worker.count" | tr -d ' ')" 3 "after 1 + ORCH_MAX_RETRIES starts"
timeout 60 "$SUP" --resume 3 </dev/null >"$T/resume.out" 2>&1
is "$?" 0 "--resume 3 without a service exits 0"
is "$(state_of 3)" completed "the task completes in the foreground"
done_testing
