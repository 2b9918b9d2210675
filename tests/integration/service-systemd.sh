#!/bin/bash
# systemd: the notify protocol (READY, STATUS, WATCHDOG, STOPPING) against
# a test socket, abstract and path; systemd-analyze verify on the units.
SRC=$(cd "$ORCH_TESTS_DIR/.." && pwd)
. "$ORCH_TESTS_DIR/integration/lib.sh"

# listen NAME: an AF_UNIX datagram listener writing each message to a file.
listen() {
	python3 - "$1" "$T/notify.$2" <<'PY' &
import socket, sys
name, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name[1:] if name.startswith("@") else name)
open(out + ".ready", "w").close()
with open(out, "a", buffering=1) as f:
    while True:
        f.write(s.recv(4096).decode().replace("\n", "|") + "\n")
PY
	LST=$!
	wait_for 5 test -e "$T/notify.$2.ready"
}

for kind in abstract path; do
	if [ $kind = abstract ]; then
		name="@orch-test-$$"
	else
		name="$T/notify.sock"
	fi
	listen "$name" $kind
	NOTIFY_SOCKET=$name WATCHDOG_USEC=400000 "$SUP" serve >>"$T/service.log" 2>&1 &
	SVC=$!
	wait_for 10 grep -q READY=1 "$T/notify.$kind"
	check "READY=1 on the $kind socket" grep -qx 'READY=1' "$T/notify.$kind"
	wait_for 10 grep -q STATUS= "$T/notify.$kind"
	like "$(grep STATUS= "$T/notify.$kind" | head -1)" \
		'^STATUS=0 running, 0 queued, 0 awaiting approval$' "... STATUS= with the counts"
	sleep 1
	n=$(grep -c WATCHDOG=1 "$T/notify.$kind")
	check "... WATCHDOG=1 at half of WATCHDOG_USEC ($n pings in ~1 s)" test "$n" -ge 3
	service_kill TERM
	wait_for 5 grep -q STOPPING=1 "$T/notify.$kind"
	check "... STOPPING=1 on SIGTERM" grep -qx 'STOPPING=1' "$T/notify.$kind"
	kill "$LST"
	wait "$LST" 2>/dev/null
done

# STATUS follows the work: a queued task shows up.
listen "$T/notify2.sock" status
make_repo "$T/repo"
"$SUP" submit "Write a" --repo "$T/repo" >/dev/null
NOTIFY_SOCKET="$T/notify2.sock" "$SUP" serve >>"$T/service.log" 2>&1 &
SVC=$!
wait_for 30 state_is 1 plan_awaiting_approval
wait_for 5 grep -q '1 awaiting approval' "$T/notify.status"
like "$(tail -1 "$T/notify.status")" 'STATUS=0 running, 0 queued, 1 awaiting approval' \
	"STATUS= follows the counts"
check "no WATCHDOG=1 without WATCHDOG_USEC" sh -c "! grep -q WATCHDOG $T/notify.status"
service_kill TERM
kill "$LST"
wait "$LST" 2>/dev/null

# systemd-analyze verify, with ExecStart pointing at the built binary.
if command -v systemd-analyze >/dev/null 2>&1; then
	for unit in orch-supervisor.service orch-supervisor-user.service; do
		sed "s|/usr/local/bin/orch-supervisor|$SUP|" "$SRC/contrib/$unit" >"$T/$unit"
		check "systemd-analyze verify $unit" systemd-analyze verify --man=no "$T/$unit"
	done
else
	echo "ok $((tap_n += 1)) # SKIP systemd-analyze is not installed"
	echo "ok $((tap_n += 1)) # SKIP systemd-analyze is not installed"
fi
check "the units use Type=notify" grep -q '^Type=notify' "$SRC/contrib/orch-supervisor.service"
check "... and neither PrivateUsers= nor RestrictNamespaces= (bwrap)" \
	sh -c "! grep -Eq '^(PrivateUsers|RestrictNamespaces)=' $SRC/contrib/orch-supervisor.service $SRC/contrib/orch-supervisor-user.service"
check "the bash completion loads" bash -c ". $SRC/contrib/orch-supervisor.bash-completion && complete -p orch-supervisor"

# The man page names every command and every variable that --help names.
"$SUP" --help >"$T/help"
missing=
for w in $(grep -oE '^  [a-z]+' "$T/help" | sed 's/^ *//') \
	$(grep -oE '\b(ORCH|DB)_[A-Z_]+' "$T/help" | sort -u); do
	grep -q -- "$w" "$SRC/contrib/orch-supervisor.1" || missing="$missing $w"
done
is "$missing" "" "the man page covers every command and variable of --help"
if command -v man >/dev/null 2>&1 || command -v groff >/dev/null 2>&1; then
	check "the man page renders" sh -c "groff -man -Tutf8 -z $SRC/contrib/orch-supervisor.1 2>&1 | (! grep -i error)"
fi

done_testing
