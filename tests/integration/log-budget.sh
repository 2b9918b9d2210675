#!/bin/bash
# Budgets that pause and ask.  A task that reaches its token budget (its
# own --max-tokens, or ORCH_MAX_TOKENS) or its cost budget (ORCH_MAX_COST
# with ORCH_LLM_PRICES) does not fail: it waits for a person (status
# awaiting_approval, the reason naming the budget), goes on after
# `approve --budget N` or `--max-cost X`, and the model is asked again for
# no turn it had already answered.
. "$ORCH_TESTS_DIR/integration/lib.sh"
make_repo "$T/repo"
cat >"$T/script.json" <<'JSON'
{
  "planning": [{"text": "Plan.", "usage": {"in": 1000, "out": 200}, "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Write b."}}]}],
  "implementing": [
    {"text": "w", "usage": {"in": 3000, "out": 500}, "tool_calls": [{"name": "write_file", "arguments": {"path": "b", "content": "y\n"}}]},
    {"text": "Done.", "usage": {"in": 4000, "out": 100}, "tool_calls": [{"name": "finish", "arguments": {"summary": "Wrote b."}}]}],
  "reviewing": [{"text": "OK.", "usage": {"in": 2000, "out": 50}, "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}]
}
JSON
export ORCH_LLM_SCRIPT="$T/script.json"
turns() { sq "SELECT count(*) FROM turns WHERE task_id=$1"; }

# Task 1, in the foreground, with a budget of its own.
"$SUP" run "Write b" --repo "$T/repo" --auto-approve all --max-tokens 5000 >"$T/run1.out" 2>&1
is "$?" 0 "run stops when the task waits at its budget"
like "$(tail -1 "$T/run1.out")" '^Task 1 waits for a person at its budget .*approve 1 --budget N' "and says how to go on"
is "$(sq 'SELECT status, workflow_state, budget_paused FROM tasks WHERE id=1')" \
	"awaiting_approval|implementing|1" "it waits (awaiting_approval) in the middle of implementing, not failed"
like "$("$SUP" logs 1 --kind state | tail -1)" \
	'==> waiting for a person: the token budget is reached: 8800 tokens used, this task.s budget is 5000;' \
	"the log says which budget, once the turn that passed it (4700 before it) is answered"
like "$("$SUP" show 1 | grep '^Waiting')" '^Waiting for a person at its budget: the token budget is reached' "show says so"
is "$("$SUP" show 1 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["max_tokens"], d.get("waiting_at_budget"))')" \
	"awaiting_approval 5000 True" "the JSON too"
like "$("$SUP" list --status awaiting_approval)" '1 +awaiting_approval +implementing' "list finds it among the tasks awaiting approval"
answered=$(turns 1)
"$SUP" --resume 1 >"$T/resume.out" 2>&1
is "$?" 1 "--resume alone does not pass a budget"
like "$(cat "$T/resume.out")" 'waits for a person at its budget: .*approve 1 --budget N' "... and says what does"
"$SUP" approve 1 --budget 6000 >"$T/ap.out" 2>&1
is "$?" 1 "a budget still below what was used is refused"
like "$(cat "$T/ap.out")" 'still waits: the token budget is reached: [0-9]+ tokens used, this task.s budget is 6000' "... saying why"
"$SUP" approve 1 --budget 0 >/dev/null 2>&1
is "$?" 2 "--budget 0 is a usage error"
"$SUP" approve 1 --budget 100000 >"$T/ap.out" 2>&1
is "$?" 0 "approve --budget raises it"
is "$(sq 'SELECT status, budget_paused, max_tokens FROM tasks WHERE id=1')" "in_progress|0|100000" "the task goes on"
"$SUP" --resume 1 >"$T/resume2.out" 2>&1
is "$?" 0 "and completes"
is "$(state_of 1)" completed "task 1 completes"
like "$("$SUP" logs 1 --kind state)" 'budget raised by [^ ]+ \(token budget 100000\): going on' "the log says who raised it"
is "$(turns 1)" 4 "four turns in all: the model was asked for none twice"
is "$(sq "SELECT count(*) FROM turns WHERE task_id=1 AND stage='implementing'")" \
	"$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND stage='implementing' AND kind='reply'")" \
	"every implementing turn was asked once and journaled once"
is "$answered" 3 "(planning's and implementing's two turns were answered before the pause)"

# Task 2, through the service: a cost budget with prices, raised over the API.
export ORCH_LLM_PRICES='{"scripted": {"input": 2.5, "output": 10}}' ORCH_MAX_COST=0.01
service_start
id=$("$SUP" submit "Write b" --repo "$T/repo" --auto-approve all 2>"$T/submit.err")
is "$id" 2 "task 2 submitted"
paused() { [ "$(sq "SELECT budget_paused FROM tasks WHERE id=$1")" = 1 ]; }
wait_for 30 paused 2 || bail "task 2 did not wait at its cost budget"
like "$("$SUP" logs 2 --kind state | tail -1)" \
	'waiting for a person: the cost budget is reached: 0\.0[0-9]+ spent, ORCH_MAX_COST is 0\.0100' "it waits at the cost budget"
answered=$(turns 2)
curl -s --unix-socket "$ORCH_STATE_DIR/orch.sock" -X POST -d '{"max_cost": 0.001}' \
	http://orch/v1/tasks/2/approve >"$T/api.out"
like "$(cat "$T/api.out")" 'still waits: the cost budget is reached' "the API refuses a budget below what was spent"
curl -s --unix-socket "$ORCH_STATE_DIR/orch.sock" -X POST -d '{"max_cost": "lots"}' \
	http://orch/v1/tasks/2/approve >"$T/api.out"
like "$(cat "$T/api.out")" '"max_cost\\" must be a number' "... and a malformed one"
"$SUP" approve 2 --max-cost 1 >/dev/null 2>&1
is "$?" 0 "approve --max-cost through the service"
wait_for 30 state_is 2 completed || bail "task 2 did not complete"
is "$(state_of 2)" completed "task 2 completes"
is "$(turns 2)" 4 "no turn was asked twice"
check "($answered turns were answered before the pause)" test "$answered" -ge 1
like "$("$SUP" show 2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_cost"])')" '^1(\.0)?$' "its cost budget is 1"

# A budget at submit through the API; a cost budget without prices.
id=$("$SUP" submit "Write b" --repo "$T/repo" --max-tokens 1 2>"$T/submit.err")
wait_for 30 paused "$id" || bail "task $id did not wait at its own budget"
is "$(sq "SELECT max_tokens FROM tasks WHERE id=$id")" 1 "submit --max-tokens through the service"
"$SUP" cancel "$id" >/dev/null 2>&1
is "$(state_of "$id")" cancelled "a waiting task can be cancelled"
service_kill TERM
unset ORCH_LLM_PRICES ORCH_MAX_COST
"$SUP" submit "x" --repo "$T/repo" --max-cost 2 >/dev/null 2>"$T/err"
is "$?" 1 "submit --max-cost without prices is refused"
like "$(cat "$T/err")" 'a cost budget needs prices: set ORCH_LLM_PRICES' "... saying why"
"$SUP" submit "x" --repo "$T/repo" --max-tokens lots >/dev/null 2>&1
is "$?" 2 "a malformed --max-tokens is a usage error"
done_testing
