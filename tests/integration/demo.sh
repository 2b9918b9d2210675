#!/bin/bash
# The happy path: a whole task through every stage on the scripted model,
# with verification in the sandbox, producing the branch.
. "$ORCH_TESTS_DIR/integration/lib.sh"

make_repo "$T/repo"
before=$(git -C "$T/repo" rev-parse HEAD)
"$SUP" run "Add a greeting script" --repo "$T/repo" --verify "sh test.sh" \
	--auto-approve all >"$T/run.out" 2>"$T/run.err"
ok $? "run exits 0"
is "$(state_of 1)" completed "the task is completed"
is "$(sq 'SELECT status FROM tasks WHERE id=1')" completed "status completed"
like "$(cat "$T/run.out")" "verifying -> completed" "run prints the log as it goes"
like "$(sq 'SELECT verification_result FROM tasks WHERE id=1')" '"status":"passed"' \
	"verification passed in the sandbox"
like "$(sq 'SELECT verification_result FROM tasks WHERE id=1')" 'all greetings ok' \
	"verification output is kept"
like "$(sq 'SELECT plan FROM tasks WHERE id=1')" "hello.sh" "the plan is stored"
like "$(sq 'SELECT review FROM tasks WHERE id=1')" '"verdict":"approve"' "the review is stored"
is "$(git -C "$T/repo" show orch/task-1:hello.sh | tail -1)" \
	"printf 'Hello, %s!\\n' \"\${1:-world}\"" "the branch has hello.sh"
is "$(git -C "$T/repo" rev-parse orch/task-1^)" "$before" \
	"the branch is one commit on the base"
is "$(git -C "$T/repo" rev-parse HEAD)" "$before" "the user's HEAD is untouched"
is "$(git -C "$T/repo" status --porcelain)" "" "the user's tree is untouched"
is "$(git -C "$T/repo" branch --list | tr -d ' *' | sort | tr '\n' ' ')" \
	"main orch/task-1 " "only the result branch is added"
check "the snapshot ref exists" git -C "$T/repo" rev-parse -q --verify refs/orch/tasks/1
check "the worktree is cleaned up" test ! -e "$ORCH_STATE_DIR/worktrees/task-1"
for cp in workflow_start start_planning after_planning start_implementation \
	after_implementation after_review after_verification; do
	is "$(sq "SELECT CAST(count(*) > 0 AS INTEGER) FROM checkpoints WHERE task_id=1 AND checkpoint_name='$cp'")" \
		1 "checkpoint $cp recorded"
done
like "$("$SUP" show 1)" "git -C .* diff .*orch/task-1" "show says how to see the result"
like "$("$SUP" show 1 | tr '\n' ' ')" 'Usage: +implementing +4 calls +2600 tokens in +230 out +planning +3 calls' \
	"show gives the token usage per stage"
ok "$("$SUP" show 1 | grep -q '^ *verifying .*calls'; [ $? -ne 0 ]; echo $?)" \
	"... leaving out the stage that asked no model"
db_intact

# Started with stdin, stdout and stderr closed (as some service managers
# do), the supervisor and its workers still run the task through.
"$SUP" run "Add a greeting script again" --repo "$T/repo" --auto-approve all \
	<&- >&- 2>&-
ok $? "run with fds 0-2 closed exits 0"
is "$(state_of 2)" completed "... and its task is completed"
done_testing
