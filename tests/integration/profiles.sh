#!/bin/bash
# The sandbox profiles are validated when the service starts: a bad one is
# an error naming the file and the line, and nothing runs; doctor says the
# same.  The shipped profiles load.
. "$ORCH_TESTS_DIR/integration/lib.sh"

P="$T/profiles"
mkdir -p "$P"
cp "$ORCH_SANDBOX_PROFILES_DIR"/*.profile "$P/"
SHIPPED=$ORCH_SANDBOX_PROFILES_DIR
export ORCH_SANDBOX_PROFILES_DIR="$P"

"$SUP" doctor >"$T/doctor.out" 2>&1
like "$(grep -i profile "$T/doctor.out" | head -1)" '^ok' "doctor: the shipped profiles load"

printf 'rlimit as lots\n' >>"$P/implementing.profile"
line=$(wc -l <"$P/implementing.profile")
timeout 10 "$SUP" serve >"$T/serve.out" 2>&1
is "$?" 1 "serve refuses to start with a bad profile"
like "$(cat "$T/serve.out")" "implementing\.profile:$line: " "the message names the file and the line"
check "no control socket was left" test ! -e "$ORCH_STATE_DIR/orch.sock"

make_repo "$T/repo"
timeout 20 "$SUP" run "Anything" --repo "$T/repo" --auto-approve all </dev/null >"$T/run.out" 2>&1
ok "$([ $? -ne 0 ]; echo $?)" "run refuses too"
like "$(cat "$T/run.out")" "implementing\.profile:$line: " "... naming the file and the line"

"$SUP" doctor >"$T/doctor.out" 2>&1
is "$?" 1 "doctor exits 1"
like "$(cat "$T/doctor.out")" "FAIL.*implementing.*profile:$line" "doctor names the bad profile"

printf 'workspace rw\n' >"$P/planning.profile.tmp"
rm "$P/verifying.profile"
sed -i '$d' "$P/implementing.profile"
timeout 10 "$SUP" serve >"$T/serve.out" 2>&1
is "$?" 1 "a missing profile is refused too"
like "$(cat "$T/serve.out")" "verifying\.profile" "... naming it"

# The tmpfs sizes must fit in the command's memory budget.
cp "$SHIPPED"/*.profile "$P/"
rm -f "$P/planning.profile.tmp"
sed -i 's/^memory .*/memory 128M/' "$P/implementing.profile"
timeout 10 "$SUP" serve >"$T/serve.out" 2>&1
is "$?" 1 "serve refuses tmpfs_size + shm_size over memory"
like "$(cat "$T/serve.out")" "implementing\.profile: tmpfs_size \+ shm_size \(320 MiB\) exceed memory \(128 MiB\)" \
	"... saying by how much"
cp "$SHIPPED"/*.profile "$P/"
"$SUP" doctor >"$T/doctor.out" 2>&1
like "$(grep 'sandbox limits:' "$T/doctor.out")" '^(ok  |WARN) sandbox limits: (cgroup v[12] \(memory|no cgroup \()' \
	"doctor says what bounds a command's memory and processes"
done_testing
