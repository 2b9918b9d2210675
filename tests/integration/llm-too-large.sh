#!/bin/bash
# A conversation too large for one message to the model process (its tool
# results past PROTO_MAX_DATA) is a permanent failure of the stage with its
# size: it would be as large on every try, so it is neither retried nor
# sent, and the service goes on.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

make_repo "$T/repo"
# 250 KiB of plain text (no JSON escaping): 20 reads are 5 MB.
python3 -c 'import sys; sys.stdout.write(("abcdefghij" * 25 + "\n") * 1024)' \
	>"$T/repo/big.txt"
git -C "$T/repo" add big.txt
git -C "$T/repo" -c user.name=t -c user.email=t@t commit -qm big
python3 - "$T/script.json" <<'PY'
import json, sys
reads = [{"name": "read_file", "arguments": {"path": "big.txt"}}] * 20
s = {"planning": [
    {"text": "Reading it all.", "tool_calls": reads, "usage": {"in": 1, "out": 1}},
    {"text": "Never asked.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "x"}}]},
]}
json.dump(s, open(sys.argv[1], "w"))
PY
mock_start openai
service_start

"$SUP" run "Read everything" --repo "$T/repo" --auto-approve all \
	>"$T/run1.out" 2>"$T/run1.err"
ok $((! $?)) "run exits non-zero"
is "$(sq 'SELECT status FROM tasks WHERE id=1')" failed "the task fails"
like "$(sq 'SELECT error_details FROM tasks WHERE id=1')" \
	"the conversation is [0-9]+ bytes as JSON, over the [0-9]+ a message to the model process holds" \
	"the error says the conversation is too large, with its size"
is "$(mock_q 'len(L)')" 1 "the too-large conversation was never sent"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 0 "nor retried"
is "$(sq "SELECT count(*) FROM journal WHERE task_id=1 AND kind='tool'")" 20 \
	"the tool results were journaled"
check "the service is still up" "$SUP" list
done_testing
