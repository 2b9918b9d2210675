#!/bin/bash
# Started with stdin, stdout and stderr closed (cron, `cmd <&- >&- 2>&-`),
# orch-supervisor gives each of them /dev/null before it opens anything:
# otherwise the database's socket or a log file would take descriptor 1,
# and the next printf would write into it.
. "$ORCH_TESTS_DIR/integration/lib.sh"

make_repo "$T/repo"
"$SUP" serve <&- >&- 2>&- &
SVC=$!
wait_for 10 test -S "$ORCH_STATE_DIR/orch.sock" || bail "service did not start"
wait_for 10 "$SUP" list || bail "service does not answer"
for fd in 0 1 2; do
	is "$(readlink "/proc/$SVC/fd/$fd")" /dev/null \
		"the service's descriptor $fd is /dev/null"
done
id=$("$SUP" submit "Write a file" --repo "$T/repo" --auto-approve all)
is "$id" 1 "it takes a task"
wait_for 60 state_is 1 completed
is "$(state_of 1)" completed "... and completes it"
service_kill TERM

# A command with its output closed still does its work and exits cleanly.
"$SUP" submit "Another" --repo "$T/repo" <&- >&- 2>&-
is "$?" 0 "submit with every standard descriptor closed succeeds"
is "$(sq 'SELECT count(*) FROM tasks')" 2 "... and queued its task"
done_testing
