#!/bin/bash
# A task implemented on one node and verified on another (issue 13,
# mn-chaos: "push of refs/heads/orch/task-N: ... is not in the mirror").
# Node a implements and stops at the implementation's gate; a leaves; the
# implementation is approved and node b, whose mirror never had the
# result branch, reviews, verifies and pushes it: the origin's result
# branch is a's commit, with the reference tree.
. "$ORCH_TESTS_DIR/multinode/lib.sh"

mn_script 0.05
mn_setup
node_start a
mn_reference
cli submit "Write the files" --repo "$ORIGIN" --verify "test -s both.txt" \
	--auto-approve plan >/dev/null || mn_bail "submit failed"
id=$(sq 'SELECT max(id) FROM tasks')
at_gate() { [ "$(state_of "$id")" = implementation_awaiting_approval ]; }
wait_for 60 at_gate || mn_bail "task $id never reached the implementation's gate"
node_stop a TERM
node_start b
cli approve "$id" >/dev/null || mn_bail "approve failed"
wait_for 60 all_ended
is "$(state_of "$id")" completed "task $id completes"
is "$(ran_on "$id" | sort | tr "\n" " ")" "a b " "implemented on a, verified on b"
branch=$(git --git-dir="$T/origin.git" rev-parse -q --verify "refs/heads/orch/task-$id")
ok "$([ -n "$branch" ]; echo $?)" "the origin has the result branch orch/task-$id"
is "$(git --git-dir="$T/origin.git" rev-parse "refs/heads/orch/task-$id^{tree}" 2>/dev/null)" "$REF" \
	"with the reference tree"
is "$(git --git-dir="$T/origin.git" rev-parse -q --verify "refs/orch/results/$id" 2>/dev/null)" "$branch" \
	"the very commit a made (refs/orch/results/$id)"
# The fence: every commit a node's worker pushes names the lease epoch it
# ran under, at most the task's last.
ep=$(git --git-dir="$T/origin.git" log -1 --format='%(trailers:key=Orch-Epoch,valueonly)' \
	"refs/orch/tasks/$id" 2>/dev/null | head -1)
last=$(sq "SELECT lease_epoch FROM tasks WHERE id=$id")
ok "$([ -n "$ep" ] && [ "$ep" -ge 1 ] && [ "$ep" -le "$last" ]; echo $?)" \
	"the snapshot ref's commit names its lease epoch ($ep of $last)"
node_stop b TERM
done_testing
