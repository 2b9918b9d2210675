#!/bin/bash
# An empty result is caught.  An implementer that calls finish without
# having changed anything is told so once, as a tool error, and may go on:
# one that then makes the change completes normally; one that finishes
# empty again ends the task with "no changes" said plainly (show, the
# log, the JSON), and no result branch is made.
. "$ORCH_TESTS_DIR/integration/lib.sh"
make_repo "$T/repo"

script() { # IMPLEMENTING-TURNS
	cat >"$T/script.json" <<JSON
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Touch util.c."}}]}
  ],
  "implementing": [ $1 ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
	export ORCH_LLM_SCRIPT="$T/script.json"
}
BADEDIT='{"text": "edit", "tool_calls": [{"name": "edit_file", "arguments": {"path": "app.py", "old": "nothing like this", "new": "x"}}]}'
FINISH='{"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Touched util.c; it builds."}}]}'
WRITE='{"text": "write", "tool_calls": [{"name": "write_file", "arguments": {"path": "util.c", "content": "int x;\n"}}]}'

# Task 1: a failed edit, finish, told, finish again.
script "$BADEDIT, $FINISH, $FINISH"
"$SUP" run "Touch util.c" --repo "$T/repo" --auto-approve all >"$T/run1.out" 2>&1
is "$?" 1 "the run of an empty task fails"
is "$(state_of 1)" failed "task 1 fails"
like "$(sq 'SELECT error_details FROM tasks WHERE id=1')" \
	'^no changes: the implementer finished twice without changing any file .*no result branch was made; its summary said: Touched util.c; it builds\.$' \
	"its error says no changes, and what the model claimed"
check "no result branch is made" sh -c "! git -C '$T/repo' rev-parse -q --verify refs/heads/orch/task-1"
"$SUP" logs 1 >"$T/logs1.out"
like "$(grep -A1 -F 'finish {' "$T/logs1.out" | sed -n 2p)" \
	'   -> error: your change is empty: the workspace has no change against the base commit' \
	"the first finish is answered with a tool error"
is "$(grep -c -F 'finish {' "$T/logs1.out")" 2 "the implementer finished twice"
like "$(cat "$T/logs1.out")" 'no changes: the implementer finished again without changing any file' "the log says no changes"
like "$(grep '==> implementing -> failed' "$T/logs1.out")" 'implementing -> failed: no changes' "... in the state change too"
check "the reviewer is not asked to review nothing" sh -c "! grep -q '\\[reviewing\\]' '$T/logs1.out'"
"$SUP" show 1 >"$T/show1.out"
like "$(grep -A1 '^Error' "$T/show1.out" | tr '\n' ' ')" 'no changes: the implementer finished twice' "show says no changes"
check "show offers no result branch" sh -c "! grep -q '^Result: branch' '$T/show1.out'"
is "$("$SUP" show 1 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["error_details"][:10])')" \
	"failed no changes" "the JSON says it"
is "$("$SUP" logs 1 --json --kind result | python3 -c '
import json, sys
print([e.get("empty", False) for e in map(json.loads, sys.stdin) if e["tool"] == "finish"])')" \
	"[True]" "the warning is marked in the result's facts"

# Task 2: finish, told, writes the change, finish: completes normally.
script "$FINISH, $WRITE, $FINISH"
"$SUP" run "Touch util.c" --repo "$T/repo" --auto-approve all >"$T/run2.out" 2>&1
is "$?" 0 "the run of a task that fixed itself succeeds"
is "$(state_of 2)" completed "task 2 completes"
is "$(git -C "$T/repo" show orch/task-2:util.c)" "int x;" "its branch holds the change"
"$SUP" logs 2 >"$T/logs2.out"
is "$(grep -c 'your change is empty' "$T/logs2.out")" 1 "it was told once"
check "no 'no changes:' for task 2" sh -c "! grep -q 'no changes:' '$T/logs2.out'"
done_testing
