#!/bin/bash
# The whole test suite, as CI runs it (after contrib/setup.sh has built
# build/):
#   1. every test (unit, integration, sandbox) on the normal build;
#   1b. the multi-node suite (tests/multinode: several services on a
#      PostgreSQL cluster of each test's own), one test at a time; without
#      PostgreSQL 15 its tests skip, except under CI, where they fail;
#   2. every test but the multi-node suite again under AddressSanitizer + UndefinedBehaviorSanitizer,
#      with leak checking, in build-asan/ (a report anywhere fails the run);
#   3. the integration and chaos suites again on PostgreSQL: a throwaway
#      PostgreSQL 15 cluster (tests/pg/cluster.sh), a database per test;
#      ORCH_TEST_NO_PG=1 leaves this out, for a developer without
#      PostgreSQL, and the run says so (CI refuses it);
#   4. the hostile-model chaos run (tests/chaos/hostile.sh, 200 tasks);
#   5. each libFuzzer target for FUZZ_SECONDS (default 20) on its corpus, in
#      build-fuzz/ (clang);
#   6. the style checks (clang-format --dry-run, shellcheck) and the static
#      analysis pass (clang-tidy with .clang-tidy).
# It ends with one line "N passed, N failed" counting every test of 1 to 3
# and each step of 3 to 6.  --quick runs step 1 only.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
passed=0
failed=0
quick=0
[ "${1:-}" = --quick ] && quick=1

# count BUILD: add the results of the last meson test run in BUILD.
count() {
	local p f
	read -r p f < <(python3 - "$1/meson-logs/testlog.json" <<'PY'
import json, sys
p = f = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL", "SKIP"):
            p += 1
        else:
            f += 1
except FileNotFoundError:
    f = 1
print(p, f)
PY
)
	passed=$((passed + p))
	failed=$((failed + f))
}

step() { # NAME STATUS
	if [ "$2" -eq 0 ]; then
		passed=$((passed + 1))
		echo "== $1: ok"
	else
		failed=$((failed + 1))
		echo "== $1: FAILED"
	fi
}

# pg_tests: the integration and chaos suites on a PostgreSQL cluster of their
# own (each test makes and drops its database there: tests/integration/
# lib.sh), then the unit tests that read ORCH_TEST_PG_URL (the store's).
pg_tests() {
	local t0=$SECONDS left
	# shellcheck source=tests/pg/cluster.sh
	. tests/pg/cluster.sh
	if ! pg_available; then
		echo "no PostgreSQL 15 in $PG_BINDIR: bash contrib/setup.sh test installs it (ORCH_TEST_NO_PG=1 leaves this pass out)"
		step "PostgreSQL pass" 1
		return
	fi
	if ! pg_cluster_start; then
		step "PostgreSQL cluster" 1
		return
	fi
	# (The old log goes first: a run that writes none, such as one naming
	# no test, must count as a failure, not as the last run again.)
	rm -f build/meson-logs/testlog.json
	ORCH_TEST_PG_URL=$PG_CLUSTER_URL meson test -C build --print-errorlogs \
		--suite integration --suite chaos
	count build
	# The unit tests are registered without their test- prefix.
	# shellcheck disable=SC2046 # test names: words by design
	set -- $(grep -l ORCH_TEST_PG_URL tests/test-*.c | xargs -r -n1 basename |
		sed 's/^test-//; s/\.c$//')
	if [ $# -gt 0 ]; then
		rm -f build/meson-logs/testlog.json
		ORCH_TEST_PG_URL=$PG_CLUSTER_URL meson test -C build \
			--print-errorlogs "$@"
		count build
	fi
	# Every test dropped the database it made.
	left=$(psql -XAtq "$PG_CLUSTER_URL" -c "SELECT datname FROM pg_database
		WHERE datname NOT IN ('postgres', 'template0', 'template1')")
	[ -z "$left" ] || echo "databases left behind: $left"
	step "no test database left behind" "$([ -z "$left" ]; echo $?)"
	pg_cluster_stop
	echo "== PostgreSQL pass: $((SECONDS - t0)) s"
}

echo "== tests (build/)"
meson test -C build --print-errorlogs --no-suite multinode
count build

if [ $quick -eq 0 ]; then
	echo "== multi-node suite (build/, a PostgreSQL cluster per test)"
	t0=$SECONDS
	rm -f build/meson-logs/testlog.json
	meson test -C build --print-errorlogs --suite multinode \
		--num-processes 1
	count build
	echo "== multi-node suite: $((SECONDS - t0)) s"
fi

if [ $quick -eq 0 ]; then
	echo "== tests under ASan+UBSan (build-asan/)"
	if [ ! -f build-asan/build.ninja ]; then
		meson setup build-asan -Db_sanitize=address,undefined \
			-Db_lundef=false >/dev/null
	fi
	reports=$(mktemp -d)
	if ninja -C build-asan >/dev/null; then
		ASAN_OPTIONS="detect_leaks=1:log_path=$reports/asan" \
		UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan" \
			meson test -C build-asan --print-errorlogs \
			--no-suite multinode
		count build-asan
		# LSan's "Unable to get registers from thread N" (a thread
		# that was exiting when the leak check stopped the process;
		# LSan then takes all its memory as reachable) is not a
		# finding: a file with nothing else is shown, not counted.
		n=0
		for f in "$reports"/*; do
			[ -f "$f" ] || continue
			if grep -qvE '^==[0-9]+==Unable to get registers from thread [0-9]+\.$' "$f"; then
				n=$((n + 1))
				head -40 "$f"
			else
				echo "# not a finding: $(tr '\n' ' ' <"$f" | cut -c1-200)"
			fi
		done
		step "no sanitizer reports ($n)" "$n"
	else
		step "sanitizer build" 1
	fi
	rm -rf "$reports"

	echo "== tests on PostgreSQL (build/, a throwaway cluster)"
	if [ -n "${ORCH_TEST_NO_PG:-}" ] && [ -n "${CI:-}" ]; then
		step "PostgreSQL pass (ORCH_TEST_NO_PG is for developers, not CI)" 1
	elif [ -n "${ORCH_TEST_NO_PG:-}" ]; then
		echo "== PostgreSQL pass: SKIPPED (ORCH_TEST_NO_PG=$ORCH_TEST_NO_PG)"
	else
		pg_tests
	fi

	# 200 tasks on a model that abuses every tool (tests/chaos/hostile.sh),
	# on the normal build; a few minutes.  HOSTILE_SEED replays a run.
	echo "== hostile-model chaos (build/, ${HOSTILE_TASKS:=200} tasks)"
	hlog=$(mktemp)
	ORCH_TESTS_DIR="$top/tests" \
	ORCH_SUPERVISOR="$top/build/supervisor/orch-supervisor" \
	ORCH_WORKER_PATH="$top/build/worker/orch-worker" \
	ORCH_SANDBOX_PROFILES_DIR="$top/sandbox-profiles" \
		tests/chaos/hostile.sh -n "$HOSTILE_TASKS" \
		${HOSTILE_SEED:+-s "$HOSTILE_SEED"} >"$hlog" 2>&1
	rc=$?
	grep -E '^# (hostile chaos|tasks ended|elapsed)' "$hlog"
	# The failing invariants, each with what it found.
	[ $rc -eq 0 ] || awk '/^not ok/ {n = 8; print; next}
		/^ok/ {n = 0} n > 0 && /^#/ {print; n--}
		/^Bail out!/ {print}' "$hlog" | cut -c1-300
	step "hostile chaos" $rc
	rm -f "$hlog"

	echo "== fuzzing (build-fuzz/, ${FUZZ_SECONDS:=20} s each)"
	if [ ! -f build-fuzz/build.ninja ]; then
		CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=true \
			-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	fi
	if ninja -C build-fuzz tests/fuzz/fuzz-proto tests/fuzz/fuzz-sse \
		tests/fuzz/fuzz-profile tests/fuzz/fuzz-config \
		>/dev/null; then
		for t in proto sse profile config; do
			corpus=$(mktemp -d)
			cp -r "tests/fuzz/corpus/$t/." "$corpus/"
			build-fuzz/tests/fuzz/fuzz-$t -max_total_time="$FUZZ_SECONDS" \
				-print_final_stats=1 "$corpus" >"$corpus.log" 2>&1
			rc=$?
			grep -E "stat::number_of_executed_units|ERROR|SUMMARY" \
				"$corpus.log" | head -5
			# A crash: what it was and where, to reproduce from.
			[ $rc -eq 0 ] || grep -vE '^(#|INFO:|stat::)' \
				"$corpus.log" | head -60
			step "fuzz-$t" $rc
			rm -rf "$corpus" "$corpus.log"
		done
	else
		step "fuzz build" 1
	fi

	echo "== style (clang-format, shellcheck)"
	fmt=0
	for f in $(git ls-files '*.c' '*.h'); do
		clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || {
			echo "not formatted: $f (clang-format -i $f)"
			fmt=1
		}
	done
	step "clang-format" $fmt
	# shellcheck disable=SC2046 # file names: words by design
	shellcheck -S warning -f gcc $(git ls-files '*.sh')
	step "shellcheck" $?

	echo "== static analysis (clang-tidy)"
	srcs=$(git ls-files 'common/*.c' 'proto/*.c' 'supervisor/*.c' \
		'worker/*.c' 2>/dev/null || ls common/*.c proto/*.c \
		supervisor/*.c worker/*.c)
	tidy=0
	for f in $srcs; do
		# WarningsAsErrors: any finding makes clang-tidy exit non-zero.
		if ! out=$(clang-tidy -p build --quiet "$f" 2>/dev/null); then
			printf '%s\n' "$out" | grep -E "(warning|error):"
			tidy=1
		fi
	done
	step "clang-tidy" $tidy
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
