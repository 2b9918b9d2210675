#!/bin/bash
# The whole test suite, as CI runs it (after contrib/setup.sh has built
# build/):
#   1. every test (unit, integration, sandbox) on the normal build;
#   2. every test again under AddressSanitizer + UndefinedBehaviorSanitizer,
#      with leak checking, in build-asan/ (a report anywhere fails the run);
#   3. the hostile-model chaos run (tests/chaos/hostile.sh, 200 tasks);
#   4. each libFuzzer target for FUZZ_SECONDS (default 20) on its corpus, in
#      build-fuzz/ (clang);
#   5. the style checks (clang-format --dry-run, shellcheck) and the static
#      analysis pass (clang-tidy with .clang-tidy).
# It ends with one line "N passed, N failed" counting every test of 1 and 2
# and each step of 3 to 5.  --quick runs step 1 only.
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

echo "== tests (build/)"
meson test -C build --print-errorlogs
count build

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
			meson test -C build-asan --print-errorlogs
		count build-asan
		n=$(find "$reports" -type f | wc -l)
		[ "$n" -eq 0 ] || find "$reports" -type f -exec head -40 {} \;
		step "no sanitizer reports ($n)" "$n"
	else
		step "sanitizer build" 1
	fi
	rm -rf "$reports"

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
