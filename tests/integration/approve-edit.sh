#!/bin/bash
# Approving an edited plan from the command line, on the mock model
# (openai).  Task 1, through the service: `approve 1 --plan-file F`; the
# implementer's first request holds F's text, not the model's plan; the
# plan column is F's; a plan_edited checkpoint records who and the model's
# plan; the log says so.  Task 2, without a service: `approve 2 --edit`
# with an EDITOR that rewrites the file.  Refused: an empty plan, a plan at
# the implementation's gate (409), --edit with --plan-file, an editor that
# fails (nothing approved).  The JSON API takes "plan" alike.
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "MODEL-PLAN: add greet.sh."}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "greet.sh", "content": "echo Hello\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "greet.sh."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON

wf_repo "$T/repo"
wf_mock_start
service_start

"$SUP" submit "Add a greeting" --repo "$T/repo" >/dev/null
wait_state 1 plan_awaiting_approval 40
printf 'EDITED-PLAN: add greet.sh with printf, not echo.\n' >"$T/plan.txt"
: >"$T/empty.txt"
"$SUP" approve 1 --plan-file "$T/empty.txt" >"$T/out" 2>&1
is "$?" 1 "an empty plan file is refused"
like "$(cat "$T/out")" "empty" "... saying so"
"$SUP" approve 1 --plan-file "$T/plan.txt" --edit >/dev/null 2>&1
is "$?" 2 "--plan-file with --edit: usage"
is "$(state_of 1)" plan_awaiting_approval "nothing approved yet"
"$SUP" approve 1 --plan-file "$T/plan.txt" --by carol >"$T/out" 2>&1
ok $? "approve --plan-file exits 0"
like "$(cat "$T/out")" "approved with the edited plan" "... and says so"
is "$(sq 'SELECT plan FROM tasks WHERE id=1')" \
	"EDITED-PLAN: add greet.sh with printf, not echo." "the plan is the edited one"
is "$(sq 'SELECT plan_approved_by FROM tasks WHERE id=1')" carol "approved by carol"
like "$(sq "SELECT checkpoint_data FROM checkpoints WHERE task_id=1 AND checkpoint_name='plan_edited'")" \
	'"by":"carol","model_plan":"MODEL-PLAN: add greet.sh."' \
	"a plan_edited checkpoint: who, and the model's plan"
like "$(sq "SELECT $(sql_concat text '|') FROM events WHERE task_id=1")" \
	"plan edited by carol before approval" "the log says who edited it"
wait_state 1 implementation_awaiting_approval 40
u=$(body_user 'r["task"] == "1" and r["stage"] == "implementing" and r["turn"] == 0')
like "$(printf '%s' "$u" | tr '\n' ' ')" "The approved plan: EDITED-PLAN: add greet.sh with printf" \
	"the implementer got the edited plan"
case $u in *MODEL-PLAN*) ok 1 "... and not the model's" ;; *) ok 0 "... and not the model's" ;; esac
"$SUP" approve 1 --plan-file "$T/plan.txt" >"$T/out" 2>&1
is "$?" 1 "a plan at the implementation's gate is refused"
like "$(cat "$T/out")" "only a plan awaiting approval can be edited" "... saying why"
is "$(curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$ORCH_STATE_DIR/orch.sock" \
	-d '{"plan":"x"}' http://orch/v1/tasks/1/approve)" 409 "the API: a plan at the implementation's gate is 409"
is "$(curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$ORCH_STATE_DIR/orch.sock" \
	-d '{"plan":"x","reason":"y"}' http://orch/v1/tasks/1/reject)" 400 "the API: a plan with reject is 400"

# The API takes the plan too.
"$SUP" submit "Again" --repo "$T/repo" >/dev/null
wait_state 2 plan_awaiting_approval 40
is "$(curl -s -o "$T/body" -w '%{http_code}' --unix-socket "$ORCH_STATE_DIR/orch.sock" \
	-d '{"plan":"API-PLAN","by":"dan"}' http://orch/v1/tasks/2/approve)" 200 "the API approves an edited plan"
is "$(sq 'SELECT plan FROM tasks WHERE id=2')" "API-PLAN" "... and stores it"
"$SUP" cancel 2 >/dev/null 2>&1
service_kill TERM

# --edit without a service: the CLI writes the database itself.
"$SUP" submit "Third" --repo "$T/repo" >/dev/null
service_start
wait_state 3 plan_awaiting_approval 40
service_kill TERM
EDITOR=false "$SUP" approve 3 --edit >"$T/out" 2>&1
is "$?" 1 "an editor that fails approves nothing"
is "$(state_of 3)" plan_awaiting_approval "... the plan still waits"
# shellcheck disable=SC2016 # the editor script expands $1, not us
printf '#!/bin/sh\nsed -i "s/MODEL-PLAN/EDITOR-PLAN/" "$1"\n' >"$T/ed.sh"
chmod +x "$T/ed.sh"
EDITOR="$T/ed.sh" "$SUP" approve 3 --edit --by erin >"$T/out" 2>&1
ok $? "approve --edit exits 0"
is "$(sq 'SELECT plan FROM tasks WHERE id=3')" "EDITOR-PLAN: add greet.sh." "the plan is the editor's"
is "$(sq 'SELECT workflow_state FROM tasks WHERE id=3')" plan_approved "the plan is approved"
done_testing
