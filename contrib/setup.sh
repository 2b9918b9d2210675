#!/bin/bash
# Install what orch-supervisor needs on Debian 12 (only what is missing),
# build it, and then run the demo or the tests:
#
#   bash contrib/setup.sh demo    a whole task on the built-in scripted model
#   bash contrib/setup.sh test    the whole test suite
#   bash contrib/setup.sh         just install and build
#
# Safe to run again: it installs nothing that is already there and reuses the
# build directory (build/).
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
	gcc pkg-config meson ninja-build python3 git bubblewrap sqlite3 curl
	procps libsqlite3-dev libevent-dev libcurl4-openssl-dev libmsgpack-dev
	libjansson-dev libseccomp-dev libpq-dev
)
if [ "${1:-}" = test ]; then
	# The fuzz targets and the sanitizer runs want clang and its runtime;
	# the style checks clang-format and shellcheck.
	packages+=(clang clang-tidy clang-format shellcheck libclang-rt-14-dev)
	# tests/integration/metrics.sh reads /metrics with the Prometheus
	# client's own parser.
	packages+=(python3-prometheus-client)
	# The console's browser tests (tests/browser/): headless Chromium
	# driven by selenium.
	packages+=(chromium chromium-driver python3-selenium)
	# The suite's second pass runs on a throwaway PostgreSQL cluster that
	# tests/pg/cluster.sh makes with these binaries (its client brings
	# pg_dump, which `backup` runs on PostgreSQL; ss: which process holds
	# a connection to it, for the chaos test).
	packages+=(postgresql-15 iproute2)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
	# The package's postinst makes a 15/main cluster and may start it;
	# the tests make their own, so one started just now is stopped again.
	case " ${missing[*]} " in
	*" postgresql-15 "*)
		$sudo pg_ctlcluster 15 main stop 2>/dev/null || true
		;;
	esac
fi

if [ ! -f build/build.ninja ]; then
	meson setup build >/dev/null
fi
ninja -C build >/dev/null
echo "setup: built build/supervisor/orch-supervisor"

case "${1:-}" in
demo)
	exec bash contrib/demo.sh
	;;
test)
	exec bash contrib/run-tests.sh
	;;
"") ;;
*)
	echo "usage: bash contrib/setup.sh [demo|test]" >&2
	exit 2
	;;
esac
