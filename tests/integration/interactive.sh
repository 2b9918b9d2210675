#!/bin/bash
# `run` on a terminal asks at each approval gate: yes goes on, no stops
# there (resumable), and reject asks for a reason and plans again.  The
# terminal is a pty from script(1); answers are typed when the prompt shows.
. "$ORCH_TESTS_DIR/integration/lib.sh"

command -v script >/dev/null || { echo "1..0 # SKIP script(1) is missing"; exit 0; }
make_repo "$T/repo"

# prompts OUT TEXT N: OUT shows TEXT at least N times.
prompts() { [ "$(grep -o "$2" "$1" | wc -l)" -ge "$3" ]; }

# drive OUT ANSWER...: run a task on a pty, typing each answer once the
# next "Approve?" prompt (or, for reason:TEXT, the "Reason:" prompt) shows.
drive() {
	local out=$1 n=0 a
	shift
	: >"$out"
	{
		for a in "$@"; do
			case $a in
			reason:*) wait_for 30 prompts "$out" "Reason:" 1 ;;
			*) n=$((n + 1)); wait_for 30 prompts "$out" "Approve?" $n ;;
			esac
			printf '%s\n' "${a#reason:}"
		done
		# Keep the terminal open until the run is over.
		wait_for 60 grep -Eq 'Task [0-9]+ (completed|failed|cancelled)|waits for approval' "$out"
	} | timeout 90 script -qec "$SUP run 'Add a greeting script' --repo '$T/repo'" /dev/null >"$out" 2>&1
}

drive "$T/one.out" y y
like "$(cat "$T/one.out")" 'Approve\?' "the plan gate asks on the terminal"
is "$(grep -o 'Approve?' "$T/one.out" | wc -l)" 2 "... and so does the implementation gate"
is "$(state_of 1)" completed "answering yes twice completes the task"
like "$(sq 'SELECT plan_approved_at FROM tasks WHERE id=1')" '^20' "the plan approval is recorded"
like "$(sq 'SELECT implementation_approved_at FROM tasks WHERE id=1')" '^20' "the implementation approval too"

drive "$T/two.out" n
is "$(state_of 2)" plan_awaiting_approval "answering no stops at the gate"
like "$(cat "$T/two.out")" 'Task 2 waits for approval: .orch-supervisor approve 2' "and says how to go on"
like "$("$SUP" --list-resumable)" '^2 ' "the task stays resumable"

drive "$T/three.out" r "reason:shorter please" y y
is "$(sq 'SELECT plan_rejection_reason FROM tasks WHERE id=3')" "shorter please" \
	"reject asks for a reason and records it"
is "$(sq "SELECT count(*) FROM checkpoints WHERE task_id=3 AND checkpoint_name='start_planning'")" 2 \
	"the plan is made again"
is "$(state_of 3)" completed "then the task completes"
done_testing
