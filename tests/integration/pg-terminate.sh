#!/bin/bash
# The service's connection killed during COMMIT (pg_terminate_backend), three
# times in a row on the same step: each time the commit did not happen, the
# service must find that out (its commit token) and do it again, once.  A
# deferred trigger on journal makes each of the first three commits that
# write a journal row wait 2 s inside COMMIT, and the test kills the
# backend there.
. "$ORCH_TESTS_DIR/integration/pg-lib.sh"

make_repo "$T/repo"
script_base
mock_start openai
service_start
sq "CREATE SEQUENCE orch_test_slow;
CREATE FUNCTION orch_test_slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
	IF nextval('orch_test_slow') <= 3 THEN
		PERFORM pg_sleep(2);
	END IF;
	RETURN NULL;
END \$\$;
CREATE CONSTRAINT TRIGGER orch_test_slow AFTER INSERT ON journal
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION orch_test_slow();" >/dev/null ||
	bail "cannot add the slow trigger to journal (no journal table?)"

# in_commit: a backend of this database sleeps in the trigger, in COMMIT.
in_commit() {
	[ -n "$(psql -XAtq "$TEST_PG_URL" -c "SELECT pid FROM pg_stat_activity
		WHERE datname = '$TEST_PG_DB' AND wait_event = 'PgSleep'")" ]
}
out_of_commit() { ! in_commit; }
"$SUP" submit "Add a greeting script" --repo "$T/repo" --auto-approve all \
	>"$T/submit.out" 2>&1 || bail "submit failed: $(cat "$T/submit.out")"
killed=0
queries=
for _ in 1 2 3; do
	wait_for 60 in_commit || break
	q=$(psql -XAtq "$TEST_PG_URL" -c "SELECT query FROM pg_stat_activity
		WHERE datname = '$TEST_PG_DB' AND wait_event = 'PgSleep'")
	queries="$queries${queries:+, }$q"
	n=$(psql -XAtq "$TEST_PG_URL" -c "SELECT count(pg_terminate_backend(pid))
		FROM pg_stat_activity
		WHERE datname = '$TEST_PG_DB' AND wait_event = 'PgSleep'")
	killed=$((killed + n))
	wait_for 10 out_of_commit
done
is "$killed" 3 "the service's connection was killed in three commits"
# (The COMMIT of a transaction that adds an event carries its NOTIFY.)
like "$queries" '^(NOTIFY orch_events; )?COMMIT(, (NOTIFY orch_events; )?COMMIT)*$' \
	"... each while it ran COMMIT ($queries)"
check "the service is still up" kill -0 "$SVC"
pg_task_checks 1 3
done_testing
