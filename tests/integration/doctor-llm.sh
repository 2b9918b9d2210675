#!/bin/bash
# doctor's LLM check against an OpenAI-compatible server: a server without
# GET /models (some proxies) is a warning that says so; a refused
# connection or a refused key is a failure.
. "$ORCH_TESTS_DIR/integration/llm-lib.sh"

echo '{}' >"$T/script.json"
# models_mock MODE: the mock answering GET /models that way.
models_mock() {
	if [ -n "$MOCK" ]; then
		kill "$MOCK" 2>/dev/null
		wait "$MOCK" 2>/dev/null
	fi
	rm -f "$T/mock.port"
	python3 "$MOCK_PY" --port-file "$T/mock.port" --script "$T/script.json" \
		--log "$T/mock.log" --key "$KEY" --models "$1" 2>"$T/mock.err" &
	MOCK=$!
	wait_for 10 test -s "$T/mock.port" || bail "the mock did not start"
	export ORCH_LLM_PROVIDER=openai ORCH_LLM_API_KEY="$KEY"
	ORCH_LLM_BASE_URL="http://127.0.0.1:$(cat "$T/mock.port")/v1"
	export ORCH_LLM_BASE_URL
}
doctor() { # the LLM line in $line, the exit status in $rc
	"$SUP" doctor >"$T/doctor.out" 2>&1
	rc=$?
	line=$(grep 'LLM endpoint' "$T/doctor.out")
}

models_mock list
doctor
rc_list=$rc
like "$line" '^ok +LLM endpoint openai answers' "a server with a models list: ok"

models_mock 404
doctor
like "$line" '^warn +LLM endpoint.*HTTP 404.*no models list' \
	"a server without GET /models: a warning that says so"
is "$rc" "$rc_list" "... which does not change doctor's exit status"
like "$(grep -c '"method": "GET"' "$T/mock.log")" '^[1-9]' "... after a real request"

models_mock 401
doctor
like "$line" '^FAIL +LLM endpoint.*HTTP 401.*ORCH_LLM_API_KEY' "a refused key is a failure"
is "$rc" 1 "... and doctor exits 1"

port=$(cat "$T/mock.port")
kill "$MOCK" 2>/dev/null
wait "$MOCK" 2>/dev/null
MOCK=
doctor
like "$line" '^FAIL +LLM endpoint.*(Couldn.t connect|connect)' "a refused connection is a failure"
is "$rc" 1 "... and doctor exits 1"
grep -q "$KEY" "$T/doctor.out"
is "$?" 1 "the key is never printed"

done_testing
