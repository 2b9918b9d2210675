#!/bin/bash
# submit and run take a long request from a file (--file F) or standard
# input (-), within one limit that the CLI, the control API and the task
# store agree on, and refuse what is not UTF-8 text.
. "$ORCH_TESTS_DIR/integration/lib.sh"

make_repo "$T/repo"
script_write_a
SOCK="$ORCH_STATE_DIR/orch.sock"
len_of() { sq "SELECT $(sql_octets request) FROM tasks WHERE id=$1"; }

# A spec of 200 KiB: over the 128 KiB one argument may be.
python3 -c 'import sys; sys.stdout.write("".join("Spec line %06d: do the thing.\n" % i for i in range(6700)))' >"$T/spec.txt"
size=$(($(stat -c %s "$T/spec.txt") - 1))
"$SUP" submit --file "$T/spec.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 0 "submit --file of $size bytes exits 0 ($(head -c 200 "$T/out"))"
is "$(len_of 1)" "$size" "... the whole file is the request, its last newline dropped"
printf 'From standard input\n' | "$SUP" submit - --repo "$T/repo" >"$T/out" 2>&1
is "$?" 0 "submit - reads standard input"
is "$(sq 'SELECT request FROM tasks WHERE id=2')" "From standard input" "... and it is the request"
"$SUP" submit --file - --repo "$T/repo" <"$T/spec.txt" >"$T/out" 2>&1
is "$?" 0 "submit --file - reads standard input too"
is "$(len_of 3)" "$size" "... all of it"

python3 -c 'import sys; sys.stdout.write("x" * (512 * 1024 + 1))' >"$T/big.txt"
"$SUP" submit --file "$T/big.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 1 "a request over 512 KiB exits 1"
like "$(cat "$T/out")" 'over 524288 bytes' "... saying the limit"
printf 'caf\351\n' >"$T/latin1.txt"
"$SUP" submit --file "$T/latin1.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 1 "a Latin-1 request exits 1"
like "$(cat "$T/out")" 'not valid UTF-8' "... saying it is not UTF-8"
printf 'a\0b' >"$T/nul.txt"
"$SUP" submit --file "$T/nul.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 1 "a request with a NUL byte exits 1"
"$SUP" submit --file "$T/missing.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 1 "a missing file exits 1"
like "$(cat "$T/out")" 'missing\.txt' "... naming it"
"$SUP" submit "both" --file "$T/spec.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 2 "a request and --file together is a usage error"
is "$(sq 'SELECT count(*) FROM tasks')" 3 "none of the refused ones made a task"

# What else a person gives a task goes into the same JSON: bounded, UTF-8.
"$SUP" reject 1 --reason "$(head -c 70000 /dev/zero | tr '\0' r)" >"$T/out" 2>&1
is "$?" 1 "a reason over 64 KiB is refused"
like "$(cat "$T/out")" 'reason is 70000 bytes, over the limit of 65536' "... saying the limit"
"$SUP" reject 1 --reason "$(printf 'caf\351')" >"$T/out" 2>&1
like "$(cat "$T/out")" 'reason is not valid UTF-8' "a Latin-1 reason is refused"
"$SUP" approve 1 --by "$(printf 'caf\351')" >"$T/out" 2>&1
like "$(cat "$T/out")" 'name \(--by\) is not valid UTF-8' "a Latin-1 --by is refused"

# Through the service: a request at the limit with many characters that
# JSON escapes (ESC is 6 bytes as \u001b) still fits the API's body limit.
python3 -c 'import sys; sys.stdout.write("a\x1b" * (256 * 1024 - 1) + "az")' >"$T/esc.txt"
service_start
"$SUP" submit --file "$T/esc.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 0 "through the service, a 512 KiB request that escapes to 1.7 MB is taken ($(head -c 200 "$T/out"))"
is "$(len_of 4)" $((512 * 1024)) "... whole"
"$SUP" submit --file "$T/big.txt" --repo "$T/repo" >"$T/out" 2>&1
is "$?" 1 "through the service, one byte over is refused"
like "$(cat "$T/out")" 'over 524288 bytes' "... saying the limit"
python3 -c 'import json; print(json.dumps({"request": "y" * (512 * 1024 + 1), "repo": "'"$T/repo"'"}))' >"$T/big.json"
code=$(curl -s --max-time 10 --unix-socket "$SOCK" -H 'Content-Type: application/json' \
	--data-binary @"$T/big.json" -o "$T/body" -w '%{http_code}' http://orch/v1/tasks)
is "$code" 400 "the API refuses a request over the limit with 400"
like "$(jq -r .error "$T/body" 2>&1)" 'is 524289 bytes, over the limit of 524288' "... and says why in JSON"
service_kill TERM

# run takes standard input as well.
printf 'Write a.txt\n' | timeout 60 "$SUP" run - --repo "$T/repo" --auto-approve all >"$T/out" 2>&1
is "$?" 0 "run - reads the request from standard input"
is "$(state_of "$(sq 'SELECT max(id) FROM tasks')")" completed "... and drives the task to completion"

done_testing
