#!/bin/bash
# The log tells what happened, not only what was asked: every tool result
# is an event under its call (an edit that fails, a file written, a command
# that fails with a known exit status and output, the verification), every
# checkpoint is said by name as it is saved, and `logs --json` gives the
# same facts as fields.  A command's output is escaped like every terminal
# output, and the log holds exactly the results the journal holds.
. "$ORCH_TESTS_DIR/integration/lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Edit util.c."}}]}
  ],
  "implementing": [
    {"text": "edit", "tool_calls": [{"name": "edit_file", "arguments": {"path": "util.c", "old": "x", "new": "y"}}]},
    {"text": "write", "tool_calls": [{"name": "write_file", "arguments": {"path": "util.c", "content": "y\nx\nx\nz\n"}}]},
    {"text": "run", "tool_calls": [{"name": "run_command", "arguments": {"command": "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i; done; printf 'evil\\033]0;title\\007\\n' >&2; exit 3"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Touched util.c."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
export ORCH_LLM_SCRIPT="$T/script.json"
mkdir -p "$T/repo"
git -C "$T/repo" init -q -b main
printf 'x\nx\nx\n' >"$T/repo/util.c"
git -C "$T/repo" add -A
git -C "$T/repo" -c user.name=t -c user.email=t@t commit -qm init

"$SUP" run "Edit util.c" --repo "$T/repo" --verify "echo verified; exit 0" \
	--auto-approve all >"$T/run.out" 2>"$T/run.err"
is "$?" 0 "the task runs to its end"
is "$(state_of 1)" completed "it completes"

"$SUP" logs 1 >"$T/logs.out" 2>&1
L=$T/logs.out
# The line after the call.
after() { grep -A1 -F -- "$1" "$L" | sed -n 2p; }
like "$(after 'edit_file {')" '\[implementing\]   -> error: edit_file: argument "old" occurs 3 times in util.c' \
	"the failing edit's error is under its call"
like "$(after 'write_file {')" '   -> ok: util.c written, 8 bytes, \+4 -3 lines' \
	"the write says what changed"
like "$(after 'run_command {')" '   -> exit status 3 after [0-9]+\.[0-9]{3} s$' \
	"the failing command's exit status and duration are under its call"
is "$(grep -A11 -F 'run_command {' "$L" | sed -n '3,12p' | tr -d ' ' | tr '\n' ' ')" \
	"|line4 |line5 |line6 |line7 |line8 |line9 |line10 |line11 |line12 |evil\\x1b]0;title\\x07 " \
	"its last 10 lines of output follow, marked, controls escaped"
check "no raw control reaches the terminal" sh -c "! grep -q \"\$(printf '\\033')\" '$L'"
check "the lines before the tail are left out" sh -c "! grep -q '| line3\$' '$L'"
like "$(after 'verify: echo verified')" '   -> exit status 0 after' "the verification's result is under it"
is "$(grep -o 'checkpoint saved: [a-z_]*' "$L" | grep -v snapshot | tr '\n' ' ')" \
	"checkpoint saved: start_planning checkpoint saved: after_planning checkpoint saved: start_implementation checkpoint saved: after_implementation checkpoint saved: start_review checkpoint saved: after_review checkpoint saved: start_verification checkpoint saved: after_verification " \
	"every checkpoint is said by name, in order"
like "$(grep 'checkpoint saved: snapshot' "$L")" 'snapshot \(step 2, commit [0-9a-f]{12}\)' \
	"the snapshot after the write is said with its step and commit"
is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND kind='checkpoint'")" \
	"$(sq "SELECT count(*) FROM checkpoints WHERE task_id=1 AND checkpoint_name != 'workflow_start'")" \
	"one checkpoint event per checkpoint (workflow_start is the submission's)"
is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND kind='result'")" \
	"$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind IN ('tool','command')")" \
	"one result event per journaled result"

"$SUP" logs 1 --json >"$T/logs.json" 2>&1
is "$?" 0 "logs --json"
is "$(wc -l <"$T/logs.json")" "$(sq 'SELECT count(*) FROM events WHERE task_id=1')" "one JSON line per event"
is "$(python3 - "$T/logs.json" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
out = []
ids = [e["id"] for e in ev]
out.append("ordered" if ids == sorted(ids) else "unordered")
res = [e for e in ev if e["kind"] == "result"]
for r in res:
    prev = ev[ev.index(r) - 1]
    out.append("%s<%s:%s" % (r["tool"], prev["kind"], prev["text"].split(" ")[0]))
edit, write, run, verify = res
out.append(edit["outcome"] + " " + edit["error"][:40])
out.append("%s %d %d %d %s" % (write["outcome"], write["bytes"], write["lines_added"], write["lines_removed"], write["path"]))
out.append("%s %d %s %r" % (run["outcome"], run["exit_status"], run["timed_out"], run["output_tail"].splitlines()[-1]))
out.append("%d %s" % (len(run["output_tail"].splitlines()), isinstance(run["duration_ms"], int)))
out.append("%s %d" % (verify["tool"], verify["exit_status"]))
cps = [e["checkpoint"] for e in ev if e["kind"] == "checkpoint"]
out.append(" ".join(cps))
out.append(str(all(set(e) >= {"id", "ts", "task", "kind", "stage", "text"} for e in ev)))
print("\n".join(out))
PY
)" "ordered
edit_file<tool:edit_file
write_file<tool:write_file
run_command<tool:run_command
verify<tool:verify:
error edit_file: argument \"old\" occurs 3 times
ok 8 4 3 util.c
ok 3 False 'evil\\x1b]0;title\\x07'
10 True
verify 0
start_planning after_planning start_implementation snapshot after_implementation start_review after_review start_verification after_verification
True" "the JSON lines hold every fact, each result right after its call"
check "the JSON lines escape terminal controls" sh -c "! grep -q \"\$(printf '\\033')\" '$T/logs.json'"

# Filters.
is "$("$SUP" logs 1 --kind result | wc -l)" 15 "--kind result: the four results (the commands' with their tails)"
is "$("$SUP" logs 1 --kind checkpoint,state --json | python3 -c 'import json,sys; print(sorted({json.loads(l)["kind"] for l in sys.stdin}))')" \
	"['checkpoint', 'state']" "--kind takes a list"
like "$("$SUP" logs 1 --stage verifying --kind result | head -1)" '^[0-9:.]+ \[verifying\]   -> exit status 0' "--stage"
is "$("$SUP" logs 1 --since 1h | wc -l)" "$(wc -l <"$L")" "--since 1h: everything"
is "$("$SUP" logs 1 --since 2099-01-01 | wc -l)" 0 "--since a future date: nothing"
like "$("$SUP" logs --kind state | head -1)" ' #1 \[state\] ==> task submitted' "without an id, each line has the task's id"
"$SUP" logs 1 --kind nosuch >/dev/null 2>"$T/err"
is "$?" 2 "an unknown kind is a usage error"
like "$(cat "$T/err")" 'the kinds are state, tool, result' "... that names the kinds"
"$SUP" logs 1 --since soon >/dev/null 2>&1
is "$?" 2 "a bad --since is a usage error"
"$SUP" logs 1 --stage nowhere >/dev/null 2>&1
is "$?" 2 "a bad --stage is a usage error"
done_testing
