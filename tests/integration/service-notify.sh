#!/bin/bash
# ORCH_NOTIFY_URL: a JSON POST when a task waits, fails or completes,
# retried with backoff, never holding up the service; and the per-task
# audit files with their rotation.
. "$ORCH_TESTS_DIR/integration/lib.sh"

# A listener on loopback that records the POSTs; it answers 500 to the
# very first one, so that the retry shows.
python3 - "$T" <<'PY' &
import http.server, json, sys, os
tmp = sys.argv[1]
state = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        state["n"] += 1
        with open(tmp + "/posts", "a") as f:
            f.write(body.decode() + "\n")
        self.send_response(500 if state["n"] == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(tmp + "/port.tmp", "w").write(str(s.server_port))
os.rename(tmp + "/port.tmp", tmp + "/port")
s.serve_forever()
PY
LST=$!
wait_for 10 test -e "$T/port" || bail "no listener"
ORCH_NOTIFY_URL="http://127.0.0.1:$(cat "$T/port")/hook"
export ORCH_NOTIFY_URL
export ORCH_AUDIT_MAX_BYTES=4096
make_repo "$T/repo"
service_start

"$SUP" submit "Write a" --repo "$T/repo" >/dev/null
wait_for 30 state_is 1 plan_awaiting_approval || bail "task 1 does not wait"
wait_for 10 grep -q plan_awaiting_approval "$T/posts"
p=$(grep plan_awaiting_approval "$T/posts" | head -1)
is "$(printf '%s' "$p" | jq -r .status)" awaiting_approval "a POST when the task waits for approval"
is "$(printf '%s' "$p" | jq -r .task)" 1 "... with the task id"
is "$(printf '%s' "$p" | jq -r .request)" "Write a" "... its request"
like "$(printf '%s' "$p" | jq -r .ts)" '^20[0-9-]+ [0-9:.]+$' "... and the time"
check "... every field is there" sh -c "printf '%s' '$p' | jq -e 'has(\"task\") and has(\"status\") and has(\"workflow_state\") and has(\"request\") and has(\"error_details\") and has(\"ts\")'"
wait_for 10 sh -c "[ \$(grep -c plan_awaiting_approval $T/posts) -ge 2 ]"
is "$(grep -c plan_awaiting_approval "$T/posts")" 2 "the refused POST (500) is sent again"

"$SUP" approve 1 >/dev/null
wait_for 30 state_is 1 implementation_awaiting_approval
"$SUP" approve 1 >/dev/null
wait_for 30 state_is 1 completed
wait_for 10 grep -q '"status":"completed"' "$T/posts"
check "a POST when the task completes" grep -q '"workflow_state":"completed"' "$T/posts"

# A task that fails: a worker that always crashes.
export ORCH_MAX_RETRIES=0
service_kill TERM
bad_worker crash crash crash
service_start
"$SUP" submit "Fail" --repo "$T/repo" >/dev/null
wait_for 30 state_is 2 failed
wait_for 10 grep -q '"status":"failed"' "$T/posts"
p=$(grep '"status":"failed"' "$T/posts" | head -1)
is "$(printf '%s' "$p" | jq -r .task)" 2 "a POST when a task fails"
like "$(printf '%s' "$p" | jq -r .error_details)" . "... with its error details"
export ORCH_WORKER_PATH="$REAL_WORKER"

# A dead receiver does not hold up the service.
kill "$LST"
wait "$LST" 2>/dev/null
service_kill TERM
service_start
"$SUP" submit "Write c" --repo "$T/repo" >/dev/null
wait_for 30 state_is 3 plan_awaiting_approval
t0=$(date +%s%N)
"$SUP" list >/dev/null
t1=$(date +%s%N)
check "with the receiver gone the service answers at once ($(( (t1 - t0) / 1000000 )) ms)" \
	test $(( (t1 - t0) / 1000000 )) -lt 1000

# The audit files: one JSON object per event, the same as the database.
a="$ORCH_STATE_DIR/logs/task-3.jsonl"
check "task 3 has an audit file" test -s "$a"
check "... of JSON lines with id, ts, task, kind, stage, text" \
	sh -c "jq -e 'has(\"ts\") and has(\"task\") and has(\"kind\") and has(\"stage\") and has(\"text\")' $a >/dev/null"
is "$(tail -1 "$a" | jq -r .text)" "$(sq "SELECT text FROM events WHERE task_id = 3 ORDER BY id DESC LIMIT 1")" \
	"... the last line is the last event"
check "task 1's file was rotated at ORCH_AUDIT_MAX_BYTES (4096)" test -s "$ORCH_STATE_DIR/logs/task-1.jsonl.1"
check "... each file under the cap" sh -c "[ \$(stat -c %s $ORCH_STATE_DIR/logs/task-1.jsonl) -le 4096 ]"
# Events added while no service runs reach the files when one starts.
service_kill TERM
"$SUP" cancel 3 >/dev/null
service_start
wait_for 5 grep -q cancelled "$a"
check "an event added without the service reaches the file at start" grep -q '"plan_awaiting_approval -> cancelled' "$a"
is "$(jq .id "$a" | sort | uniq -d | wc -l)" 0 "... and no event is written twice across the restarts"
is "$(jq .id "$a" | wc -l)" "$(sq 'SELECT count(*) FROM events WHERE task_id = 3')" "... nor left out"
is "$(cat "$ORCH_STATE_DIR/logs/audit.pos")" "$(printf '%020d' "$(sq 'SELECT max(id) FROM events')")" \
	"logs/audit.pos holds the last event written"
service_kill KILL
service_start
"$SUP" list >/dev/null
is "$(jq .id "$a" | sort | uniq -d | wc -l)" 0 "after kill -9 and a start, still no event twice"

# A backlog (5000 events added while no service ran) is written from the
# loop after the start, while new events keep coming: all of them reach
# the files once, in order.
service_kill TERM
if on_pg; then
	now="to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
else
	now="strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
fi
sq "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)
	INSERT INTO events (task_id, ts, kind, stage, text)
	SELECT 3, $now, 'info', NULL, 'backlog ' || x FROM c"
service_start
"$SUP" submit "Write d" --repo "$T/repo" >/dev/null
# (The file is rotated at 4096 bytes here: its last lines are checked.)
caught_up() { [ "$(tail -1 "$a" | jq -r .text)" = "backlog 5000" ]; }
wait_for 30 caught_up
check "the backlog reached task 3's file" caught_up
is "$(cat "$a.1" "$a" | jq .id | sort -n -c 2>&1; cat "$a.1" "$a" | jq .id | uniq -d | wc -l)" 0 \
	"... in order, each event once"
wait_for 10 state_is 4 plan_awaiting_approval
d="$ORCH_STATE_DIR/logs/task-4.jsonl"
all_written() { [ "$(wc -l <"$d")" -eq "$(sq 'SELECT count(*) FROM events WHERE task_id = 4')" ]; }
wait_for 10 all_written
is "$(wc -l <"$d")" "$(sq 'SELECT count(*) FROM events WHERE task_id = 4')" \
	"the new task's events, made during the catching up, are all in its file"

done_testing
