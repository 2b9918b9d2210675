#!/bin/bash
# The escape suite (escape.sh) as an unprivileged user, where it matters:
# a service running as a normal user is how it is meant to be deployed, and
# such a user has no cgroups to make (no delegation here), so this is where
# the limits without cgroups are tried: sized tmpfs, memfd_create and SysV
# shm refused, RLIMIT_NPROC per sandbox (a fork storm in one sandbox while
# another starts).  test-sandbox (next to the escape probe in the build
# tree) runs first as the same user; its results are reported by escape.sh.
#
# As root: creates the user orchtest if it is missing (useradd -m), and runs
# escape.sh as that user with the test's variables, a TMPDIR of its own, and
# the binaries, profiles and scripts where it can read them (copied to a
# scratch directory when a parent directory of theirs is closed to it).  Its
# TAP is this test's.  As any other user: runs escape.sh directly.
set -u
: "${ORCH_TESTS_DIR:?set by meson test}" "${ORCH_SUPERVISOR:?}" "${ORCH_WORKER_PATH:?}"
: "${ORCH_SANDBOX_PROFILES_DIR:?}"

if [ "$(id -u)" -ne 0 ]; then
	exec bash "$ORCH_TESTS_DIR/integration/escape.sh"
fi

USER_NAME=orchtest
skip() {
	echo "1..0 # SKIP $*"
	exit 0
}
if ! id "$USER_NAME" >/dev/null 2>&1; then
	useradd -m -s /bin/bash "$USER_NAME" >/dev/null 2>&1 ||
		skip "cannot create the user $USER_NAME (useradd)"
fi
command -v runuser >/dev/null 2>&1 || skip "runuser is missing"

W=$(mktemp -d /tmp/orch-unpriv.XXXXXX) || exit 1
trap 'rm -rf "$W"' EXIT
chmod 755 "$W"
mkdir -m 700 "$W/tmp"
chown "$USER_NAME:" "$W/tmp"

as_user() { runuser -u "$USER_NAME" -- "$@"; }

sup=$ORCH_SUPERVISOR worker=$ORCH_WORKER_PATH
profiles=$ORCH_SANDBOX_PROFILES_DIR tests=$ORCH_TESTS_DIR
probe=${ORCH_ESCAPE_PROBE:-}
tsb=
[ -n "$probe" ] && tsb=$(dirname "$(dirname "$probe")")/test-sandbox
[ -n "$tsb" ] && [ -x "$tsb" ] || tsb=
# What the user cannot reach is copied where it can (the binaries find
# nothing beside themselves: the worker and the profiles are named).
if ! as_user test -x "$sup" || ! as_user test -x "$worker"; then
	mkdir "$W/bin"
	cp "$sup" "$worker" "$W/bin/"
	chmod 755 "$W/bin" "$W/bin/"*
	sup=$W/bin/$(basename "$sup") worker=$W/bin/$(basename "$worker")
fi
if [ -n "$tsb" ] && { ! as_user test -x "$tsb" || ! as_user test -x "$probe"; }; then
	mkdir -p "$W/tbin"
	cp "$tsb" "$probe" "$W/tbin/"
	chmod 755 "$W/tbin" "$W/tbin/"*
	tsb=$W/tbin/test-sandbox probe=$W/tbin/$(basename "$probe")
fi
if ! as_user test -r "$profiles/implementing.profile"; then
	cp -r "$profiles" "$W/profiles"
	chmod -R a+rX "$W/profiles"
	profiles=$W/profiles
fi
if ! as_user test -r "$tests/integration/escape.sh" ||
	! as_user test -r "$tests/integration/lib.sh" ||
	! as_user test -r "$tests/pg/cluster.sh"; then
	mkdir -p "$W/tests/integration" "$W/tests/pg"
	cp "$tests/integration/escape.sh" "$tests/integration/lib.sh" "$W/tests/integration/"
	cp "$tests/pg/cluster.sh" "$W/tests/pg/"
	chmod -R a+rX "$W/tests"
	tests=$W/tests
fi

# Without unprivileged user namespaces bwrap cannot work for this user.
as_user bwrap --unshare-all --ro-bind / / true >/dev/null 2>&1 ||
	skip "bubblewrap does not work for $USER_NAME (unprivileged user namespaces off?)"

cd "$W/tmp" || exit 1
tap=
if [ -n "$tsb" ]; then
	tap=$W/tmp/test-sandbox.tap
	as_user env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
		TMPDIR="$W/tmp" "$tsb" "$profiles" "$probe" >"$tap" 2>&1
	chmod 644 "$tap"
fi
as_user env -i \
	PATH=/usr/local/bin:/usr/bin:/bin \
	HOME="$(getent passwd "$USER_NAME" | cut -d: -f6)" \
	LANG=C.UTF-8 \
	TMPDIR="$W/tmp" \
	NO_COLOR=1 \
	${ESCAPE_SHOW:+ESCAPE_SHOW=1} \
	${tap:+ESCAPE_SANDBOX_TAP="$tap"} \
	ORCH_SUPERVISOR="$sup" \
	ORCH_WORKER_PATH="$worker" \
	ORCH_SANDBOX_PROFILES_DIR="$profiles" \
	ORCH_TESTS_DIR="$tests" \
	${ORCH_TEST_PG_URL:+ORCH_TEST_PG_URL="$ORCH_TEST_PG_URL"} \
	bash "$tests/integration/escape.sh"
