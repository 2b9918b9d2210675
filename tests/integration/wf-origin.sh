#!/bin/bash
# --repo as an origin, end to end on the mock model (openai), against a
# bare repository that stands for the team's shared one:
#   hostile URLs are refused before git sees them, and no task is made;
#   task 1 (a file:// URL): the worktree is made from the node's mirror
#           under $ORCH_STATE_DIR/repos/, the snapshot ref is pushed to
#           the origin during implementing, the result branch when the
#           task completes (once), `show` and the API say where; the
#           user's own branches on the origin are untouched;
#   task 2 (the bare repository's plain path): stored as a file:// URL;
#   task 3: the service and its worker killed -9 mid-implementing, the
#           worktree and the mirror deleted (as on a node that never saw
#           the task): the stage restores the origin's snapshot ref;
#   task 4 (ssh:// through GIT_SSH_COMMAND, the node's ssh): the push and
#           fetch see the node's SSH_AUTH_SOCK, the sandboxed commands
#           see none of it, nor the origin's URL;
#   task 5 (URL#feature): its base is that branch;
#   gc trims the mirror, not the origin.
export ORCH_RETRY_BACKOFF_MS=300
. "$ORCH_TESTS_DIR/integration/origin-lib.sh"

# The node's own credentials: a helper's file and an agent (a name only).
printf 'https://u:orch-secret-token@example.com\n' >"$HOME/.git-credentials"
git config --global credential.helper store
cat >"$T/script.json" <<JSON
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Write a.txt and look around."}}]}
  ],
  "implementing": [
    {"text": "a", "tool_calls": [{"name": "write_file", "arguments": {"path": "a.txt", "content": "alpha\\n"}}]},
    {"text": "look", "delay": 3, "tool_calls": [{"name": "run_command", "arguments": {"command": "env | sort > env.txt; (cat .git; ls -a /; ls -a ..; cat $HOME/.git-credentials ~/.git-credentials ~/.gitconfig) > seen.txt 2>&1; git config --list > config.txt 2>&1; true"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Wrote a.txt."}}]}
  ],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON

origin_setup "$T/work" "$T/origin.git"
O="git -C $T/origin.git"
user_refs=$(origin_user_refs "$T/origin.git")
export SSH_AUTH_SOCK="$T/agent.sock"
wf_mock_start
service_start

submit() { # REPO
	"$SUP" submit "Write a.txt" --repo "$1" --verify "cat a.txt" \
		--auto-approve all 2>"$T/submit.err"
}

# Hostile or unsupported URLs: refused with a reason, no task made.
refused() { # URL PATTERN
	local out
	out=$("$SUP" submit "x" --repo "$1" 2>&1)
	ok $(($? == 0)) "$1 is refused"
	like "$out" "$2" "... saying why"
}
refused '-uhttps://example.com/x.git' "may not start with '-'|starts with '-'"
refused 'ext::sh -c touch% /tmp/orch-pwned' 'transport helpers|space'
refused 'ext::sh' 'transport helpers'
refused 'fd::3' 'transport helpers'
refused 'git://example.com/x.git' 'transport "git" is refused'
refused 'http://example.com/x.git' 'transport "http" is refused'
refused 'user@example.com:x.git' 'scp-like'
refused 'https://user:secret@example.com/x.git' 'user name or password'
refused 'ssh://-oProxyCommand=touch%20/tmp/orch-pwned/x' "starts with '-'"
refused 'ssh://u@-oProxyCommand=x/y' "starts with '-'"
refused 'file://example.com/srv/x.git' 'absolute path'
refused "file://$T/origin.git/../work" "'\\.\\.'"
refused "file://$T/origin.git#-x" 'branch name'
refused "file://$T/origin.git#a..b" 'branch name'
refused "file://$T/nowhere.git" 'no repository at'
check "nothing was run by a hostile URL" test ! -e /tmp/orch-pwned
is "$(sq 'SELECT count(*) FROM tasks')" 0 "no task was made"

# Task 1: a file:// URL.
URL="file://$T/origin.git"
is "$(submit "$URL")" 1 "task 1 (file:// URL) submitted"
is "$(sq 'SELECT repo FROM tasks WHERE id=1')" "$URL" "the task keeps the URL as its repository"
is "$(sq 'SELECT base_commit FROM tasks WHERE id=1')" "$($O rev-parse HEAD)" \
	"its base is the origin's HEAD"
M=$(ls -d "$ORCH_STATE_DIR"/repos/origin-*.git)
like "$M" "/repos/origin-[0-9a-f]{16}\\.git$" "the mirror is named after the URL"
is "$(git -C "$M" rev-parse --is-bare-repository)" true "the mirror is bare"
snapshot_on_origin() { $O rev-parse -q --verify refs/orch/tasks/1 >/dev/null; }
wait_for 30 snapshot_on_origin
ok $? "the snapshot ref is on the origin during implementing"
is "$(state_of 1)" implementing "(while the stage runs)"
wait_state 1 completed 60
is "$(state_of 1)" completed "task 1 completes"
last_snap() {
	sq "SELECT $(sql_json checkpoint_data commit) FROM checkpoints WHERE task_id=$1 AND checkpoint_name='snapshot' ORDER BY id DESC LIMIT 1"
}
is "$($O rev-parse refs/orch/tasks/1)" "$(last_snap 1)" \
	"the origin's snapshot ref is the last snapshot"
is "$($O for-each-ref --format='%(refname)' 'refs/heads/orch/*' | tr '\n' ' ')" \
	"refs/heads/orch/task-1 " "the result branch is on the origin, once"
is "$($O show orch/task-1:a.txt)" alpha "with the change"
is "$($O rev-parse orch/task-1^)" "$($O rev-parse main)" "on the base commit"
is "$(origin_user_refs "$T/origin.git")" "$user_refs" "the user's branches on the origin are untouched"
like "$("$SUP" show 1)" "Result: branch orch/task-1 on file://$T/origin.git" \
	"show says where the branch is"
like "$(curl -s --unix-socket "$ORCH_STATE_DIR/orch.sock" http://orch/v1/tasks/1)" \
	"\"result_location\": *\"branch orch/task-1 on file://" "the API too"
is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND text LIKE 'result branch orch/task-1 pushed to file://%'")" \
	1 "the log says it was pushed"
is "$(git -C "$M" config --list | grep -c "$T/origin.git")" 0 \
	"the mirror's configuration does not name the origin"
check "the worktree is removed" test ! -e "$ORCH_STATE_DIR/worktrees/task-1"

files() { $O ls-tree -r --name-only "orch/task-$1" | tr '\n' ' '; }
is "$(files 1)" "README.md a.txt config.sh config.txt env.txt seen.txt " \
	"(the branch holds the files written and the command's records)"

# What the sandboxed command saw.
env1=$($O show orch/task-1:env.txt)
like "$env1" '^PATH=' "(the command's environment was recorded)"
is "$(echo "$env1" | grep -c -e SSH_AUTH_SOCK -e GIT_SSH -e agent.sock)" 0 \
	"the sandbox saw no SSH_AUTH_SOCK or ssh command"
is "$($O show orch/task-1:seen.txt orch/task-1:config.txt orch/task-1:env.txt | grep -c 'origin\.git')" 0 \
	"nor the origin's URL"
is "$($O show orch/task-1:seen.txt orch/task-1:config.txt | grep -c -e orch-secret-token -e helper)" 0 \
	"nor the node's credentials file or credential helper"

# Task 2: the bare repository's plain path.
is "$(submit "$T/origin.git")" 2 "task 2 (a bare repository's path) submitted"
is "$(sq 'SELECT repo FROM tasks WHERE id=2')" "$URL" "stored as its file:// URL"
wait_state 2 completed 60
is "$(state_of 2)" completed "task 2 completes"
is "$(files 2)" "$(files 1)" "its branch is on the origin, with the same files"
is "$(find "$ORCH_STATE_DIR/repos" -maxdepth 1 -name "*.git" | wc -l)" 1 "one mirror for both"

# Task 3: the node dies mid-implementing and its files are lost.
is "$(submit "$URL")" 3 "task 3 submitted"
after_write() { [ -n "$(last_snap 3)" ] && $O rev-parse -q --verify refs/orch/tasks/3; }
wait_for 40 after_write || bail "task 3's write was never pushed"
snap=$(last_snap 3)
is "$($O rev-parse refs/orch/tasks/3)" "$snap" "the write's snapshot is on the origin"
W=$(svc_worker)
kill -9 "$W"
service_kill 9
rm -rf "$ORCH_STATE_DIR/worktrees/task-3" "$ORCH_STATE_DIR"/repos
service_start
restored() { [ -e "$ORCH_STATE_DIR/worktrees/task-3/a.txt" ]; }
wait_for 30 restored
ok $? "the restarted stage has the written file back"
like "$(sq "SELECT $(sql_concat text '|') FROM events WHERE task_id=3")" \
	"workspace restored to snapshot ${snap:0:12}" "from the origin's snapshot"
wait_state 3 completed 60
is "$(state_of 3)" completed "task 3 completes"
is "$(files 3)" "$(files 1)" "its branch has the same files as without the crash"
is "$($O show orch/task-3:a.txt)" alpha "(and the written one as it was)"
is "$(mock_q "sum(1 for r in L if r['task'] == '3' and r['stage'] == 'implementing' and r['turn'] == 0)")" \
	1 "the journaled write was not asked again"

# Task 4: ssh:// through the node's own ssh command.
origin_fake_ssh "$T/ssh"
service_kill 15
export GIT_SSH_COMMAND="$T/ssh" GIT_SSH_VARIANT=simple
service_start
SURL="ssh://git@localhost$T/origin.git"
is "$(submit "$SURL")" 4 "task 4 (ssh:// URL) submitted"
wait_state 4 completed 60
is "$(state_of 4)" completed "task 4 completes"
is "$(files 4)" "$(files 1)" "its branch is on the origin"
like "$(sort -u "$T/ssh.log")" "^SSH_AUTH_SOCK=$T/agent.sock" \
	"the node's git ran ssh with the node's agent"
like "$(grep -c git-receive-pack "$T/ssh.log")" '^[1-9]' "(it pushed through ssh)"
env4=$($O show orch/task-4:env.txt)
is "$(echo "$env4" | grep -c -e SSH_AUTH_SOCK -e GIT_SSH -e agent.sock)" 0 \
	"the sandbox saw none of it"
is "$(origin_user_refs "$T/origin.git")" "$user_refs" "the user's branches are still untouched"
# URL#BRANCH: the base is that branch.
is "$("$SUP" submit "From feature" --repo "$URL#feature" 2>"$T/submit.err")" 5 \
	"task 5 (URL#feature) submitted"
is "$(sq 'SELECT repo FROM tasks WHERE id=5')" "$URL#feature" "the task keeps the branch in its URL"
is "$(sq 'SELECT base_commit FROM tasks WHERE id=5')" "$($O rev-parse feature)" \
	"its base is the branch's commit, not HEAD's"
"$SUP" cancel 5 >/dev/null
wait_state 5 cancelled 20
is "$(state_of 5)" cancelled "(cancelled)"

# gc works in the mirror: the task's worktree registration and refs there
# go; the origin's copies stay with the origin.
M=$(find "$ORCH_STATE_DIR/repos" -maxdepth 1 -name 'origin-*.git' | head -1)
"$SUP" gc --older-than 0 >/dev/null
is "$(git -C "$M" for-each-ref 'refs/orch/tasks/' | wc -l)" 0 "gc removes the snapshot refs from the mirror"
is "$($O for-each-ref --format='%(refname)' 'refs/orch/tasks/' | tr '\n' ' ')" \
	"refs/orch/tasks/1 refs/orch/tasks/2 refs/orch/tasks/3 refs/orch/tasks/4 " "... and leaves the origin's"
db_intact
done_testing
