#!/bin/bash
# The console over TCP (ORCH_HTTP_LISTEN): every request authenticated.
# Without a token, with a wrong one: refused (401, a browser sent to the
# login page).  With the bearer token: the API answers.  A login turns the
# token into an HttpOnly, SameSite=Strict cookie; a browser's POST without
# the CSRF token, with a wrong one, or from another origin is refused, and
# with it the action is done in the session's name.  The security headers
# are on every answer; the token file is 0600; console-url prints it; the
# Unix socket is unchanged; beyond loopback the service warns at start.
D="$ORCH_TESTS_DIR/integration"
. "$D/lib.sh"
. "$D/console-lib.sh"

script_write_a
make_repo "$T/repo"
console_env
service_start
wait_for 10 curl -s "$URL/login" || bail "the console does not answer"

is "$(stat -c %a "$ORCH_STATE_DIR/http-token")" 600 "the token file is mode 0600"
TOKEN=$(console_token)
like "$TOKEN" '^[0-9a-f]{64}$' "the made token is 64 hex digits"
is "$("$SUP" console-url)" "$URL/login#token=$TOKEN" \
	"console-url prints the address with the token in the fragment"

is "$(http "$URL/v1/tasks")" 401 "the API without a token: 401"
like "$(cat "$T/http.head")" "WWW-Authenticate: Bearer" "... asking for a bearer token"
is "$(http -H "Authorization: Bearer ${TOKEN}0" "$URL/v1/tasks")" 401 "a wrong token: 401"
is "$(http -H "Authorization: Bearer ${TOKEN:0:63}" "$URL/v1/tasks")" 401 "the token's prefix: 401"
is "$(http -H "Authorization: Basic $TOKEN" "$URL/v1/tasks")" 401 "another scheme: 401"
is "$(http -H "Authorization: Bearer $TOKEN" "$URL/v1/tasks")" 200 "the bearer token: 200"
is "$(http -H "Authorization: Bearer x" "$URL/metrics")" 401 "/metrics with a wrong token: 401"
is "$(http "$URL/metrics")" 401 "/metrics without a token: 401"
is "$(http "$URL/inbox")" 303 "a page without a session: sent to the login page"
like "$(cat "$T/http.head")" "Location: /login" "... /login"
is "$(http -b "orch_session=$(printf 'a%.0s' $(seq 64))" "$URL/inbox")" 303 \
	"a made-up session cookie: sent to the login page"
is "$(http -X POST -d '{"request":"x","repo":"/tmp"}' "$URL/v1/tasks")" 401 \
	"a POST without a token: 401"
is "$(sq 'SELECT count(*) FROM tasks')" 0 "... and nothing was submitted"

# The headers on every answer, a page's and the API's.
http "$URL/login" >/dev/null
H=$(tr -d '\r' <"$T/http.head")
like "$H" "Content-Security-Policy: default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'" \
	"the login page has the Content-Security-Policy"
like "$H" "X-Content-Type-Options: nosniff" "... nosniff"
like "$H" "Referrer-Policy: no-referrer" "... no-referrer"
http -H "Authorization: Bearer $TOKEN" "$URL/v1/health" >/dev/null
like "$(tr -d '\r' <"$T/http.head")" "X-Content-Type-Options: nosniff" "the API has them too"
is "$(http "$URL/static/console.js")" 200 "the script is served without a session"
like "$(tr -d '\r' <"$T/http.head")" "Content-Type: text/javascript" "... as JavaScript"
is "$(grep -c innerHTML "$T/http.body")" 0 "... and never uses innerHTML"

# Login.
is "$(http --data-urlencode "token=wrong" --data-urlencode "name=eve" "$URL/login")" 403 \
	"a login with a wrong token: 403"
is "$(grep -ci set-cookie "$T/http.head")" 0 "... and no cookie"
is "$(http -H "Origin: http://evil.example" --data-urlencode "token=$TOKEN" \
	--data-urlencode "name=eve" "$URL/login")" 403 "a cross-site login: 403"
is "$(http --data-urlencode "token=$TOKEN" --data-urlencode "name=alice smith" "$URL/login")" 303 \
	"a login with the token: 303 to the inbox"
C=$(tr -d '\r' <"$T/http.head" | grep -i '^set-cookie:')
like "$C" "orch_session=[0-9a-f]{64}" "... a session cookie"
like "$C" "HttpOnly" "... HttpOnly"
like "$C" "SameSite=Strict" "... SameSite=Strict"
http -H "X-Forwarded-Proto: https" --data-urlencode "token=$TOKEN" --data-urlencode "name=p" "$URL/login" >/dev/null
like "$(tr -d '\r' <"$T/http.head" | grep -i '^set-cookie:')" "; Secure" "behind a TLS proxy the cookie is Secure"
login "alice smith"
like "$CSRF" '^[0-9a-f]{64}$' "the pages carry a CSRF token"
is "$(http -b "$T/jar" "$URL/inbox")" 200 "the inbox with the session: 200"
like "$(cat "$T/http.body")" "alice smith" "... names the person"
is "$(http -b "$T/jar" "$URL/v1/tasks")" 200 "the API with the session cookie: 200"

# A task at the plan's gate, then the browser's POSTs.
"$SUP" submit "Write a.txt" --repo "$T/repo" >/dev/null
wait_for 30 state_is 1 plan_awaiting_approval || bail "no plan to approve"
is "$(http -b "$T/jar" -X POST "$URL/tasks/1/approve")" 403 "a POST without the CSRF token: 403"
is "$(http -b "$T/jar" --data-urlencode "csrf=${CSRF:0:63}x" "$URL/tasks/1/approve")" 403 \
	"a POST with a wrong CSRF token: 403"
is "$(http -b "$T/jar" -H "Origin: http://evil.example" --data-urlencode "csrf=$CSRF" \
	"$URL/tasks/1/approve")" 403 "a cross-site POST with the right CSRF token: 403"
is "$(http -b "$T/jar" -H "Sec-Fetch-Site: cross-site" --data-urlencode "csrf=$CSRF" \
	"$URL/tasks/1/approve")" 403 "a POST the browser calls cross-site: 403"
is "$(http -b "$T/jar" -H 'Content-Type: application/json' -d '{}' "$URL/v1/tasks/1/approve")" 403 \
	"a JSON POST with the cookie and no X-CSRF-Token: 403"
is "$(state_of 1)" plan_awaiting_approval "... none of them approved anything"
is "$(http -b "$T/jar" -H "Origin: $URL" --data-urlencode "csrf=$CSRF" "$URL/tasks/1/approve")" 303 \
	"a same-origin POST with the CSRF token: done, back to the task"
is "$(sq 'SELECT plan_approved_by FROM tasks WHERE id=1')" "alice smith" \
	"the approver is the session's name"
wait_for 30 state_is 1 implementation_awaiting_approval
is "$(http -b "$T/jar" -H "X-CSRF-Token: $CSRF" -H 'Content-Type: application/json' \
	-d '{"by":"mallory"}' "$URL/v1/tasks/1/approve")" 200 \
	"the JSON API with the cookie and X-CSRF-Token: 200"
is "$(sq 'SELECT implementation_approved_by FROM tasks WHERE id=1')" "alice smith" \
	"... in the session's name, whatever the body says"
wait_for 30 state_is 1 completed
is "$(state_of 1)" completed "the task completes"

# A bearer client submits; ORCH_REPOS is not set, so any repository.
is "$(http -H "Authorization: Bearer $TOKEN" -d "{\"request\":\"Again\",\"repo\":\"$T/repo\",\"auto_approve\":\"all\"}" \
	"$URL/v1/tasks")" 201 "a bearer client submits"

wait_for 30 state_is 2 completed

# The other forms: submit, send the implementation back with comments,
# cancel, resume.
is "$(http -b "$T/jar" --data-urlencode "csrf=$CSRF" --data-urlencode "request=From the form" \
	--data-urlencode "repo=$T/repo" --data-urlencode "verify=" "$URL/submit")" 303 "the submit form"
like "$(tr -d '\r' <"$T/http.head")" "Location: /tasks/3" "... leads to the new task"
wait_for 30 state_is 3 plan_awaiting_approval
http -b "$T/jar" --data-urlencode "csrf=$CSRF" "$URL/tasks/3/approve" >/dev/null
wait_for 30 state_is 3 implementation_awaiting_approval
is "$(http -b "$T/jar" --data-urlencode "csrf=$CSRF" --data-urlencode "reason=Name it b.txt" \
	"$URL/tasks/3/answer")" 303 "the comments form"
is "$(sq 'SELECT implementation_rejection_reason FROM tasks WHERE id=3')" "Name it b.txt" \
	"... sends the implementation back with them"
like "$(sq "SELECT $(sql_concat text '|') FROM events WHERE task_id=3")" \
	"implementation rejected by alice smith: Name it b.txt" "... in the session's name"
wait_for 30 state_is 3 implementation_awaiting_approval
is "$(http -b "$T/jar" --data-urlencode "csrf=$CSRF" "$URL/tasks/3/cancel")" 303 "the cancel form"
is "$(state_of 3)" cancelled "... cancels"
is "$(http -b "$T/jar" --data-urlencode "csrf=$CSRF" "$URL/tasks/3/resume")" 409 \
	"resuming a cancelled task: 409"
like "$(cat "$T/http.body")" "cancelled" "... on a page that says why"
is "$(http -b "$T/jar" --data-urlencode "csrf=$CSRF" "$URL/tasks/3/frobnicate")" 404 \
	"an unknown action: 404"
# A stage the script has no turn for fails the task; resume it.
printf '{"planning": []}\n' >"$T/empty-script.json"
cp "$T/script.json" "$T/script.good"
cp "$T/empty-script.json" "$T/script.json"
http -b "$T/jar" --data-urlencode "csrf=$CSRF" --data-urlencode "request=Fails" \
	--data-urlencode "repo=$T/repo" "$URL/submit" >/dev/null
wait_for 30 state_is 4 failed
is "$(state_of 4)" failed "a task fails"
cp "$T/script.good" "$T/script.json"
is "$(http -b "$T/jar" --data-urlencode "csrf=$CSRF" "$URL/tasks/4/resume")" 303 "the resume form"
wait_for 30 state_is 4 plan_awaiting_approval
is "$(state_of 4)" plan_awaiting_approval "... and the task goes on"

# Logout ends the session.
is "$(http -b "$T/jar" --data-urlencode "csrf=$CSRF" "$URL/logout")" 303 "logout"
is "$(http -b "$T/jar" "$URL/v1/tasks")" 401 "the session is gone"

# The Unix socket: as before, no token.
is "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$ORCH_STATE_DIR/orch.sock" http://orch/v1/tasks)" \
	200 "the Unix socket needs no token"
"$SUP" list >/dev/null 2>&1
ok $? "the CLI works through the socket"
service_kill TERM

# ORCH_REPOS over TCP.
export ORCH_REPOS="$T/other, $T/repo"
# And a list longer than a page: 250 more finished tasks (ids 5 to 254).
sq "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<250)
	INSERT INTO tasks(request, status, workflow_state, repo)
	SELECT 'bulk '||i, 'completed', 'completed', '/srv' FROM n"
service_start
wait_for 10 curl -s "$URL/login"
H="Authorization: Bearer $TOKEN"
is "$(http -H "$H" "$URL/tasks")" 200 "the task list's first page"
is "$(grep -o 'href="/tasks/[0-9]*"' "$T/http.body" | head -1)" 'href="/tasks/254"' "... starts with the newest"
is "$(grep -o 'href="/tasks/[0-9]*"' "$T/http.body" | wc -l)" 200 "... holds 200 tasks"
NEXT=$(sed -n 's/.*href="\(\/tasks?[^"]*before=[0-9]*\)" rel="next".*/\1/p' "$T/http.body" | sed 's/&amp;/\&/g')
is "$NEXT" "/tasks?status=&q=&before=55" "... and links the older ones"
is "$(http -H "$H" "$URL$NEXT")" 200 "the older page"
is "$(grep -o 'href="/tasks/[0-9]*"' "$T/http.body" | wc -l)" 54 "... holds the other 54"
is "$(grep -c 'rel="next"' "$T/http.body")" 0 "... and is the last"
is "$(http -H "Authorization: Bearer $TOKEN" -d "{\"request\":\"x\",\"repo\":\"$ORCH_STATE_DIR\"}" \
	"$URL/v1/tasks")" 403 "a repository not in ORCH_REPOS: 403"
like "$(cat "$T/http.body")" "ORCH_REPOS" "... saying so"
is "$(http -H "Authorization: Bearer $TOKEN" -d "{\"request\":\"x\",\"repo\":\"$T/repo\"}" \
	"$URL/v1/tasks")" 201 "one that is: 201"
service_kill TERM
unset ORCH_REPOS

# Beyond loopback: a warning.  A token of our own; a short one refused.
HTTP_PORT=$(free_port)
ORCH_HTTP_LISTEN="0.0.0.0:$HTTP_PORT" ORCH_HTTP_TOKEN=0123456789abcdef-mine service_start
wait_for 10 curl -s "http://127.0.0.1:$HTTP_PORT/login"
like "$(cat "$T/service.log")" "beyond loopback and has no TLS" "0.0.0.0 without TLS: a warning at start"
is "$(http -H "Authorization: Bearer 0123456789abcdef-mine" "http://127.0.0.1:$HTTP_PORT/v1/health")" 200 \
	"ORCH_HTTP_TOKEN is the token"
is "$(http -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT/v1/health")" 401 \
	"... and the file's is not"
service_kill TERM
ORCH_HTTP_TOKEN=short "$SUP" list >"$T/short.out" 2>&1
is "$?" 2 "a short ORCH_HTTP_TOKEN is refused at start"
ORCH_HTTP_LISTEN=nonsense "$SUP" list >"$T/bad.out" 2>&1
is "$?" 2 "a malformed ORCH_HTTP_LISTEN is refused"
like "$(cat "$T/bad.out")" "ORCH_HTTP_LISTEN" "... naming it"
done_testing
