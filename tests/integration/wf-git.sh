#!/bin/bash
# The worker's git under what a model's commands leave in the workspace, end
# to end on the mock model (openai):
#   task 1: `git init sub` (as cargo new does) and a file over
#           ORCH_SNAPSHOT_MAX_FILE_BYTES: both are left out of the snapshot
#           with a note to the model, never a crash loop; a `finish` summary
#           over the limit is a tool error the model can fix;
#   task 2: a snapshot that takes longer than ORCH_WORKER_TIMEOUT_S: the
#           worker heartbeats through it and is not killed as hung;
#   task 3: the worker killed -9 during that snapshot: the command's result
#           was journaled first, so the restarted worker snapshots the
#           files as they are and the command ran once;
#   task 1 of a second state directory on the same repository: the first
#           one's orch/task-1 and refs/orch/tasks/1 are left alone, the
#           result goes to a name of its own, and `show` says which.
export ORCH_RETRY_BACKOFF_MS=300
export ORCH_WORKER_TIMEOUT_S=2
export ORCH_SNAPSHOT_MAX_FILE_BYTES=31000000
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

LONG=$(head -c 70000 /dev/zero | tr '\0' 's')
script() { # IMPLEMENTING-TURNS
	cat >"$T/script.json" <<JSON
{
  "planning": [
    {"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Do it."}}]}
  ],
  "implementing": [$1],
  "reviewing": [
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}
  ]
}
JSON
}
run() { # COMMAND: a run_command turn
	printf '{"text": "run", "tool_calls": [{"name": "run_command", "arguments": {"command": "%s"}}]}' "$1"
}
FINISH='{"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Did it."}}]}'
submit() {
	"$SUP" submit "Task" --repo "$T/repo" --auto-approve all 2>"$T/submit.err"
}
runs_of() { # TASK: how many times run_command was run
	sq "SELECT count(*) FROM events WHERE task_id=$1 AND text LIKE 'run_command%'"
}
tool_texts() { # TASK: every tool result the model was sent in implementing
	python3 - "$T/mock.log" "$T/bodies" "$1" <<'PY'
import json, os, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["task"] == sys.argv[3] and r["stage"] == "implementing":
        b = json.load(open(os.path.join(sys.argv[2], r["body"])))
        for m in b["messages"]:
            if m["role"] == "tool":
                print(m["content"])
PY
}

wf_repo "$T/repo"
R="git -C $T/repo"
wf_mock_start

# Task 1: a nested repository, a big file, a summary over the limit.
script "$(run 'git init -q sub && echo inner >sub/inner.txt && echo top >top.txt && head -c 32000000 /dev/zero >big.bin'),
  {\"text\": \"Long.\", \"tool_calls\": [{\"name\": \"finish\", \"arguments\": {\"summary\": \"$LONG\"}}]},
  $FINISH"
service_start
is "$(submit)" 1 "task 1 submitted"
wait_state 1 completed 60
is "$(state_of 1)" completed "task 1 (nested repository, big file) completes"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 0 "... with no restart"
is "$(runs_of 1)" 1 "... and its command ran once"
is "$($R ls-tree -r --name-only orch/task-1 | tr '\n' ' ')" "README.md config.sh top.txt " \
	"the result has the command's file, not the nested repository's or the big one"
texts=$(tool_texts 1)
like "$texts" 'sub/ is a nested git repository' "the model is told the nested repository was left out"
like "$texts" 'big.bin is 32000000 bytes, over the limit' "... and the big file"
like "$texts" 'finish: the summary is 70000 bytes, over the limit' \
	"a summary over the limit is a tool error the model reads"
like "$($R log -1 --format=%B orch/task-1)" 'Did it\.' "the second summary is the result's message"
like "$($R log -1 --format=%B orch/task-1)" 'Orch-State: [0-9a-f]{32}' \
	"... with the state directory's trailer"

# Task 2: a snapshot longer than the worker timeout (2 s) heartbeats.
BIG='for i in 1 2 3; do head -c 30000000 /dev/urandom >r$i; done'
script "$(run "$BIG"), $FINISH"
is "$(submit)" 2 "task 2 submitted"
wait_state 2 completed 90
is "$(state_of 2)" completed "task 2 (a long snapshot) completes"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=2')" 0 \
	"... the worker was not killed as hung during the snapshot"
is "$(runs_of 2)" 1 "... and its command ran once"
is "$($R ls-tree -r --name-only orch/task-2 | tr '\n' ' ')" "README.md config.sh r1 r2 r3 " \
	"the result has the command's files"

# Task 3: the worker killed during the snapshot.
is "$(submit)" 3 "task 3 submitted"
lock="$T/repo/.git/worktrees/task-3/index.lock"
wait_for 60 test -e "$lock" || bail "task 3's snapshot never started"
W=$(svc_worker)
like "$W" '^[0-9]+$' "the worker runs while git add holds the index"
kill -9 "$W"
wait_state 3 completed 90
is "$(state_of 3)" completed "task 3 (killed while snapshotting) completes"
state_is 3 completed ||
	echo "# $(sq 'SELECT error_details FROM tasks WHERE id=3'); $(sq "SELECT kind, substr(data, 1, 150) FROM journal WHERE task_id=3")"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=3')" 1 "... restarted once"
is "$(runs_of 3)" 1 "... and its command ran once: the restart snapshotted its files"
is "$($R ls-tree -r --name-only orch/task-3 | tr '\n' ' ')" "README.md config.sh r1 r2 r3 " \
	"the result has the command's files"
service_kill TERM

# A second state directory on the same repository.
b1=$($R rev-parse orch/task-1)
s1=$($R rev-parse refs/orch/tasks/1)
export ORCH_STATE_DIR="$T/state2"
store_new state2
script "$(run 'echo second >second.txt'), $FINISH"
service_start
is "$(submit)" 1 "the second state directory's task 1 submitted"
wait_state 1 completed 60
is "$(state_of 1)" completed "... completes"
is "$($R rev-parse orch/task-1)" "$b1" "the first state directory's orch/task-1 is unchanged"
is "$($R rev-parse refs/orch/tasks/1)" "$s1" "... and its refs/orch/tasks/1"
sid=$(sq "SELECT substr(value, 1, 12) FROM meta WHERE key='state_id'")
like "$sid" '^[0-9a-f]{12}$' "the second state directory has its own id"
is "$($R ls-tree -r --name-only "orch/task-1-$sid" | tr '\n' ' ')" "README.md config.sh second.txt " \
	"its result is on orch/task-1-$sid"
like "$("$SUP" show 1)" "Result: branch orch/task-1-$sid" "show names that branch"
like "$("$SUP" show 1 --json | jq -r .branch)" "^orch/task-1-$sid\$" "... and so does --json"
service_kill TERM

done_testing
