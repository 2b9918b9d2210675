#!/bin/bash
# A throwaway PostgreSQL cluster for the tests: initdb in a temporary
# directory, trust authentication, a unix socket in that directory and no TCP
# listener at all, so that clusters of tests running side by side never meet
# and nothing on the machine can reach them.
#
# Sourced, it gives functions (the pg-*.sh fault tests use them for a cluster
# of their own):
#   pg_available                 0 when initdb, pg_ctl and psql are there
#   pg_cluster_start             start one; sets PG_CLUSTER_DIR, PG_CLUSTER_URL
#   pg_cluster_ctl ARGS...       pg_ctl on it (restart -m immediate, stop...)
#   pg_cluster_stop              stop it and remove its directory
#   pg_url_db URL NAME           URL with its database replaced by NAME
# Run, it wraps one command:
#   tests/pg/cluster.sh run COMMAND...
# starts a cluster, runs COMMAND with ORCH_TEST_PG_URL set to the cluster's
# URL (database postgres, superuser postgres), stops the cluster and exits
# with COMMAND's status.
#
# As root the server runs as the postgres user that Debian's package makes
# (PostgreSQL refuses to run as root); ORCH_TEST_PG_USER names another.  The
# binaries are PostgreSQL 15's (ORCH_TEST_PG_BINDIR names others).
# ORCH_TEST_PG_SETTINGS holds more postgresql.conf lines, after the ones
# below so that they win: the benchmark (tests/bench/run.py --stores pg)
# gives "fsync = on" there, since a comparison with SQLite's fsyncs is
# unfair without it.
#
# The cluster goes away with the process that started it, however it ends:
# a watchdog in a session of its own (so that a test runner killing the
# test's process group does not take it first) waits for that process and
# then stops the server and removes the directory.  An orderly
# pg_cluster_stop does the same at once.

PG_BINDIR=${ORCH_TEST_PG_BINDIR:-/usr/lib/postgresql/15/bin}
PG_CLUSTER_DIR=
PG_CLUSTER_URL=

pg_available() {
	[ -x "$PG_BINDIR/initdb" ] && [ -x "$PG_BINDIR/pg_ctl" ] &&
		command -v psql >/dev/null 2>&1
}

# pg_as COMMAND...: COMMAND as the cluster's owner.
pg_as() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "${ORCH_TEST_PG_USER:-postgres}" -- "$@"
	else
		"$@"
	fi
}

pg_cluster_ctl() {
	pg_as "$PG_BINDIR/pg_ctl" -D "$PG_CLUSTER_DIR/data" -s -w -t 60 \
		-l "$PG_CLUSTER_DIR/server.log" "$@" </dev/null >/dev/null
}

# The settings live in postgresql.conf, not on pg_ctl's command line, so that
# a stop and a later plain start (the fault tests) bring the same server.
# fsync=off: the tests stop the server, never the machine; an immediate
# shutdown loses nothing that the kernel already has.
pg_cluster_start() {
	local d owner
	pg_available || {
		echo "pg_cluster_start: no PostgreSQL in $PG_BINDIR" >&2
		return 1
	}
	d=$(mktemp -d "${TMPDIR:-/tmp}/orch-pg.XXXXXX") || return 1
	owner=$BASHPID
	# The socket directory must be open to the tests (which may run as
	# another user than the server); the data directory is initdb's, 0700.
	chmod 755 "$d"
	if [ "$(id -u)" -eq 0 ]; then
		chown "${ORCH_TEST_PG_USER:-postgres}" "$d" || {
			rm -rf "$d"
			return 1
		}
	fi
	PG_CLUSTER_DIR=$d
	pg_watchdog "$owner" "$d"
	if ! pg_as "$PG_BINDIR/initdb" -D "$d/data" -U postgres \
		--auth=trust -E UTF8 --locale=C.UTF-8 \
		>"$d/initdb.log" 2>&1 </dev/null; then
		echo "pg_cluster_start: initdb failed:" >&2
		sed 's/^/  /' "$d/initdb.log" >&2
		pg_cluster_stop
		return 1
	fi
	pg_as tee -a "$d/data/postgresql.conf" >/dev/null <<EOF
listen_addresses = ''
unix_socket_directories = '$d'
port = 5432
fsync = off
max_connections = 200
log_line_prefix = '%m [%p] %a '
EOF
	if [ -n "${ORCH_TEST_PG_SETTINGS:-}" ]; then
		printf '%s\n' "$ORCH_TEST_PG_SETTINGS" |
			pg_as tee -a "$d/data/postgresql.conf" >/dev/null
	fi
	if ! pg_cluster_ctl start; then
		echo "pg_cluster_start: the server did not start:" >&2
		tail -20 "$d/server.log" >&2
		pg_cluster_stop
		return 1
	fi
	PG_CLUSTER_URL="postgresql:///postgres?host=$d&port=5432&user=postgres"
	return 0
}

# pg_watchdog OWNER DIR: stop the cluster in DIR once OWNER has gone.
pg_watchdog() {
	# shellcheck disable=SC2016 # expanded by the inner shell
	setsid bash -c '
		while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do
			sleep 0.5
		done
		[ -d "$2" ] || exit 0
		if [ -f "$2/data/postmaster.pid" ]; then
			if [ "$(id -u)" -eq 0 ]; then
				runuser -u "$4" -- "$3/pg_ctl" -D "$2/data" -s \
					-m immediate stop
			else
				"$3/pg_ctl" -D "$2/data" -s -m immediate stop
			fi
		fi
		rm -rf "$2"' pg-watchdog "$1" "$2" "$PG_BINDIR" \
		"${ORCH_TEST_PG_USER:-postgres}" </dev/null >/dev/null 2>&1 &
}

pg_cluster_stop() {
	[ -n "$PG_CLUSTER_DIR" ] || return 0
	if [ -f "$PG_CLUSTER_DIR/data/postmaster.pid" ]; then
		pg_cluster_ctl -m immediate stop 2>/dev/null
	fi
	rm -rf "$PG_CLUSTER_DIR"
	PG_CLUSTER_DIR=
	PG_CLUSTER_URL=
}

# pg_url_db URL NAME: the libpq URI URL naming database NAME instead (its
# host, port, user and options kept).  Only URIs: key=value strings have no
# single place to substitute.
pg_url_db() {
	printf '%s\n' "$1" |
		sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\\1/$2#"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -u
	if [ "${1:-}" != run ] || [ $# -lt 2 ]; then
		echo "usage: $0 run COMMAND..." >&2
		exit 2
	fi
	shift
	pg_cluster_start || exit 1
	trap pg_cluster_stop EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	ORCH_TEST_PG_URL=$PG_CLUSTER_URL "$@"
	exit $?
fi
