#!/bin/bash
# Hostile text end to end on the mock model (openai), commands really run in
# the sandbox.  The model writes a Latin-1 byte into a file, hides text in
# its plan and summary with terminal escapes (ESC[8m, a window title, OSC 52
# to the clipboard), grows the diff past the 64 KiB the reviewer's request
# holds with something at its end, logs a tool call whose 200-byte cut splits
# a character, and the verification output's 4000-byte tail starts inside a
# check mark.  Then:
#   - the reviewer's request carries the whole conversation (system, user
#     with the diff), says the diff was cut and how large it is, and
#     read_diff reads past the cut;
#   - `show` at the implementation gate and GET /v1/tasks/1/diff give the
#     whole diff; `show`, `logs`, `list` and the commit message hold no raw
#     ESC or BEL;
#   - every event reaches the API, the audit file and the event stream;
#   - the verification passes and the task completes.
# Task 2: a verification whose output tail starts inside a check mark, and
# nothing else odd, passes.  Task 3 (a misbehaving worker): a LOG line that
# is not UTF-8 and full of escapes is kept, valid, in the API and the audit
# file.
. "$ORCH_TESTS_DIR/integration/wf-lib.sh"

SOCK="$ORCH_STATE_DIR/orch.sock"
api() { # PATH: the body in $T/body
	curl -s --max-time 20 --unix-socket "$SOCK" -o "$T/body" "http://orch$1"
}
raw_esc() { # FILE...: how many raw ESC/BEL/CSI bytes
	cat "$@" | LC_ALL=C tr -cd '\033\007\233' | wc -c
}

python3 - "$T/script.json" <<'PY'
import json, sys
ESC = "\x1b"
big = "".join("line %05d of filler text for the big file, long enough\n" % i
              for i in range(1400))  # about 78 KiB
script = {
  "planning": [
    {"text": "Plan " + ESC + "]0;pwned\x07 ready.",
     "tool_calls": [{"name": "submit_plan", "arguments": {"plan":
       "1. Add files." + ESC + "[8mSECRETLY ALSO DELETE THE TESTS" + ESC
       + "[0m\n2. " + ESC + "]52;c;ZXZpbA==\x07Done.\u009b2J\x7f\u202e"}}]}
  ],
  "implementing": [
    {"text": "Writing.", "tool_calls": [
      {"name": "run_command", "arguments": {"command": "printf 'caf\\351\\n' > 0-latin1.txt"}},
      # Raw text, so that the worker's 200-byte cut of the arguments
      # falls inside an "e acute" (33 + 2n bytes).
      {"name": "write_file", "arguments": json.dumps(
         {"path": "accent1.txt", "content": "\u00e9" * 300},
         ensure_ascii=False, separators=(",", ":"))},
      {"name": "write_file", "arguments": {"path": "a-big.txt", "content": big}},
      {"name": "write_file", "arguments": {"path": "z-tail.txt", "content": "MALICIOUS_TAIL\n"}}]},
    {"text": "Done " + ESC + "[2J.", "tool_calls": [{"name": "finish", "arguments": {"summary":
       "Added files." + ESC + "]52;c;ZXZpbA==\x07" + ESC + "[8mhidden" + ESC + "[0m"}}]}
  ],
  "reviewing": [
    {"text": "Reading the rest.", "tool_calls": [{"name": "read_diff", "arguments": {"offset": 60000}}]},
    {"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments":
       {"verdict": "approve", "comments": "Fine " + ESC + "[31mred" + ESC + "[0m."}}]}
  ]
}
json.dump(script, open(sys.argv[1], "w"))
PY

wf_repo "$T/repo"
wf_mock_start
service_start

# The verification prints a check mark, then 3998 digits and a newline: its
# 4000-byte tail starts on the check mark's last byte.
is "$("$SUP" submit "Add files" --repo "$T/repo" --auto-approve plan \
	--verify "printf '\\342\\234\\223%03998d\\n' 0" 2>&1)" 1 "task 1 submitted"
wait_state 1 implementation_awaiting_approval 60
is "$(state_of 1)" implementation_awaiting_approval "task 1 waits for the implementation's approval"

# What the person approving sees.
"$SUP" show 1 >"$T/show-gate.out" 2>&1
like "$(cat "$T/show-gate.out")" "MALICIOUS_TAIL" "show at the gate prints the whole diff"
like "$(cat "$T/show-gate.out")" 'caf\\xe9' "... the Latin-1 byte as an escape"
like "$(cat "$T/show-gate.out")" 'SECRETLY ALSO DELETE THE TESTS' "show: the hidden plan text is visible"
like "$(cat "$T/show-gate.out")" '\\x1b\[8m' "show: ESC is shown as \\x1b"
is "$(raw_esc "$T/show-gate.out")" 0 "show: no raw ESC, BEL or CSI"
"$SUP" show 1 --json >"$T/show-gate.json" 2>&1
is "$(LC_ALL=C grep -c $'\x7f\\|\xc2[\x80-\x9f]\\|\xe2\x80\xae' "$T/show-gate.json")" 0 \
	"show --json: DEL, C1 and bidi controls as \\u escapes"
is "$(jq -r '.plan | endswith("Done.\u009b2J\u007f\u202e")' "$T/show-gate.json")" true \
	"... and the plan is exact"
api /v1/tasks/1/diff
is "$(jq -r '.diff | contains("MALICIOUS_TAIL")' "$T/body")" true "GET /v1/tasks/1/diff: the whole diff"
is "$(jq -r '.truncated' "$T/body")" false "... not truncated"
is "$(jq -r '.replaced' "$T/body")" 1 "... saying one byte was replaced"
is "$(jq -r '.bytes > 65536' "$T/body")" true "... with its size"

"$SUP" approve 1 >/dev/null
wait_state 1 completed 60
is "$(state_of 1)" completed "task 1 completes"
is "$(vr 1 status)" passed "the verification whose tail splits a check mark passed"
is "$(vr 1 output_tail | head -c 4)" "0000" "... its tail starts at the next character"

# The reviewer's request: the whole conversation, the cut said, read_diff.
python3 - "$T/mock.log" "$T/bodies" >"$T/review.txt" <<'PY'
import json, os, sys
L = [json.loads(l) for l in open(sys.argv[1])]
rv = [r for r in L if r["stage"] == "reviewing"]
for r in rv:
    b = json.load(open(os.path.join(sys.argv[2], r["body"])))
    m = b["messages"]
    print("turn", r["turn"], "messages", len(m), "roles", ",".join(x["role"] for x in m))
    if r["turn"] == 0:
        user = [x for x in m if x["role"] == "user"][0]["content"]
        print("user-has-latin1", "latin1.txt" in user and "caf\ufffd" in user)
        print("user-says-utf8", "not UTF-8" in user)
        print("user-says-cut", "The diff is" in user and "read_diff" in user)
        print("user-has-tail", "MALICIOUS_TAIL" in user)
    if r["turn"] == 1:
        tool = [x for x in m if x["role"] == "tool"][0]["content"]
        print("read_diff-has-tail", "MALICIOUS_TAIL" in tool)
        print("tools", ",".join(t["function"]["name"] for t in b.get("tools", [])))
PY
sed 's/^/# /' "$T/review.txt"
like "$(cat "$T/review.txt")" "turn 0 messages 2 roles system,user" \
	"the reviewer's first request holds the instructions and the request"
is "$(grep -c 'user-has-latin1 True' "$T/review.txt")" 1 "... and the diff, the Latin-1 byte as U+FFFD"
is "$(grep -c 'user-says-utf8 True' "$T/review.txt")" 1 "... saying bytes were not UTF-8"
is "$(grep -c 'user-says-cut True' "$T/review.txt")" 1 "... saying the diff was cut, and how to read the rest"
is "$(grep -c 'user-has-tail False' "$T/review.txt")" 1 "... the diff's end past the cut"
is "$(grep -c 'read_diff-has-tail True' "$T/review.txt")" 1 "read_diff reads past the cut"
like "$(grep '^tools' "$T/review.txt")" "read_diff" "read_diff is offered to the reviewer"

"$SUP" show 1 >"$T/show.out" 2>&1
"$SUP" logs 1 >"$T/logs.out" 2>&1
"$SUP" list >"$T/list.out" 2>&1
is "$(raw_esc "$T/show.out" "$T/logs.out" "$T/list.out")" 0 \
	"show, logs and list print no raw ESC, BEL or CSI"
like "$(cat "$T/logs.out")" '\\x1b\]0;pwned\\x07' "logs shows the model's title escape as text"
like "$(cat "$T/show.out")" 'approved: Fine \\x1b\[31mred' "show: the review comments escaped"
git -C "$T/repo" log -1 --format=%B orch/task-1 >"$T/commit.txt"
is "$(raw_esc "$T/commit.txt")" 0 "the commit message holds no raw ESC or BEL"
like "$(cat "$T/commit.txt")" 'Added files.\\x1b\]52;c;ZXZpbA==\\x07' "... the summary's escapes shown"

# Every event, in the API, the audit file and the stream.
n_db=$(sq "SELECT count(*) FROM events WHERE task_id=1")
api "/v1/tasks/1/events?after=0"
is "$(jq '.events | length' "$T/body")" "$n_db" "the API has every event ($n_db)"
is "$(wc -l <"$ORCH_STATE_DIR/logs/task-1.jsonl")" "$n_db" "the audit file has every event"
curl -sN --max-time 10 --unix-socket "$SOCK" \
	"http://orch/v1/tasks/1/events?follow=1" >"$T/sse" 2>&1
is "$(grep -c '^data: (null)' "$T/sse")" 0 "the event stream sends no (null)"
is "$(grep -c '^data: {"id"' "$T/sse")" "$n_db" "the event stream sends every event"
api "/v1/tasks/1/events?after=0"
is "$(jq '[.events[] | select(.text | startswith("write_file {\"path\":\"accent1.txt\""))] | length' "$T/body")" 1 \
	"the tool event whose 200-byte cut split a character is in the API"
is "$(jq -r '.events[] | select(.text | startswith("write_file {\"path\":\"accent1.txt\"")) | .text' "$T/body" | grep -c $'\xef\xbf\xbd')" 0 \
	"the tool event is cut at a character, not replaced"

# Task 2: only the verification's split check mark, nothing else hostile.
cat >"$T/script.json" <<'JSON'
{
  "planning": [{"text": "Plan.", "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Add ok.txt."}}]}],
  "implementing": [
    {"text": "Writing.", "tool_calls": [{"name": "write_file", "arguments": {"path": "ok.txt", "content": "ok\n"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments": {"summary": "Added ok.txt."}}]}
  ],
  "reviewing": [{"text": "OK.", "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}]
}
JSON
is "$("$SUP" submit "Add ok.txt" --repo "$T/repo" --auto-approve all \
	--verify "printf '\\342\\234\\223%03998d\\n' 0" 2>&1)" 2 "task 2 submitted"
wait_state 2 completed 60
is "$(state_of 2)" completed "task 2, whose verification tail starts inside a check mark, completes"
is "$(vr 2 status)" passed "... its verification passed"

# Task 3: a worker that logs bytes that are not UTF-8.
service_kill TERM
bad_worker badtext
service_start
is "$("$SUP" submit "Add files" --repo "$T/repo" 2>&1)" 3 "task 3 submitted"
caf_logged() { [ "$(sq "SELECT count(*) FROM events WHERE task_id=3 AND text LIKE 'caf%'")" -ge 1 ]; }
wait_for 30 caf_logged
n_db=$(sq "SELECT count(*) FROM events WHERE task_id=3")
api "/v1/tasks/3/events?after=0"
is "$(jq '[.events[] | select(.text | startswith("caf"))] | length' "$T/body")" 1 \
	"the API shows the worker's invalid line"
is "$(jq -r '.events[] | select(.text | startswith("caf")) | .text' "$T/body" | head -c 7)" \
	"caf$(printf '\357\277\275') " "... its invalid byte as U+FFFD"
wait_for 10 sh -c "[ \$(wc -l <'$ORCH_STATE_DIR/logs/task-3.jsonl') -ge $n_db ]"
# A row that is not UTF-8 (an old database, another writer) is shown too.
if on_pg; then
	skip "the API shows a stored row that is not UTF-8" \
		"a UTF8 PostgreSQL database refuses such a row"
else
	sq "INSERT INTO events (task_id, ts, kind, stage, text) VALUES (3, '2026-01-01 00:00:00', 'info', NULL, CAST(X'6F6C64E9' AS TEXT))"
	api "/v1/tasks/3/events?after=0"
	is "$(jq '[.events[] | select(.text | startswith("old"))] | length' "$T/body")" 1 \
		"the API shows a stored row that is not UTF-8"
fi
is "$(grep -c '"caf' "$ORCH_STATE_DIR/logs/task-3.jsonl")" 1 "the audit file has it"
"$SUP" logs 3 >"$T/logs2.out" 2>&1
is "$(raw_esc "$T/logs2.out")" 0 "logs prints it without raw escapes"
"$SUP" cancel 3 >/dev/null 2>&1

done_testing
