#!/bin/bash
# A model process that misbehaves is killed and started again, and the
# service goes on: ORCH_MODEL_PATH names a stand-in that, its first time,
# sends a frame that is not msgpack, its second time a MODEL_DONE for a
# call it was never asked, its third a MODEL_LOG of a kind it may not
# send; then it becomes the real orch-model.  The task completes, each of
# its turns asked once of the model.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

REAL_MODEL="$(dirname "$ORCH_WORKER_PATH")/orch-model"
[ -x "$REAL_MODEL" ] || bail "no orch-model beside $ORCH_WORKER_PATH"
cat >"$T/fake-model" <<EOF
#!/usr/bin/python3
import os, time
runs = "$T/fake-runs"
n = int(open(runs).read()) if os.path.exists(runs) else 0
open(runs, "w").write(str(n + 1))
if n == 0:
    # A header and 5 bytes that are no msgpack array.
    os.write(3, b"\x00\x00\x00\x05hello")
elif n == 1:
    # MODEL_DONE (17) [17, 999999, 1, 0, "", "{}"] for an id never given.
    body = b"\x96\x11\xce\x00\x0f\x42\x3f\x01\x00\xa0\xa2{}"
    os.write(3, len(body).to_bytes(4, "big") + body)
elif n == 2:
    # MODEL_LOG (16) [16, 1, 9, "x"]: kind 9 is none a call may log.
    body = b"\x94\x10\x01\x09\xa1x"
    os.write(3, len(body).to_bytes(4, "big") + body)
else:
    os.execv("$REAL_MODEL", ["orch-model"])
time.sleep(60)
EOF
chmod +x "$T/fake-model"
export ORCH_MODEL_PATH="$T/fake-model"

make_repo "$T/repo"
script_base
mock_start openai
service_start

"$SUP" run "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "run exits 0"
is "$(state_of 1)" completed "the task completes"
is "$(cat "$T/fake-runs")" 4 "the model process was started four times"
like "$(cat "$T/service.log")" "model process [0-9]+: protocol error: .*; starting another" \
	"a frame that is not msgpack kills it"
like "$(cat "$T/service.log")" "model process [0-9]+: protocol error: an answer for a call it was not asked" \
	"an answer for an unknown call kills it"
like "$(cat "$T/service.log")" "model process [0-9]+: protocol error: bad MODEL_LOG kind" \
	"a log line of a bad kind kills it"
is "$(mock_q 'sorted(set(r["n"] for r in L))')" "[1]" "each turn was asked once"
is "$(mock_q 'len(L)')" 7 "seven turns"
check "the service is still up" "$SUP" list
is "$(pgrep -P "$SVC" -x orch-model | wc -l)" 1 "one model process runs"
done_testing
