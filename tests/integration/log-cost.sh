#!/bin/bash
# Cost you can see: every model turn's tokens and time are in the log; with
# ORCH_LLM_PRICES (inline JSON or a file) show, stats (per day, per model,
# per repository), the JSON and the log turn tokens into money; without
# prices nothing shows a cost.  A bad price table or a cost budget without
# prices stops the program, naming the variable.
. "$ORCH_TESTS_DIR/integration/lib.sh"
make_repo "$T/repo"
cat >"$T/script.json" <<'JSON'
{
  "planning": [{"text": "Plan.", "usage": {"in": 1000, "out": 200}, "tool_calls": [{"name": "submit_plan", "arguments": {"plan": "Write b."}}]}],
  "implementing": [
    {"text": "w", "usage": {"in": 3000, "out": 500}, "tool_calls": [{"name": "write_file", "arguments": {"path": "b", "content": "y\n"}}]},
    {"text": "Done.", "usage": {"in": 4000, "out": 100}, "tool_calls": [{"name": "finish", "arguments": {"summary": "Wrote b."}}]}],
  "reviewing": [{"text": "OK.", "usage": {"in": 2000, "out": 50}, "tool_calls": [{"name": "submit_review", "arguments": {"verdict": "approve", "comments": "OK."}}]}]
}
JSON
export ORCH_LLM_SCRIPT="$T/script.json"
PRICES='{"scripted": {"input": 2.5, "output": 10, "cached_input": 1.25}}'

"$SUP" run "Write b" --repo "$T/repo" --auto-approve all >"$T/run1.out" 2>&1
is "$?" 0 "task 1 (no prices) completes"
is "$("$SUP" logs 1 --kind model | grep -c 'model turn')" 4 "every model turn is in the log"
like "$("$SUP" logs 1 --kind model | grep 'model turn' | head -1)" \
	'\[planning\] model turn \(scripted\): 1000 tokens in, 200 out, [0-9]+\.[0-9] s$' "with its tokens and time, and no cost"
is "$("$SUP" logs 1 --json --kind model | python3 -c '
import json, sys
t = [json.loads(l) for l in sys.stdin]
t = [e for e in t if "tokens_in" in e]
print(sum(e["tokens_in"] for e in t), sum(e["tokens_out"] for e in t), all(isinstance(e["duration_ms"], int) for e in t), any("cost" in e for e in t))')" \
	"10000 850 True False" "logs --json: tokens and time of each turn, no cost"
check "show has no cost without prices" sh -c "! '$SUP' show 1 | grep -q Cost"
is "$("$SUP" show 1 --json | python3 -c 'import json,sys; print("cost" in json.load(sys.stdin))')" False "nor show --json"
is "$("$SUP" stats --json | python3 -c 'import json,sys; print("cost" in json.load(sys.stdin))')" False "nor stats"
check "nor stats' text" sh -c "! '$SUP' stats | grep -q cost"

# Prices, inline: task 1's turns get a cost now.
export ORCH_LLM_PRICES="$PRICES"
is "$("$SUP" show 1 | grep '^Cost')" "Cost:     0.0335 (ORCH_LLM_PRICES)" "show: (10000 x 2.5 + 850 x 10) / 1e6"
is "$("$SUP" show 1 --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["cost"]; print(round(c["total"], 6), round(c["by_model"]["scripted"]["cost"], 6))')" \
	"0.0335 0.0335" "show --json (the API's task) has the cost"

# Task 2 in a second repository, priced from a file.
make_repo "$T/repo2"
printf '%s\n' "$PRICES" >"$T/prices.json"
export ORCH_LLM_PRICES="$T/prices.json"
"$SUP" run "Write b" --repo "$T/repo2" --auto-approve all >"$T/run2.out" 2>&1
is "$?" 0 "task 2 (prices from a file) completes"
like "$("$SUP" logs 2 --kind model | grep 'model turn' | head -1)" \
	'model turn \(scripted\): 1000 tokens in, 200 out, [0-9.]+ s, cost 0\.0045$' "its turns' log lines have their cost"
"$SUP" stats >"$T/stats.out"
like "$(grep '^cost' "$T/stats.out")" '^cost \(ORCH_LLM_PRICES\): 0\.0670$' "stats: the total"
like "$(grep -A1 'by day:' "$T/stats.out" | tail -1)" '^    [0-9]{4}-[0-9]{2}-[0-9]{2} +0\.0670  \(8 turns, 20000 tokens in, 1700 out\)$' "stats: per day"
like "$(grep -A1 'by model:' "$T/stats.out" | tail -1)" '^    scripted +0\.0670' "stats: per model"
is "$(grep -A2 'by repository:' "$T/stats.out" | tail -2 | awk '{print $2}' | tr '\n' ' ')" "0.0335 0.0335 " "stats: per repository"
is "$("$SUP" stats --json | python3 -c '
import json, sys
c = json.load(sys.stdin)["cost"]
print(round(c["total"], 4), sorted(c["by_repo"]) == sorted(["'"$T"'/repo", "'"$T"'/repo2"]), c["unpriced_models"])')" \
	"0.067 True []" "stats --json: the same"

# A model without a price adds tokens, not cost.
export ORCH_LLM_PRICES='{"other-model": {"input": 1, "output": 1}}'
like "$("$SUP" show 1 | grep '^Cost')" '^Cost:     0\.0000 \(ORCH_LLM_PRICES\); no price for scripted$' "an unpriced model is named, not guessed"

# Bad settings stop the program, naming the variable.
ORCH_LLM_PRICES='{"m": {"input": "cheap", "output": 1}}' "$SUP" stats >/dev/null 2>"$T/err"
is "$?" 2 "a bad price is a usage error"
like "$(cat "$T/err")" '^orch-supervisor: ORCH_LLM_PRICES: model "m": input must be a number' "... naming the variable"
ORCH_LLM_PRICES="$T/nope.json" "$SUP" stats >/dev/null 2>"$T/err"
like "$(cat "$T/err")" 'ORCH_LLM_PRICES: cannot open .*nope.json' "a missing price file too"
unset ORCH_LLM_PRICES
ORCH_MAX_COST=5 "$SUP" stats >/dev/null 2>"$T/err"
is "$?" 2 "a cost budget without prices is refused"
like "$(cat "$T/err")" 'ORCH_MAX_COST: a cost budget needs prices' "... saying why"
done_testing
