#!/bin/bash
# Workers that send malformed or forbidden frames are killed with a protocol
# error and restarted; the service neither crashes nor balloons in memory.
. "$ORCH_TESTS_DIR/integration/lib.sh"

script_write_a
export ORCH_MAX_RETRIES=10
vm() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$SVC/status"; }

make_repo "$T/repo"
bad_worker garbage truncated oversized nested hugearray badseq wrongdir
service_start
svc=$SVC
is "$("$SUP" submit "Write a file" --repo "$T/repo" --auto-approve all)" 1 "submit prints id 1"
# Sample the service while the bad workers run: it must stay up throughout.
alive=0
end=$(($(date +%s) + 60))
while ! state_is 1 completed && ! state_is 1 failed && [ "$(date +%s)" -lt "$end" ]; do
	kill -0 "$svc" 2>/dev/null || { alive=1; break; }
	sleep 0.05
done
ok $alive "the service stays up while the bad workers run"
is "$(state_of 1)" completed "the task completes in the end"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 7 "retry_count is 7 (one per bad worker)"

errs=$(sq "SELECT text FROM events WHERE task_id=1 AND kind='error' ORDER BY id")
printf "%s\n" "$errs" | sed "s/^/# /"
is "$(printf '%s\n' "$errs" | grep -c 'restarting from the last checkpoint')" 7 \
	"seven restart events"
ev() { printf '%s\n' "$errs" | grep -F "mode $1" | head -1; }
for m in garbage oversized nested hugearray badseq wrongdir; do
	like "$(ev $m)" 'protocol error' "$m: the event says protocol error"
done
like "$(ev garbage)" 'protocol error: .*(frame|large|length|size)' "garbage: the bad frame length is named"
like "$(ev oversized)" 'protocol error: .*(frame|large|length|size)' "oversized: the frame size is named"
like "$(ev nested)" 'protocol error: .*(nest|depth|DEPTH)' "nested: the nesting is named"
like "$(ev hugearray)" 'protocol error: .*(count|array|large)' "hugearray: the bad count is named"
like "$(ev badseq)" 'protocol error: journal seq 42, expected 1' "badseq: the sequence is named"
like "$(ev wrongdir)" "protocol error: .*[Aa][Cc][Kk].*not a worker's message" "wrongdir: the ACK is named"
like "$(ev truncated)" 'worker [0-9]+ .*(exited|truncated|protocol error)' "truncated: the worker's end is recorded"

check "the same service is still running" kill -0 "$svc"
is "$(curl -s --max-time 5 --unix-socket "$ORCH_STATE_DIR/orch.sock" http://orch/v1/health | jq -r .pid)" \
	"$svc" "and still answers its socket"
rss=$(vm VmRSS)
hwm=$(vm VmHWM)
check "its VmRSS stays under 64 MB (${rss} kB)" test "${rss:-999999}" -lt 65536
check "its peak VmHWM stayed under 64 MB (${hwm} kB)" test "${hwm:-999999}" -lt 65536
is "$(git -C "$T/repo" show orch/task-1:a.txt)" alpha "the branch has a.txt"
db_intact
done_testing
