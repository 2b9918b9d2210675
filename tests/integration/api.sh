#!/bin/bash
# The control API on the service's Unix socket, as curl sees it.
. "$ORCH_TESTS_DIR/integration/lib.sh"

script_write_a
export ORCH_MAX_RETRIES=0
SOCK="$ORCH_STATE_DIR/orch.sock"
# api METHOD PATH [BODY]: the body in $T/body, the HTTP status in $code.
api() {
	local data=()
	[ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl -s --max-time 10 --unix-socket "$SOCK" -X "$1" "${data[@]}" \
		-o "$T/body" -w '%{http_code}' "http://orch$2")
}
body() { jq -r "$1" "$T/body" 2>&1; }

make_repo "$T/repo"
# The first worker crashes; with ORCH_MAX_RETRIES=0 task 1 fails at once.
bad_worker crash
service_start

is "$(stat -c %a "$ORCH_STATE_DIR")" 700 "the state directory is 0700"
is "$(stat -c %a "$SOCK")" 600 "the socket is 0600"

api GET /v1/health
is "$code" 200 "GET /v1/health is 200"
is "$(body .ok)" true "... ok: true"
is "$(body .pid)" "$SVC" "... with the service's pid"
api GET /v1/tasks
is "$code" 200 "GET /v1/tasks is 200"
is "$(body '.tasks | length')" 0 "... with no tasks yet"

api POST /v1/tasks "{\"request\":\"Write a.txt\",\"repo\":\"$T/repo\",\"auto_approve\":\"all\"}"
is "$code" 201 "POST /v1/tasks is 201"
is "$(body .id)" 1 "... with the new id"
wait_for 20 state_is 1 failed
is "$(state_of 1)" failed "task 1 fails (its only worker crashed)"
api POST /v1/tasks/1/resume '{}'
is "$code" 200 "POST /v1/tasks/1/resume is 200"
wait_for 30 state_is 1 completed
is "$(state_of 1)" completed "the resumed task completes"

api POST /v1/tasks "{\"request\":\"Write a.txt, gated\",\"repo\":\"$T/repo\"}"
is "$code" 201 "a second task"
is "$(body .id)" 2 "... id 2"
wait_for 20 state_is 2 plan_awaiting_approval
api GET /v1/tasks/2
is "$code" 200 "GET /v1/tasks/2 is 200"
is "$(body .request)" "Write a.txt, gated" "... with its request"
is "$(body .workflow_state)" plan_awaiting_approval "... and its state"
is "$(body .status)" awaiting_approval "... and its status"
api GET /v1/tasks/2/events
is "$code" 200 "GET /v1/tasks/2/events is 200"
like "$(body '.events[].text')" 'pending -> planning' "... with the state changes"
is "$(body '[.events[] | select(.task != 2)] | length')" 0 "... of task 2 only"

api POST /v1/tasks/2/reject '{"by":"bob"}'
is "$code" 400 "reject without a reason is 400"
like "$(body .error)" 'reason' "... saying a reason is needed"
api POST /v1/tasks/2/reject '{"reason":"too short","by":"bob"}'
is "$code" 200 "POST reject is 200"
is "$(sq 'SELECT plan_rejection_reason FROM tasks WHERE id=2')" "too short" "the reason is stored"
wait_for 20 state_is 2 plan_awaiting_approval
api POST /v1/tasks/2/approve '{"by":"alice"}'
is "$code" 200 "POST approve is 200"
is "$(sq 'SELECT plan_approved_by FROM tasks WHERE id=2')" alice "plan_approved_by is alice"
wait_for 20 state_is 2 implementation_awaiting_approval
api POST /v1/tasks/2/cancel
is "$code" 200 "POST cancel is 200"
is "$(state_of 2)" cancelled "the task is cancelled"
api POST /v1/tasks/2/cancel
is "$code" 409 "cancelling it again is 409"
like "$(body .error)" 'cancelled' "... saying why"
api POST /v1/tasks/2/approve '{}'
is "$code" 409 "approving a cancelled task is 409"
api POST /v1/tasks/99/approve '{}'
is "$code" 404 "approving a missing task is 404"
api GET /v1/tasks/99
is "$code" 404 "GET a missing task is 404"
# Cancelling a task whose worker runs stops the worker for good.
bad_worker hang
api POST /v1/tasks "{\"request\":\"Hang\",\"repo\":\"$T/repo\"}"
is "$(body .id)" 3 "a third task, whose worker hangs"
hung() { pgrep -P "$SVC" -x bad-worker; }
wait_for 10 hung || bail "the hanging worker did not start"
hpid=$(hung)
api POST /v1/tasks/3/cancel
is "$code" 200 "POST cancel of a running task is 200"
wait_for 5 gone "$hpid"
is "$?" 0 "its worker is stopped"
sleep 0.5
is "$(state_of 3)" cancelled "the task stays cancelled"
is "$(wc -c <"$HOME/bad-worker.count" | tr -d ' ')" 1 "no worker is started for it again"
is "$(sq "SELECT count(*) FROM events WHERE task_id=3 AND kind='error'")" 0 "the stop is not recorded as a failure"
api GET '/v1/tasks?status=completed'
is "$(body '[.tasks[].id] | join(" ")')" 1 "GET /v1/tasks?status=completed lists task 1"

api GET /v1/stats
is "$code" 200 "GET /v1/stats is 200"
is "$(body .by_status.completed)" 1 "... 1 completed"
is "$(body .by_status.cancelled)" 2 "... 2 cancelled"

# Bad requests.
api POST /v1/tasks '{"request": "x", '
is "$code" 400 "bad JSON is 400"
like "$(body .error)" '.' "... with an error message"
api POST /v1/tasks '[1,2]'
is "$code" 400 "a JSON array is 400"
api POST /v1/tasks '{"request":"x"}'
is "$code" 400 "a task without a repo is 400"
like "$(body .error)" 'repo' "... naming repo"
api POST /v1/tasks "{\"request\":\"x\",\"repo\":\"$T\"}"
is "$code" 400 "a task in a non-repository is 400"
like "$(body .error)" 'not a git repository' "... saying why"
api POST /v1/tasks "{\"request\":7,\"repo\":\"$T/repo\"}"
is "$code" 400 "a request that is not a string is 400"
api GET /v1/nope
is "$code" 404 "an unknown path is 404"
like "$(body .error)" '.' "... with an error message"
api GET /v1/tasks/1/frobnicate
is "$code" 405 "GET on an action is 405"
api DELETE /v1/tasks/1
check "DELETE is refused ($code)" test "$code" -ge 400 -a "$code" -le 501

big=$(head -c 20480 /dev/zero | tr '\0' a)
code=$(curl -s --max-time 10 --unix-socket "$SOCK" -H "X-Big: $big" -o /dev/null \
	-w '%{http_code}' http://orch/v1/health)
check "a 20 KB header is refused (HTTP '$code')" test "$code" = 000 -o "$code" -ge 400 -a "$code" -lt 500
api GET /v1/health
is "$code" 200 "the service still answers afterwards"
is "$(body .pid)" "$SVC" "... the same service"
is "$(sq 'SELECT count(*) FROM tasks')" 3 "no bad request made a task"

# The console's pages answer on the socket too (its user is the service's
# own): they read the same store as the API.
for page in /inbox /tasks /tasks/1 /tasks/999; do
	code=$(curl -s --max-time 10 --unix-socket "$SOCK" -o "$T/page" \
		-w '%{http_code}' "http://orch$page")
	check "GET $page on the socket answers ($code)" \
		test "$code" = 200 -o "$code" = 404
done
like "$(cat "$T/page")" 'html' "... with a page"
api GET /v1/health
is "$(body .pid)" "$SVC" "the service is still the same one"
done_testing
