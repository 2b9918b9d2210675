#!/bin/bash
# The XSS suite in a real browser: the client's request and reason, the
# model's plan (one that closes the plan editor's textarea), a file named
# as an <img onerror>, a diff, a summary, review comments, a command's
# output, javascript: URLs and bytes that are not UTF-8, on every page
# (inbox, tasks, the task at each gate and at the end, a search).  xss.py
# checks from inside each page that none of it ran (a window flag every
# payload would set), that it shows as text, and that a form posted from
# another origin with the session's cookie is refused.
D="$ORCH_TESTS_DIR"
. "$D/integration/wf-lib.sh"
. "$D/integration/console-lib.sh"
. "$D/browser/browser-lib.sh"

browser_check
python3 - "$T/script.json" <<'PY'
import json, sys
P = lambda tag: "<script>window.__pwned='%s'</script>" % tag
I = lambda tag: "<img src=x onerror=\"window.__pwned='%s'\">" % tag
J = lambda tag: "<a href=\"javascript:window.__pwned='%s'\">link</a> javascript:window.__pwned='%s'" % (tag, tag)
plan = ("Plan " + P("plan") + I("plan-img") + J("plan-js") +
        "</textarea>" + P("textarea") + "\" onfocus=\"window.__pwned='attr'")
script = {
  "planning": [{"text": "Plan.", "tool_calls": [{"name": "submit_plan",
      "arguments": {"plan": plan}}]}],
  "implementing": [
    {"text": P("model-text"), "tool_calls": [
      {"name": "write_file", "arguments": {"path": I("fname") + ".txt",
         "content": P("diff") + "\n" + I("diff-img") + "\n"}},
      {"name": "run_command", "arguments": {"command":
         "printf 'x\\377y\\n' > bad.bin; touch \"$(printf 'f\\377.txt')\"; echo '" + P("cmd") + "'"}}]},
    {"text": "Done.", "tool_calls": [{"name": "finish", "arguments":
      {"summary": "Summary " + I("summary") + J("summary-js")}}]}
  ],
  "reviewing": [{"text": "OK.", "tool_calls": [{"name": "submit_review",
      "arguments": {"verdict": "approve", "comments": P("review") + J("review-js")}}]}]
}
json.dump(script, open(sys.argv[1], "w"))
PY

wf_repo "$T/repo"
wf_mock_start
console_env
service_start
wait_for 10 curl -s "$URL/login" || bail "the console does not answer"

REQ="Request <script>window.__pwned='request'</script><img src=x onerror=\"window.__pwned='req-img'\">"
VERIFY="printf '<script>window.__pwned=\"verify\"</script>\\377\\n'"
"$SUP" submit "$REQ" --repo "$T/repo" --verify "$VERIFY" >/dev/null
wait_for 40 state_is 1 plan_awaiting_approval || bail "no plan"

# The other origin: a page that posts a form to the console on load.
mkdir -p "$T/evil"
EVIL_PORT=$(free_port)
cat >"$T/evil/index.html" <<HTML
<!DOCTYPE html><html><body>
<form id="f" method="post" action="$URL/tasks/1/cancel">
<input type="hidden" name="csrf" value="0000000000000000000000000000000000000000000000000000000000000000">
</form><script>document.getElementById("f").submit();</script></body></html>
HTML
python3 -m http.server --bind 127.0.0.1 --directory "$T/evil" "$EVIL_PORT" \
	>"$T/evil.log" 2>&1 &
EVIL=$!
wait_for 10 curl -s "http://127.0.0.1:$EVIL_PORT/" || bail "no other origin"

browser_run xss.py EVIL_URL="http://127.0.0.1:$EVIL_PORT/"
kill "$EVIL" 2>/dev/null
wait "$EVIL" 2>/dev/null

is "$(sq "SELECT count(*) FROM events WHERE task_id=1 AND text LIKE '%cancelled%'")" 0 \
	"the other origin's post cancelled nothing"
is "$(state_of 1)" completed "the task completed"
like "$(sq 'SELECT plan_rejection_reason FROM tasks WHERE id=1')" "window.__pwned='reason'" \
	"the hostile reason was stored as it was typed"
done_testing
