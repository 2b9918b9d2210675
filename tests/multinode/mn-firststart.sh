#!/bin/bash
# Three first starts at once on an empty database, several rounds (issue
# 13: "migration to schema version 6 failed: deadlock detected"): every
# round, all three nodes come up, one of them makes the schema, and none
# logs a failed migration or a deadlock.
. "$ORCH_TESTS_DIR/multinode/lib.sh"
ROUNDS=${MN_ROUNDS:-5}

mn_setup
up() { [ -S "$T/n-$1/orch.sock" ] || ! kill -0 "${NODE[$1]}" 2>/dev/null; }
for r in $(seq 1 "$ROUNDS"); do
	for n in a b c; do
		echo "# mn: round $r" >>"$T/$n.log"
		node_spawn "$n"
	done
	for n in a b c; do
		wait_for 20 up "$n"
		check "round $r: node $n starts with the others" kill -0 "${NODE[$n]}"
	done
	is "$(sq "SELECT value FROM meta WHERE key = 'schema_version'")" 6 \
		"round $r: the schema is made"
	for n in a b c; do
		node_stop "$n" TERM
	done
	# Empty again for the next round.
	sq 'DROP SCHEMA public CASCADE; CREATE SCHEMA public' >/dev/null ||
		mn_bail "cannot empty the database"
done
is "$(cat "$T"/[abc].log | grep -ci 'deadlock\|migration to schema' || true)" 0 \
	"no node logged a failed migration or a deadlock"
done_testing
