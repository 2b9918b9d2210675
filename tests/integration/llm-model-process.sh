#!/bin/bash
# The model process (orch-model) makes the workers' model calls.  While a
# worker waits on a slow reply: the worker has no network (an empty network
# namespace: only lo), no API key (not in its environment, not anywhere in
# its memory) and no libcurl; the model process has the key.  Then the
# model process is killed with -9 mid-call: another is started, the call
# is asked again, the task completes, and no journaled reply is asked twice.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

# mem_has PID: how many readable mappings of PID hold the key, and how
# many bytes were read (as root: the processes are not dumpable).  Read a
# MiB at a time; mappings over 1 GiB (a sanitizer's shadow, reserved and
# untouched) are skipped.
mem_has() {
	python3 - "$1" "$KEY" <<'PY'
import sys
pid, key = sys.argv[1], sys.argv[2].encode()
found = scanned = 0
with open("/proc/%s/maps" % pid) as maps, open("/proc/%s/mem" % pid, "rb", 0) as mem:
    for line in maps:
        f = line.split()
        if f[1][0] != "r" or (len(f) > 5 and f[5] in ("[vvar]", "[vsyscall]")):
            continue
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        if hi - lo > 1 << 30:
            continue
        tail, hit = b"", 0
        for off in range(lo, hi, 1 << 20):
            try:
                mem.seek(off)
                data = mem.read(min(1 << 20, hi - off))
            except (OSError, OverflowError, ValueError):
                break
            scanned += len(data)
            if key in tail + data:
                hit = 1
            tail = data[-len(key):]
        found += hit
print(found, scanned)
PY
}

make_repo "$T/repo"
script_base
script_set implementing 1 '{"delay": 4}'
mock_start openai
service_start

"$SUP" submit "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $? "submit exits 0"
in_flight() {
	[ "$(mock_q 'sum(1 for r in L if r["stage"] == "implementing" and r["turn"] == 1)')" = 1 ]
}
wait_for 60 in_flight ||
	bail "the worker did not ask for implementing turn 1"
W=$(svc_worker)
M=$(pgrep -P "$SVC" -x orch-model)
like "$W" '^[0-9]+$' "the worker is running"
like "$M" '^[0-9]+$' "one model process runs, the service's child"

# The network.
isnt_net=$([ "$(readlink "/proc/$W/ns/net")" != "$(readlink "/proc/$SVC/ns/net")" ] && echo yes)
is "$isnt_net" yes "the worker is in a network namespace of its own"
is "$(tail -n +3 "/proc/$W/net/dev" | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')" "lo " \
	"its only interface is lo"
is "$(readlink "/proc/$M/ns/net")" "$(readlink "/proc/$SVC/ns/net")" \
	"the model process has the host's network"

# The key and libcurl.
is "$(tr '\0' '\n' <"/proc/$W/environ" | grep -c -- "$KEY")" 0 \
	"the worker's environment has no API key"
is "$(grep -c libcurl "/proc/$W/maps")" 0 "the worker has not loaded libcurl"
like "$(grep -c libcurl "/proc/$M/maps")" '^[1-9]' "the model process has"
read -r wfound wscanned <<<"$(mem_has "$W")"
read -r mfound mscanned <<<"$(mem_has "$M")"
is "$wfound" 0 "the API key is nowhere in the worker's memory"
like "$wscanned" '^[0-9]{6,}$' "(its memory was read: $wscanned bytes)"
like "$mfound" '^[1-9]' "the same scan finds the key in the model process"

# Kill the model process mid-call.
kill -9 "$M"
wait_for 120 state_is 1 completed
is "$(state_of 1)" completed "the task completes after the kill"
M2=$(pgrep -P "$SVC" -x orch-model)
like "$M2" '^[0-9]+$' "a model process runs again"
ok "$([ "$M2" != "$M" ]; echo $?)" "it is another one"
like "$(cat "$T/service.log")" "model process $M: it exited; starting another in [0-9]+ ms \(1 call in flight asked again\)" \
	"the service log says it was restarted and the call asked again"
is "$(mock_q 'sorted((r["stage"], r["turn"], r["n"]) for r in L)')" \
	"[('implementing', 0, 1), ('implementing', 1, 1), ('implementing', 1, 2), ('implementing', 2, 1), ('planning', 0, 1), ('planning', 1, 1), ('reviewing', 0, 1), ('reviewing', 1, 1)]" \
	"only the call in flight was asked twice"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='reply'")" 7 \
	"each reply is journaled once"
check "the service is still up" "$SUP" list
check_no_key 1
done_testing
