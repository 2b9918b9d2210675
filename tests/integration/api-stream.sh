#!/bin/bash
# The control API as a service: event streams (server-sent events), the
# connection limit, slow and idle clients, bad input, another uid, and
# `logs -f` following through the stream.
. "$ORCH_TESTS_DIR/integration/lib.sh"

export ORCH_MAX_CONNECTIONS=110
# Test knobs (not ORCH_*): a short request timeout and heartbeat.
export SUPERVISOR_TEST_HTTP_TIMEOUT_S=3 SUPERVISOR_TEST_HEARTBEAT_MS=500
SOCK="$ORCH_STATE_DIR/orch.sock"
api() { # METHOD PATH [BODY]: body in $T/body, status in $code
	local data=()
	[ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl -s --max-time 10 --unix-socket "$SOCK" -X "$1" "${data[@]}" \
		-o "$T/body" -w '%{http_code}' "http://orch$2")
}
body() { jq -r "$1" "$T/body" 2>&1; }

make_repo "$T/repo"
service_start

# --- every endpoint ---------------------------------------------------------
api GET /v1/health
is "$code" 200 "GET /v1/health"
api POST /v1/tasks "{\"request\":\"Write a\",\"repo\":\"$T/repo\"}"
is "$code" 201 "POST /v1/tasks"
wait_for 30 state_is 1 plan_awaiting_approval || bail "task 1 does not plan"
api GET /v1/tasks?status=awaiting_approval
is "$(body '.tasks[0].id')" 1 "GET /v1/tasks?status=awaiting_approval"
api GET /v1/tasks?resumable=1
is "$(body '.tasks | length')" 1 "GET /v1/tasks?resumable=1"
api GET /v1/tasks/1
is "$(body .workflow_state)" plan_awaiting_approval "GET /v1/tasks/1"
api GET "/v1/tasks/1/events?after=0"
like "$(body '.events[0].text')" . "GET /v1/tasks/1/events?after=0"
api GET "/v1/events?after=0"
is "$(body '.events[0].task')" 1 "GET /v1/events?after=0 (every task)"
api GET /v1/stats
is "$code" 200 "GET /v1/stats"
api GET /v1/tasks/9/events?follow=1
is "$code" 404 "following a missing task is 404"

# --- a stream of one task, to its end ---------------------------------------
curl -sN --max-time 60 --unix-socket "$SOCK" \
	"http://orch/v1/tasks/1/events?follow=1" >"$T/sse1" 2>&1 &
S1=$!
curl -sN --max-time 60 --unix-socket "$SOCK" \
	"http://orch/v1/events?follow=1" >"$T/sse-all" 2>&1 &
SALL=$!
sleep 1.5 # longer than the test timeout of the request: streams stay
"$SUP" approve 1 >/dev/null
wait_for 30 state_is 1 implementation_awaiting_approval
"$SUP" approve 1 >/dev/null
wait_for 30 state_is 1 completed
wait_for 5 sh -c "! kill -0 $S1"
check "the stream of task 1 ends when the task completes" sh -c "! kill -0 $S1"
wait "$S1"
like "$(cat "$T/sse1")" 'event: end' "... with an end event"
like "$(grep -c '^data: ' "$T/sse1")" '^[0-9]{2,}$' "... after the task's events"
like "$(cat "$T/sse1")" ': keep-alive' "... and heartbeat comments between them"
like "$(grep '^data: ' "$T/sse1" | sed 's/^data: //' | jq -r 'select(.kind=="state") | .text' 2>&1 | tail -1)" \
	'verifying -> completed' "... the last state event says completed"
check "the all-tasks stream goes on after the task ends" kill -0 "$SALL"
like "$(cat "$T/sse-all")" 'reviewing -> verifying' "... and saw task 1's events"
kill "$SALL"
wait "$SALL" 2>/dev/null
check "the service survives a stream reader that goes away" "$SUP" list

# --- bad input ---------------------------------------------------------------
api POST /v1/tasks '{"request": '
is "$code" 400 "bad JSON is 400"
head -c 2000000 /dev/zero | tr '\0' a >"$T/big"
code=$(curl -s --max-time 10 --unix-socket "$SOCK" -H 'Content-Type: application/json' \
	--data-binary @"$T/big" -o /dev/null -w '%{http_code}' http://orch/v1/tasks)
like "$code" '^(413|400|000)$' "a 2 MB body is refused ($code)"
code=$(curl -s --max-time 10 --unix-socket "$SOCK" -H "X-Big: $(head -c 20000 /dev/zero | tr '\0' a)" \
	-o /dev/null -w '%{http_code}' http://orch/v1/health)
like "$code" '^(400|413|431|000)$' "a 20 KB header is refused ($code)"
api GET /v1/health
is "$code" 200 "the service answers after bad input"

# --- a slow client: half a request -------------------------------------------
python3 - "$SOCK" >"$T/slow" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.send(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # and never the end
t = time.time()
s.settimeout(20)
try:
    d = s.recv(100)
    print("closed after %.1f s (%d bytes)" % (time.time() - t, len(d)))
except Exception as e:
    print("still open: %s" % e)
PY
SLOW=$!
sleep 0.5
t0=$(date +%s%N)
api GET /v1/health
t1=$(date +%s%N)
is "$code" 200 "another client is served while a slow one waits"
like "$(( (t1 - t0) / 1000000 ))" '^[0-9]{1,3}$' "... at once ($(( (t1 - t0) / 1000000 )) ms)"
wait "$SLOW"
like "$(cat "$T/slow")" '^closed after [2-5]\.' "the slow client is dropped after the timeout ($(cat "$T/slow"))"

# --- many idle connections, and the limit ------------------------------------
python3 - "$SOCK" "$T" <<'PY' >"$T/idle" 2>&1
import socket, subprocess, sys, time
sock, tmp = sys.argv[1], sys.argv[2]
def health():
    r = subprocess.run(["curl", "-s", "--max-time", "5", "--unix-socket", sock,
                        "-o", tmp + "/idle-body", "-w", "%{http_code}",
                        "http://orch/v1/health"], capture_output=True, text=True)
    return r.stdout
conns = []
for i in range(100):
    s = socket.socket(socket.AF_UNIX); s.connect(sock); conns.append(s)
time.sleep(0.3)
print("with100", health())
for i in range(20):
    s = socket.socket(socket.AF_UNIX); s.connect(sock); conns.append(s)
time.sleep(0.3)
print("with120", health(), open(tmp + "/idle-body").read().strip())
closed = 0
for s in conns:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            closed += 1
    except BlockingIOError:
        pass
    except OSError:
        closed += 1
print("closed", closed)
for s in conns: s.close()
time.sleep(0.5)
print("after", health())
PY
like "$(grep with100 "$T/idle")" 'with100 200' "100 idle connections: the others are still served"
like "$(grep with120 "$T/idle")" 'with120 200' "beyond ORCH_MAX_CONNECTIONS, a client is served: the oldest idle connections made room"
like "$(grep closed "$T/idle")" 'closed ([1-9]|1[0-9]|2[01])$' "... and only they were closed ($(grep closed "$T/idle"))"
like "$(grep after "$T/idle")" 'after 200' "served again once they close"

# --- another uid -------------------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
	id orchtest >/dev/null 2>&1 || useradd -m orchtest >/dev/null 2>&1
	chmod 0755 "$ORCH_STATE_DIR" "$T"
	chmod 0666 "$SOCK"
	code=$(su orchtest -s /bin/sh -c "curl -s --max-time 5 --unix-socket $SOCK -o /dev/null -w '%{http_code}' http://orch/v1/tasks")
	is "$code" 403 "another uid is refused (SO_PEERCRED)"
	chmod 0600 "$SOCK"
	chmod 0700 "$ORCH_STATE_DIR"
else
	echo "ok $((tap_n += 1)) # SKIP another uid: needs root to switch users"
fi

# --- logs -f through the stream: a stage change within a second -------------
api POST /v1/tasks "{\"request\":\"Write b\",\"repo\":\"$T/repo\"}"
wait_for 30 state_is 2 plan_awaiting_approval
"$SUP" logs 2 -f >"$T/follow" 2>&1 &
LF=$!
sleep 1
: >"$T/stamps"
t_approve=$(date +%s%N)
"$SUP" approve 2 >/dev/null
# Wait for the line: the time from the approval to the line on screen.
end=$(($(date +%s) + 10))
while ! grep -q 'plan_awaiting_approval -> plan_approved' "$T/follow"; do
	[ "$(date +%s)" -ge "$end" ] && break
	sleep 0.01
done
t_line=$(date +%s%N)
ms=$(( (t_line - t_approve) / 1000000 ))
echo "# logs -f: the state change appeared ${ms} ms after approve was run"
check "logs -f shows the stage change within a second (${ms} ms)" test "$ms" -lt 1000
"$SUP" approve 2 >/dev/null 2>&1
wait_for 30 state_is 2 implementation_awaiting_approval && "$SUP" approve 2 >/dev/null
wait_for 30 state_is 2 completed
wait_for 5 sh -c "! kill -0 $LF"
check "logs -f stops by itself when the task ends" sh -c "! kill -0 $LF"
like "$(tail -1 "$T/follow")" 'completed' "... after its last line"

# logs -f with no id follows every task until interrupted.
"$SUP" logs -f >"$T/follow-all" 2>&1 &
LFA=$!
sleep 1
check "logs -f without an id keeps following" kill -0 "$LFA"
kill -INT "$LFA"
wait "$LFA"
is "$?" 0 "... and exits 0 on SIGINT"
like "$(cat "$T/follow-all")" '#2 ' "... showing every task's events"

done_testing
