#!/bin/bash
# The coding workflow's happy path, end to end on the mock model (openai):
# the model writes a small shell script and its test, runs the test in the
# sandbox, finishes; the review approves; `--verify "sh test.sh"` really runs
# in the sandbox and passes.  The result is the branch orch/task-1 with the
# expected files, the implementation and verification columns say what
# happened, `show` names the branch and how to diff, and the user's own
# repository (HEAD, index, branches, working tree) is untouched.
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

cat >"$T/script.json" <<'JSON'
{
  "planning": [
    {"text": "Looking around.",
     "tool_calls": [{"name": "list_files", "arguments": {"path": ""}}]},
    {"text": "Plan ready.",
     "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "1. Add greet.sh that greets its argument.\n2. Add test.sh that checks it."}}]}
  ],
  "implementing": [
    {"text": "The script.",
     "tool_calls": [{"name": "write_file", "arguments": {"path": "greet.sh", "content": "#!/bin/sh\n. ./config.sh\nprintf 'Hello, %s!\\n' \"${1:-$name}\"\n"}}]},
    {"text": "Its test.",
     "tool_calls": [{"name": "write_file", "arguments": {"path": "test.sh", "content": "out=$(sh greet.sh Ann)\n[ \"$out\" = 'Hello, Ann!' ] || { echo \"FAIL: got $out\"; exit 1; }\nout=$(sh greet.sh)\n[ \"$out\" = 'Hello, world!' ] || { echo \"FAIL: got $out\"; exit 1; }\necho 'PASS: greet'\n"}}]},
    {"text": "Running it.",
     "tool_calls": [{"name": "run_command", "arguments": {"command": "sh test.sh"}}]},
    {"text": "Done.",
     "tool_calls": [{"name": "finish", "arguments": {"summary": "Added greet.sh and its test."}}]}
  ],
  "reviewing": [
    {"text": "Looks right.",
     "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "Clean and tested."}}]}
  ]
}
JSON

wf_repo "$T/repo"
wf_repo_state "$T/repo" >"$T/repo.before"
base=$(git -C "$T/repo" rev-parse HEAD)
wf_mock_start
export ORCH_LOG_LEVEL=debug # the workers log each git they run
service_start

id=$("$SUP" submit "Add a greeting script with a test" --repo "$T/repo" \
	--verify "sh test.sh" --auto-approve all 2>"$T/submit.err")
is "$id" 1 "submit prints the task id"
wait_state 1 completed 50
is "$(state_of 1)" completed "the task completes"
is "$(sq 'SELECT status FROM tasks WHERE id=1')" completed "status is completed"

# The git each stage ran.  A worktree just made, or left by a stage that
# ended normally, is not restored (no reset, no clean: that is for restarts).
gits() { sed -n "s/.*stage=$1 msg=\"git \(.*\) in .*/\1/p" "$T/service.log" | tr '\n' ' '; }
is "$(gits planning)" "worktree add " "planning ran git once: worktree add"
is "$(gits reviewing)" "diff " "reviewing ran git once: diff"
# Each snapshot is add and write-tree, then commit-tree and update-ref when
# the tree changed; the refs are read from their files, the snapshot's tree
# and the diffstat asked once (the squashed result has the snapshot's tree).
is "$(gits implementing)" "add write-tree commit-tree update-ref add write-tree \
commit-tree update-ref add write-tree diff commit-tree update-ref " \
	"implementing runs no git for what it knows (no rev-parse, ls-files, second diff)"
is "$(grep -E 'msg="git (reset|clean) ' "$T/service.log" | sed 's/.*stage=//')" "" \
	"no stage restored the worktree (no reset, no clean)"
# The terminal tools only check the journaled reply's arguments: a replay
# computes them again, so they cost no commit of their own.
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND data LIKE '%\"outcome\":\"terminal\"%'")" 0 \
	"submit_plan, finish and submit_review are not journaled"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='reply'")" 7 \
	"... the replies that called them are (all 7 turns)"

# The branch.
R="git -C $T/repo"
is "$($R ls-tree -r --name-only orch/task-1 | tr '\n' ' ')" \
	"README.md config.sh greet.sh test.sh " "the branch has the expected files"
is "$($R rev-parse orch/task-1^)" "$base" \
	"the branch is one commit on top of the base"
like "$($R log -1 --format=%B orch/task-1 | tr '\n' ' ')" \
	"Add a greeting script with a test.*Added greet.sh and its test" \
	"its message holds the request and the summary"
is "$($R show orch/task-1:greet.sh | tail -1)" \
	"printf 'Hello, %s!\n' \"\${1:-\$name}\"" "greet.sh is what the model wrote"
mkdir "$T/check"
$R archive orch/task-1 | tar -x -C "$T/check"
is "$(cd "$T/check" && sh test.sh)" "PASS: greet" "the branch's test passes outside too"

# The implementing stage's own test run happened in the sandbox.
like "$(sq "SELECT data FROM journal WHERE task_id=1 AND stage='implementing' AND kind='tool' AND data LIKE '%run_command%'")" \
	'exit_status\\?":0.*PASS: greet' "the model's run_command ran the test"

# The columns.
impl=$(sq 'SELECT implementation FROM tasks WHERE id=1')
like "$impl" "^Added greet.sh and its test\." "implementation has the summary"
like "$impl" "greet\.sh +\| +3 \+\+\+" "implementation has the diff stat (greet.sh)"
like "$impl" "2 files changed, [0-9]+ insertions" "implementation has the diff stat totals"
is "$(vr 1 status)" passed "verification_result: passed"
is "$(vr 1 exit_status)" 0 "verification_result: exit status 0"
is "$(vr 1 command)" "sh test.sh" "verification_result: the command"
like "$(vr 1 duration_ms)" '^[0-9]+$' "verification_result: a duration"
like "$(vr 1 output_tail)" "PASS: greet" "verification_result: the output tail"
like "$(sq 'SELECT review FROM tasks WHERE id=1')" '"verdict":"approve"' \
	"the review is recorded"

# What the model was told.
like "$(body_user 'r["stage"] == "implementing" and r["turn"] == 0')" \
	"Add a greeting script with a test.*" "implementing is told the request"
like "$(body_user 'r["stage"] == "implementing" and r["turn"] == 0' | tr '\n' ' ')" \
	"The approved plan: 1. Add greet.sh" "implementing is told the plan"
is "$(body_user 'r["stage"] == "implementing" and r["turn"] == 0' | grep -c 'Feedback')" 0 \
	"the first round has no feedback"
like "$(body_user 'r["stage"] == "reviewing" and r["turn"] == 0' | tr '\n' ' ')" \
	"diff --git a/greet.sh b/greet.sh.*\+echo 'PASS: greet'" \
	"the reviewer is shown the diff"
is "$(mock_q 'len(L)')" 7 "one request per turn (2 + 4 + 1)"

# show.
"$SUP" show 1 >"$T/show.out" 2>&1
ok $? "show exits 0"
like "$(cat "$T/show.out")" "branch orch/task-1 in $T/repo" "show names the branch"
like "$(cat "$T/show.out")" "git -C $T/repo diff [0-9a-f]{12}\.\.\.orch/task-1" \
	"show says how to diff"
like "$(tr '\n' ' ' <"$T/show.out")" 'Verification: +passed: .sh test.sh. exited with status 0' "show shows the verification"
dcmd=$(grep -E '^ +git -C .* diff ' "$T/show.out" | head -1)
is "$($dcmd --stat | tail -1 | sed 's/^ *//')" \
	"2 files changed, 8 insertions(+)" "the diff command show prints works"

# The user's repository and the task's workspace.
wf_repo_state "$T/repo" | grep -v '^refs/heads/orch/task-1 ' >"$T/repo.after"
is "$(diff "$T/repo.before" "$T/repo.after")" "" \
	"the user's HEAD, index, branches and working tree are untouched"
is "$(cat "$T/repo/WIP.txt")" "local change" "the user's uncommitted file is still there"
is "$($R branch --list | sed 's/^[* ] //' | tr '\n' ' ')" "feature main orch/task-1 " \
	"git branch shows only the user's branches and the result"
check "the worktree is removed" test ! -e "$ORCH_STATE_DIR/worktrees/task-1"
is "$($R worktree list | wc -l)" 1 "git knows no worktree but the user's"
check "refs/orch/tasks/1 is kept" $R rev-parse -q --verify refs/orch/tasks/1
is "$($R rev-parse 'refs/orch/tasks/1^{tree}')" "$($R rev-parse 'orch/task-1^{tree}')" \
	"the last snapshot holds the same tree as the branch"
check_no_key 1
done_testing
