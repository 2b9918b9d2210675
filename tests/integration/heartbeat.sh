#!/bin/bash
# A worker that stops talking (after HELLO, or before it) is killed once it
# has been silent ORCH_WORKER_TIMEOUT_S, and its stage restarts.
. "$ORCH_TESTS_DIR/integration/lib.sh"

script_write_a
export ORCH_WORKER_TIMEOUT_S=1

# Milliseconds since boot: now, and when process PID started (so that the
# time it lived does not depend on how soon pgrep saw it on a loaded host).
uptime_ms() { awk '{ print int($1 * 1000) }' /proc/uptime; }
started_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int($22 * 1000 / hz) }' "/proc/$1/stat"; }
bad_pid() { pgrep -P "$SVC" -x bad-worker; }

make_repo "$T/repo"
bad_worker hang
service_start

# mode MODE ID: the worker of task ID hangs in MODE; it must be killed within
# a few seconds and the task completed by the real worker.
mode() {
	local m=$1 id=$2 pid t0 t1 killed
	bad_worker "$m"
	is "$("$SUP" submit "Write a file ($m)" --repo "$T/repo" --auto-approve all)" "$id" \
		"$m: submit prints id $id"
	wait_for 10 bad_pid || bail "$m: the bad worker did not start"
	pid=$(bad_pid)
	t0=$(started_ms "$pid")
	# Once: asked again, a pid the kernel already gave to another
	# process would say it lives.
	wait_for 10 gone "$pid"
	killed=$?
	t1=$(uptime_ms)
	is "$killed" 0 "$m: the silent worker is killed"
	check "$m: ... after ORCH_WORKER_TIMEOUT_S but within 4 s ($((t1 - t0)) ms)" \
		test $((t1 - t0)) -ge 700 -a $((t1 - t0)) -le 4000
	wait_for 30 state_is "$id" completed
	is "$(state_of "$id")" completed "$m: the task completes with the real worker"
	is "$(sq "SELECT retry_count FROM tasks WHERE id=$id")" 1 "$m: after one restart"
	like "$(sq "SELECT text FROM events WHERE task_id=$id AND kind='error'")" \
		"worker $pid no heartbeat for [0-9]+ s.*restarting" \
		"$m: an event says the worker sent no heartbeat"
}
mode hang 1
mode silent 2
check "the service is still running" kill -0 "$SVC"
done_testing
