#!/bin/bash
# One story from any node (issue 13, point 5): a node's event stream
# (the control API's, through its socket) shows the log lines of a task another
# node runs, as they are written, and ends when the task does; and a
# webhook (ORCH_NOTIFY_URL) is sent once, by the node that made the state
# change, not once per node.
. "$ORCH_TESTS_DIR/multinode/lib.sh"

mn_script 0.7
mn_setup
# The listener records every POST; both nodes send to it.
python3 - "$T" <<'PY' &
import http.server, os, sys
tmp = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(tmp + "/posts", "a") as f:
            f.write(body.decode() + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(tmp + "/hport.tmp", "w").write(str(s.server_port))
os.rename(tmp + "/hport.tmp", tmp + "/hport")
s.serve_forever()
PY
LST=$!
wait_for 10 test -e "$T/hport" || mn_bail "no webhook listener"
ORCH_NOTIFY_URL="http://127.0.0.1:$(cat "$T/hport")/hook"
export ORCH_NOTIFY_URL

node_start b
cli submit "Write the files" --repo "$ORIGIN" --verify "test -s both.txt" \
	--auto-approve all >/dev/null || mn_bail "submit failed"
id=$(sq 'SELECT max(id) FROM tasks')
on_b() { [ "$(ran_on "$id")" = b ]; }
wait_for 30 on_b || mn_bail "task $id never started on node b"
node_start a
# Follow it through node a's API, which does not run it.  (The CLI's
# logs -f on PostgreSQL reads the database itself; the API's stream is
# what the console and other clients of a node read.)
timeout 90 curl -sSN --unix-socket "$T/n-a/orch.sock" \
	"http://orch/v1/tasks/$id/events?follow=1" >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW=$!
wait_for 90 all_ended
wait_for 15 sh -c "! kill -0 $FOLLOW 2>/dev/null"
check "node a's stream ends with the task it does not run" sh -c "! kill -0 $FOLLOW 2>/dev/null"
wait "$FOLLOW"
is "$?" 0 "... and the stream was ended by the service (not by the timeout)"
is "$(state_of "$id")" completed "task $id completes"
is "$(ran_on "$id" | tr '\n' ' ')" "b " "every stage of it ran on node b"
check "node a's stream shows b's later stages" grep -q "verifying -> completed" "$T/follow.out"
check "... and b's workers starting" grep -q "started on node b" "$T/follow.out"
is "$(sq "SELECT data::json->>'node' FROM events WHERE task_id=$id
	AND state = 'completed'")" b "the state change names the node that made it"
wait_for 15 grep -q '"workflow_state":"completed"' "$T/posts"
sleep 2
is "$(grep -c '"workflow_state":"completed"' "$T/posts")" 1 \
	"the completion's webhook is sent once, not once per node"
kill "$LST" 2>/dev/null
node_stop a TERM
node_stop b TERM
done_testing
