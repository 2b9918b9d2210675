#!/bin/bash
# The demo: a throwaway git repository, and one task through every stage on
# the built-in scripted model, printing the task's log as it goes.
set -euo pipefail

cd "$(dirname "$0")/.."
sup=$(pwd)/build/supervisor/orch-supervisor
demo=$(mktemp -d /tmp/orch-demo.XXXXXX)
export ORCH_STATE_DIR="$demo/state"
export ORCH_LLM_PROVIDER=scripted
unset ORCH_LLM_API_KEY OPENAI_API_KEY ANTHROPIC_API_KEY

repo="$demo/repo"
mkdir -p "$repo"
git -C "$repo" init -q -b main
printf '# Demo project\n' >"$repo/README.md"
git -C "$repo" add README.md
git -C "$repo" -c user.name=demo -c user.email=demo@localhost \
	commit -qm "Start the demo project"

echo "== A task in $repo (state in $ORCH_STATE_DIR)"
"$sup" run "Add a greeting script with a test" --repo "$repo" \
	--verify "sh test.sh" --auto-approve all
echo
echo "== orch-supervisor show 1"
"$sup" show 1
echo
echo "== The result, ready to review and merge: git -C $repo show --stat orch/task-1"
git -C "$repo" --no-pager show --stat orch/task-1
echo
echo "The demo's files stay in $demo; remove them with: rm -rf $demo"
