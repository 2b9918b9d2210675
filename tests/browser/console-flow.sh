#!/bin/bash
# The console in a real browser (headless Chromium, selenium): flow.py
# takes a task from submission to a branch ready to merge against the real
# service and the mock model (openai), then this script checks what the
# browser cannot see: the implementer's request held the edited plan, and
# the approval columns hold the name given at login.  Screenshots of the
# inbox and the task page are left in $MESON_BUILD_ROOT/console-shots.
D="$ORCH_TESTS_DIR"
. "$D/integration/wf-lib.sh"
. "$D/integration/console-lib.sh"
. "$D/browser/browser-lib.sh"

browser_check
{
	printf '{\n  "planning": [{"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Plan v1: greet.sh (PLAN-ONE)."}}]}],\n'
	printf '  "planning#2": [{"text": "Again.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Plan v2: greet.sh and a test (PLAN-TWO)."}}]}],\n'
	printf '  "implementing": [\n'
	printf '    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "greet.sh", "content": "printf '"'"'Hello\\\\n'"'"'\\n"}}]},\n'
	printf '    {"text": "Data.", "tool_calls": [{"name": "write_file", "arguments": {"path": "data.txt", "content": "'
	for i in $(seq 1 450); do printf 'line %d\\n' "$i"; done
	printf '"}}]},\n'
	printf '    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "greet.sh and data.txt."}}]}\n  ],\n'
	printf '  "reviewing": [{"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "Fine."}}]}]\n}\n'
} >"$T/script.json"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/script.json" || bail "bad script"

wf_repo "$T/repo"
wf_mock_start
console_env
service_start
wait_for 10 curl -s "$URL/login" || bail "the console does not answer"

browser_run flow.py REPO="$T/repo"

EDITED="Write greet.sh that prints Hello, and data.txt of 450 lines (EDIT-MARK, edited in the browser)."
is "$(sq 'SELECT plan FROM tasks WHERE id=1')" "$EDITED" "the stored plan is the edited one"
u=$(body_user 'r["task"] == "1" and r["stage"] == "implementing" and r["turn"] == 0')
like "$(printf '%s' "$u" | tr '\n' ' ')" "The approved plan: Write greet.sh .*EDIT-MARK" \
	"the implementer's request held the edited plan"
like "$(sq "SELECT checkpoint_data FROM checkpoints WHERE task_id=1 AND checkpoint_name='plan_edited'")" \
	'"by":"Ada Lovelace".*PLAN-TWO' "a plan_edited checkpoint records who and the model's plan"
is "$(sq 'SELECT plan_approved_by FROM tasks WHERE id=1')" "Ada Lovelace" "plan_approved_by is the login name"
is "$(sq 'SELECT implementation_approved_by FROM tasks WHERE id=1')" "Ada Lovelace" \
	"implementation_approved_by too"
is "$(state_of 1)" completed "the task is completed"
is "$(git -C "$T/repo" show orch/task-1:greet.sh)" "printf 'Hello\n'" "its branch has the change"
done_testing
