# Helpers for the browser tests: skip when the browser is missing, run a
# selenium script whose TAP lines join the test's.  Sourced after lib.sh
# and console-lib.sh.  Not a test itself.
BROWSER_DIR="$D/browser"
# Debian's python3-selenium is in the system python's path.
BPY=/usr/bin/python3
[ -x "$BPY" ] || BPY=python3
SHOTS="${1:-$T}/console-shots" # $1: the build directory

# browser_check: skip the test (TAP) when chromium or selenium is missing.
browser_check() {
	if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null ||
		! "$BPY" -c 'import selenium' 2>/dev/null; then
		echo "1..0 # SKIP chromium, chromium-driver or python3-selenium missing (contrib/setup.sh test)"
		exit 0
	fi
}

# browser_run SCRIPT [VAR=VALUE...]: run the selenium script; its checks are
# numbered after ours.
browser_run() {
	local script=$1 line
	shift
	# The sanitizers' options are for our programs, not the browser.
	env -u ASAN_OPTIONS -u UBSAN_OPTIONS -u LSAN_OPTIONS "$@" CONSOLE_URL="$URL" CONSOLE_TOKEN="$(console_token)" SHOTS="$SHOTS" \
		PYTHONPATH="$BROWSER_DIR" HOME="$T/home" \
		"$BPY" "$BROWSER_DIR/$script" >"$T/browser.out" 2>"$T/browser.err"
	ok $? "$script ran to its end"
	while IFS= read -r line; do
		case $line in
		"ok "*) ok 0 "${line#ok * - }" ;;
		"not ok "*) ok 1 "${line#not ok * - }" ;;
		"#"* | "Bail out!"*) echo "# $line" ;;
		esac
	done <"$T/browser.out"
	[ -s "$T/browser.err" ] && sed 's/^/# /' "$T/browser.err" | tail -20
	return 0
}
