#!/bin/bash
# The control socket under misbehaving clients: clients that trickle a
# request a byte at a time are cut at a deadline counted from accept, and a
# flood of idle connections under a low RLIMIT_NOFILE neither makes the
# service spin on accept(2) nor takes the descriptors a task needs.
. "$ORCH_TESTS_DIR/integration/lib.sh"

# Test knob (not ORCH_*): the request deadline is 3 s instead of 30.
export SUPERVISOR_TEST_HTTP_TIMEOUT_S=3
export ORCH_MAX_WORKERS=1
SOCK="$ORCH_STATE_DIR/orch.sock"
make_repo "$T/repo"
script_write_a

# --- slowloris ---------------------------------------------------------------
# 16 clients take every connection (ORCH_MAX_CONNECTIONS=16) and send a
# byte each 0.5 s, well within the 3 s the service waits for the next byte.
export ORCH_MAX_CONNECTIONS=16
service_start
python3 - "$SOCK" <<'PY' >"$T/trickle" 2>&1 &
import socket, sys, time
conns = []
for i in range(16):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.setblocking(False)
    conns.append([s, time.time(), None])
req = b"GET /v1/health HTTP/1.1\r\nHost: orch\r\nX-Slow: " + b"a" * 400
pos = 0
end = time.time() + 20
while time.time() < end and any(c[2] is None for c in conns):
    for c in conns:
        if c[2] is not None:
            continue
        try:
            c[0].send(req[pos:pos + 1])
        except OSError:
            c[2] = time.time() - c[1]
            continue
        try:
            if c[0].recv(100) == b"":
                c[2] = time.time() - c[1]
        except BlockingIOError:
            pass
        except OSError:
            c[2] = time.time() - c[1]
    pos = (pos + 1) % len(req)
    time.sleep(0.5)
for c in conns:
    print("cut" if c[2] is not None else "held", "%.1f" % (c[2] or 0))
PY
TR=$!
sleep 1
t0=$(date +%s)
timeout 40 "$SUP" submit "Write a.txt" --repo "$T/repo" >"$T/out" 2>&1
rc=$?
t1=$(date +%s)
is "$rc" 0 "submit succeeds while 16 clients trickle bytes in every slot ($(cat "$T/out"))"
check "... within the deadline and a retry ($((t1 - t0)) s)" test $((t1 - t0)) -le 10
wait "$TR"
is "$(grep -c '^cut' "$T/trickle")" 16 "every trickling client is cut off"
# The CLI's connections (its health check and its request) each made room
# by closing the oldest of them; the rest reached the deadline.
is "$(awk '$1 == "cut" && $2 <= 6 { n++ } END { print n + 0 }' "$T/trickle")" 16 \
	"... all within 6 s of connecting, though they kept sending ($(awk '{ print $2 }' "$T/trickle" | sort -n | sed -n '1p;$p' | paste -sd-) s)"
check "... most of them at the 3 s deadline" \
	test "$(awk '$1 == "cut" && $2 >= 2.5 { n++ } END { print n + 0 }' "$T/trickle")" -ge 13
service_kill TERM

# --- every connection busy: 503 with Retry-After ----------------------------
# Four event streams take every connection (ORCH_MAX_CONNECTIONS=4): none
# is idle to make room, so a new one is refused, and told when to come back.
export ORCH_MAX_CONNECTIONS=4
service_start
python3 - "$SOCK" "$T" <<'PY' >"$T/busy" 2>&1
import socket, subprocess, sys, time
sock, tmp = sys.argv[1], sys.argv[2]
streams = []
for i in range(4):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"GET /v1/events?follow=1 HTTP/1.1\r\nHost: orch\r\n\r\n")
    streams.append(s)
time.sleep(0.5)
r = subprocess.run(["curl", "-s", "-i", "--max-time", "5", "--unix-socket", sock,
                    "http://orch/v1/health"], capture_output=True, text=True)
print(r.stdout.replace("\r", ""))
for s in streams:
    s.close()
PY
like "$(head -1 "$T/busy")" '^HTTP/1.1 503' "every connection a stream: a new one gets 503"
like "$(cat "$T/busy")" 'Retry-After: 1' "... with Retry-After"
like "$(cat "$T/busy")" 'too many connections \(ORCH_MAX_CONNECTIONS=4\)' "... and a clear message"
timeout 40 "$SUP" cancel 1 >"$T/out" 2>&1
is "$?" 0 "the CLI is served once the streams end ($(cat "$T/out"))"
service_kill TERM

# --- a flood of idle connections under a low RLIMIT_NOFILE ------------------
# With 160 descriptors the service keeps 80 for itself and its one worker.
# The flood keeps 400 connections open for 12 s, opening new ones as the
# service closes them.  Meanwhile the task must go on through its stages
# (each start makes a socketpair and pipes) and the CLI must be served.
export ORCH_MAX_CONNECTIONS=1000
# The plan comes 4 s after the flood starts: the next stage starts amid it.
jq '.planning[0].delay_ms = 4000' "$T/script.json" >"$T/slow.json"
export ORCH_LLM_SCRIPT="$T/slow.json"
: >"$T/service.log"
(ulimit -n 160 && exec "$SUP" serve) >>"$T/service.log" 2>&1 &
SVC=$!
wait_for 10 test -S "$SOCK" || bail "service did not start"
wait_for 10 "$SUP" stats || bail "service does not answer"
ID=$(timeout 40 "$SUP" submit "Write a.txt" --repo "$T/repo" --auto-approve all 2>&1)
wait_for 10 state_is "$ID" planning || bail "task $ID did not start: $ID"
python3 - "$SOCK" <<'PY' >"$T/flood" 2>&1 &
import socket, sys, time
conns, opened, refused = [], 0, 0
end = time.time() + 12
while time.time() < end:
    live = []
    for s in conns:
        try:
            if s.recv(4096) == b"":
                s.close()
                continue
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        live.append(s)
    conns = live
    while len(conns) < 400:
        s = socket.socket(socket.AF_UNIX)
        s.setblocking(False)
        try:
            s.connect(sys.argv[1])
        except OSError:
            s.close()
            refused += 1
            break
        conns.append(s)
        opened += 1
    time.sleep(0.2)
print("opened", opened, "refused", refused)
PY
FL=$!
sleep 2
lines0=$(wc -l <"$T/service.log")
cpu() { awk '{ print $14 + $15 }' "/proc/$SVC/stat"; }
c0=$(cpu)
sleep 3
c1=$(cpu)
lines1=$(wc -l <"$T/service.log")
check "the service does not spin on accept ($((c1 - c0)) ticks of CPU in 3 s)" \
	test $((c1 - c0)) -lt 150
check "... nor floods its log ($((lines1 - lines0)) lines in 3 s)" \
	test $((lines1 - lines0)) -lt 20
timeout 60 "$SUP" submit "Write a.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 0 "submit goes through the flood ($(cat "$T/out"))"
wait "$FL"
like "$(cat "$T/flood")" '^opened [0-9]{3,}' "the flood opened many connections ($(cat "$T/flood"))"
moved_on() { [ "$(sq "SELECT status FROM tasks WHERE id=$ID")" != in_progress ]; }
wait_for 60 moved_on
like "$(state_of "$ID")" '^completed$' \
	"the task went on through its stages ($(sq "SELECT error_details FROM tasks WHERE id=$ID"))"
is "$(grep -c 'Too many open files' "$T/service.log")" 0 "nothing failed for want of descriptors"
like "$(cat "$T/service.log")" 'idle ones closed to make room' \
	"the service says what the flood cost, once in a while"
timeout 40 "$SUP" cancel "$(cat "$T/out")" >"$T/out2" 2>&1
is "$?" 0 "the CLI works after the flood ($(cat "$T/out2"))"
service_kill TERM

done_testing
