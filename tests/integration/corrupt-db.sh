#!/bin/bash
# A damaged database is refused with a message that names it and says what
# to do, and it is left exactly as it was.
. "$ORCH_TESTS_DIR/integration/lib.sh"
if on_pg; then
	echo "1..0 # SKIP damage to the SQLite file; PostgreSQL's faults are the pg-*.sh tests'"
	exit 0
fi

DB="$ORCH_STATE_DIR/tasks.db"
what_to_do='(backup|restore|move it aside|remove|delete|rename)'

# refused NAME: serve and list refuse $DB and leave it alone.
refused() {
	local name=$1 rc
	cp "$DB" "$T/copy.db"
	timeout 20 "$SUP" serve >"$T/serve.out" 2>&1
	rc=$?
	check "$name: serve exits non-zero (status $rc)" test "$rc" -ne 0 -a "$rc" -ne 124
	like "$(cat "$T/serve.out")" "$DB" "$name: serve names the file"
	like "$(cat "$T/serve.out")" "$what_to_do" "$name: serve says what to do"
	check "$name: the file is unchanged after serve" cmp "$DB" "$T/copy.db"
	check "$name: no WAL was created beside it" test ! -s "$DB-wal"
	check "$name: no control socket is left behind" test ! -S "$ORCH_STATE_DIR/orch.sock"
	"$SUP" list >"$T/list.out" 2>&1
	rc=$?
	is "$rc" 1 "$name: list exits 1"
	like "$(cat "$T/list.out")" "$DB" "$name: list names the file"
	like "$(cat "$T/list.out")" "$what_to_do" "$name: list says what to do"
	"$SUP" show 1 >"$T/show.out" 2>&1
	is "$?" 1 "$name: show exits 1"
	check "$name: the file is unchanged after list and show" cmp "$DB" "$T/copy.db"
}

mkdir -p "$ORCH_STATE_DIR"
chmod 700 "$ORCH_STATE_DIR"
head -c 65536 /dev/urandom >"$DB"
refused "random bytes"

# A real database with page 2 overwritten.
rm -f "$DB" "$DB-wal" "$DB-shm"
make_repo "$T/repo"
service_start
for i in 1 2 3; do
	"$SUP" submit "Task $i" --repo "$T/repo" >/dev/null
done
service_kill TERM
sqlite3 "$DB" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null
is "$(sq 'SELECT count(*) FROM tasks')" 3 "the service made a database with 3 tasks"
db_intact "it is intact before the damage"
rm -f "$DB-wal" "$DB-shm"
head -c 4096 /dev/urandom | dd of="$DB" bs=4096 seek=1 conv=notrunc status=none
refused "page 2 damaged"
done_testing
