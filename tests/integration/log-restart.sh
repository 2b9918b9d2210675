#!/bin/bash
# Restarts and resumes are narrated.  A worker killed in the middle of the
# implementing stage is restarted, and the log says why, from which
# checkpoint, how many journaled steps are replayed without asking the
# model again, and which snapshot the workspace went back to.  Killed again
# past ORCH_MAX_RETRIES, the task fails; `--resume` then first says what it
# resumes (task, request, state, last checkpoint, where it goes on) and
# prints only what happens from there (--full: the whole history).
export ORCH_MAX_RETRIES=1 ORCH_RETRY_BACKOFF_MS=300
. "$ORCH_TESTS_DIR/integration/lib.sh"
script_write_abc
make_repo "$T/repo"
service_start
svc_worker() { pgrep -P "$SVC" -x orch-worker; }

# Every task's log followed through the service, as JSON lines (ended
# by timeout: without an id, -f follows until interrupted).  --foreground:
# the signals go to it alone, not to its process group, where a sanitizer
# build's leak check at exit has a helper (signalled while it stops the
# process, that helper hung).
timeout --foreground 25 "$SUP" logs -f --json >"$T/follow.json" 2>"$T/follow.err" &
FOLLOW=$!
id=$("$SUP" submit "Write three files" --repo "$T/repo" --auto-approve all \
	--verify "cat a.txt b.txt c.txt" 2>"$T/submit.err")
is "$id" 1 "task submitted"
snap_done() { [ "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=1 AND checkpoint_name='snapshot'")" -ge 1 ]; }
wait_for 30 snap_done || bail "the first write was never snapshotted"
W=$(svc_worker)
like "$W" '^[0-9]+$' "a worker runs (asking for turn 2, delayed)"
kill -9 "$W"

restarted() { [ "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND text LIKE 'workspace restored%'")" -ge "$1" ]; }
wait_for 30 restarted 1 || bail "the restarted worker never restored the workspace"
"$SUP" logs 1 >"$T/logs1.out"
snap=$(sq "SELECT $(sql_json checkpoint_data commit) FROM checkpoints WHERE task_id=1 AND checkpoint_name='snapshot' ORDER BY id DESC LIMIT 1")
like "$snap" '^[0-9a-f]{40}$' "the write's snapshot is recorded"
like "$(grep 'implementing restarted' "$T/logs1.out")" \
	"\\[implementing\\] implementing restarted \\(restart 1 of 1, after: worker $W killed by signal 9.*\\): from checkpoint snapshot saved at [0-9-]+ [0-9:.]+; 3 journaled steps replayed without asking the model or running a command again \\(1 model replies, 1 tool results\\); workspace restored to snapshot ${snap:0:12}$" \
	"the restart says why, from which checkpoint, what is replayed, and the snapshot"
like "$(grep -A1 'implementing restarted' "$T/logs1.out" | tail -1)" \
	"workspace restored to snapshot ${snap:0:12} \\(3 journaled steps to replay\\)" \
	"the worker says what it restored"
is "$("$SUP" logs 1 --json --kind info | python3 -c '
import json, sys
for l in sys.stdin:
    e = json.loads(l)
    if e.get("restart"):
        print(e["attempt"], e["replayed"], e["replayed_replies"], e["replayed_results"], e["checkpoint"], e["snapshot"][:12], e["workspace_kept"])
')" "1 3 1 1 snapshot ${snap:0:12} False" "logs --json has the restart's facts"

wait_for 30 grep -q '"restart":true' "$T/follow.json"
is "$(python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
r = [e for e in ev if e.get("restart")][0]
print(r["task"], r["replayed"], r["snapshot"][:12], sorted({e["kind"] for e in ev} & {"result", "checkpoint", "state"}))
' "$T/follow.json")" "1 3 ${snap:0:12} ['checkpoint', 'result', 'state']" \
	"logs -f --json without an id follows the service's stream, facts included"
kill "$FOLLOW" 2>/dev/null
wait "$FOLLOW" 2>/dev/null
# Colour on a terminal, none with NO_COLOR (and none when piped: above).
script -qec "env -u NO_COLOR $SUP logs 1 --kind result" /dev/null >"$T/tty.out" </dev/null
check "colour on a terminal" grep -q "$(printf '\033')\\[3[12]m" "$T/tty.out"
script -qec "env NO_COLOR=1 $SUP logs 1 --kind result" /dev/null >"$T/tty2.out" </dev/null
check "none with NO_COLOR" sh -c "! grep -q \"\$(printf '\\033')\" '$T/tty2.out'"
check "none when piped" sh -c "! env -u NO_COLOR '$SUP' logs 1 | grep -q \"\$(printf '\\033')\""

# Killed again while turn 2 is asked: past ORCH_MAX_RETRIES, it fails.
W2=$(svc_worker)
check "a new worker runs" test -n "$W2" -a "$W2" != "$W"
kill -9 "$W2"
wait_for 30 state_is 1 failed || bail "task 1 did not fail"
service_kill TERM
asked_before=$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='reply'")
last_ev=$(sq 'SELECT max(id) FROM events')

"$SUP" --resume 1 >"$T/resume.out" 2>"$T/resume.err"
is "$?" 0 "--resume runs the task to its end"
is "$(state_of 1)" completed "task 1 completes"
is "$(sed -n 1p "$T/resume.out")" "Resuming task 1: Write three files" "it first names the task and its request"
like "$(sed -n 2p "$T/resume.out")" '^  Workflow state:  failed in implementing: worker [0-9]+ killed by signal 9' "its state, and why it failed"
like "$(sed -n 3p "$T/resume.out")" '^  Last checkpoint: snapshot, saved [0-9-]+ [0-9:.]+$' "its last checkpoint and when"
is "$(sed -n 4p "$T/resume.out")" \
	"Resuming at: implementing, step 4 of the journal (3 journaled steps are replayed: 1 model replies, 1 tool results, none asked or run again)" \
	"where it goes on"
check "then only what happens from there" sh -c "! grep -q 'task submitted\\|pending -> planning\\|after_planning' '$T/resume.out'"
like "$(sed -n 5,6p "$T/resume.out" | tr '\n' ' ')" 'failed -> implementing: resumed' "the log goes on with the resume"
like "$(grep 'implementing restarted' "$T/resume.out")" 'implementing restarted \(resumed: .*\): from checkpoint snapshot .*3 journaled steps replayed' \
	"the resumed stage says what it replays"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='reply'")" "$((asked_before + 4))" \
	"the model was asked only for the turns after the journal (write b, write c, finish) and the reviewer"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=1 AND checkpoint_name='snapshot' AND checkpoint_data LIKE '%\"step\":1}'")" \
	1 "the first write was not done again"
check "the events before the resume are not printed" sh -c "! grep -q 'worker $W' '$T/resume.out'"
is "$(sq "SELECT count(*) FROM events WHERE id > $last_ev AND task_id=1")" \
	"$(grep -c '^[0-9][0-9]:' "$T/resume.out")" "every new event is printed, once"

# A second resume of a completed task says there is nothing to resume;
# --full prints the whole history.
"$SUP" --resume 1 --full >"$T/resume2.out" 2>&1
is "$?" 1 "a completed task is not resumed"
like "$(cat "$T/resume2.out")" 'nothing to resume' "... and says so"
"$SUP" --resume 1 --bogus >/dev/null 2>&1
is "$?" 2 "an unknown --resume flag is a usage error"
done_testing
