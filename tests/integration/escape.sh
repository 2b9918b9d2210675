#!/bin/bash
# The escape suite: in the implementing stage of one real task, a scripted
# model tries, through run_command and the file tools, to read secrets (a
# planted ~/.ssh key, the database, .env files, the service's environment),
# reach the network, write outside the workspace (absolute paths, "..",
# symlinks planted by an earlier command, a symlinked parent directory),
# write the repository's .git, kill the supervisor or everything, see the
# host's processes, and exhaust the machine (fork bomb, memory, output,
# a command that ignores SIGTERM, a daemon that double-forks, /dev/shm,
# memfds, other socket families).  Each attempt must fail harmlessly, the
# task must complete, and the host must be as it was: what each command
# produced is read back from the journal.
#
# Runs as root (with cgroup v1 here: the per-command memory and pids
# cgroups) or as an unprivileged user (escape-unprivileged.sh: no cgroups,
# so the way without them).  The fork bomb is not run as root without a
# pids cgroup, where nothing would stop it.  ESCAPE_SANDBOX_TAP, when set,
# names the TAP output of test-sandbox run as the same user: its lines are
# reported here too.
. "$ORCH_TESTS_DIR/integration/lib.sh"

export ORCH_CMD_TIMEOUT_S=2
export ORCH_MAX_STEPS=200
CAN="cnry$$x$RANDOM$RANDOM"
MARK="orchdaemon$$x$RANDOM"
STATE=$ORCH_STATE_DIR
REPO=$T/repo
UID_NOW=$(id -u)
LPID=

trap 'if [ -n "$LPID" ]; then kill "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null; fi; cleanup' EXIT

# Secrets the sandbox must never show: in files on the host, and in the
# service's environment (the OpenAI key) and its .env (the API key the
# worker is given in START).
mkdir -p "$HOME/.ssh" "$T/svc" "$T/target"
mkdir -p "$(dirname "$STATE")" && mkdir -m 700 "$STATE"
printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nSSH-%s\n' "$CAN" >"$HOME/.ssh/id_rsa"
chmod 600 "$HOME/.ssh/id_rsa"
printf 'ORCH_LLM_API_KEY=sk-DOTENV-%s\n' "$CAN" >"$T/svc/.env"
printf 'SECRET=STATEENV-%s\n' "$CAN" >"$STATE/.env"
printf 'VICTIM\n' >"$T/victim.txt"
export OPENAI_API_KEY="sk-ENVKEY-$CAN"

make_repo "$REPO"
git_state() { # everything of the user's repository a command could change
	(
		cd "$REPO/.git" &&
			find hooks -printf '%p %m %s %y\n' | sort &&
			find hooks -type f -exec sha256sum {} + | sort &&
			sha256sum config HEAD &&
			git -C "$REPO" rev-parse main &&
			git -C "$REPO" status --porcelain
	) | sha256sum
}
git_before=$(git_state)

# A listener on every address of the host: nothing may connect to it.
python3 - "$T/listener" <<'PY' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 0))
s.listen(16)
open(sys.argv[1] + ".port", "w").write(str(s.getsockname()[1]))
while True:
    c, a = s.accept()
    with open(sys.argv[1] + ".log", "a") as f:
        f.write("connection from %s\n" % (a,))
    c.close()
PY
LPID=$!
wait_for 10 test -s "$T/listener.port" || bail "the listener did not start"
PORT=$(cat "$T/listener.port")
HOSTIP=$(hostname -I 2>/dev/null | awk '{print $1}')
: "${HOSTIP:=127.0.0.1}"

# As root on cgroup v1, the service runs in cgroups of this test's own, so
# that "no command's cgroup is left" looks at this service's commands only:
# other tests run side by side, each command in a cgroup of its own.
CGDIRS=()
cg_cleanup() {
	local d
	for d in "${CGDIRS[@]}"; do
		echo $$ >"$(dirname "$d")/cgroup.procs" 2>/dev/null
		rmdir "$d" 2>/dev/null
	done
}
trap 'if [ -n "$LPID" ]; then kill "$LPID" 2>/dev/null; wait "$LPID" 2>/dev/null; fi; cleanup; cg_cleanup' EXIT
if [ "$UID_NOW" -eq 0 ] && [ -f /sys/fs/cgroup/memory/cgroup.procs ] &&
	[ -f /sys/fs/cgroup/pids/cgroup.procs ]; then
	for c in memory pids; do
		own=$(awk -F: -v c=$c '$2 == c { print $3 }' /proc/self/cgroup)
		d="/sys/fs/cgroup/$c${own%/}/orch-escape-test.$$"
		mkdir "$d" && CGDIRS+=("$d") && echo $$ >"$d/cgroup.procs" ||
			bail "cannot make the test's cgroup $d"
	done
fi

cd "$T/svc" || bail "cd $T/svc"
# The script names the service's pid, so it is written once it runs (the
# worker reads the script at each model call).
echo '{}' >"$T/script.json"
export ORCH_LLM_SCRIPT="$T/script.json" ORCH_SCRIPTED_TRACE="$T/trace"
service_start

ROOT=0
[ "$UID_NOW" -eq 0 ] && ROOT=1
# doctor says what bounds a command's memory and processes here.
LIMITS=$("$SUP" doctor 2>/dev/null | grep 'sandbox limits:')
CGROUPS=0
case "$LIMITS" in *"sandbox limits: cgroup v"*) CGROUPS=1 ;; esac
if [ "$ROOT" = 1 ]; then
	like "$LIMITS" '^ok   sandbox limits: cgroup v[12] \(memory .*pids' \
		"doctor: as root the commands get memory and pids cgroups"
else
	like "$LIMITS" '^ok   sandbox limits: no cgroup \(.*not writable' \
		"doctor: as a normal user without delegation, no cgroup, and why"
fi
export T STATE REPO SVC PORT HOSTIP MARK ROOT CGROUPS
python3 - "$T/script.json" "$T/names" <<'PY'
import json, os, sys
E = os.environ
T, STATE, REPO, SVC = E["T"], E["STATE"], E["REPO"], E["SVC"]
PORT, HOSTIP, MARK = E["PORT"], E["HOSTIP"], E["MARK"]
# Only with no sign of the host's filesystem or processes: if the sandbox
# were broken, these must not hurt the machine that runs the test.
GUARD = ('if [ -e "%s" ] || grep -qs orch-supervisor /proc/%s/cmdline; '
         'then echo GUARD-HOST-VISIBLE; exit 0; fi; ' % (STATE, SVC))
turns = []
def rc(name, cmd):
    turns.append((name, "run_command", {"command": cmd}))
def tool(name, t, **args):
    turns.append((name, t, args))

rc("ssh", 'cat "%s/home/.ssh/id_rsa"; cat ~/.ssh/id_rsa; ls -la ~ /home /root' % T)
rc("db_abs", 'head -c 200 "%s/tasks.db"; ls -la "%s"; sqlite3 "%s/tasks.db" .dump'
   % (STATE, STATE, STATE))
rc("db_rel", 'cat ../../tasks.db; cat ../../../../../../..%s/tasks.db; ls -la ../..'
   % STATE)
# On PostgreSQL the store is a server: its socket must be out of reach too.
rc("db_pg", 'psql -XAtq "%s" -c "SELECT 4242000 + count(*) FROM tasks"'
   % E.get("ORCH_DATABASE_URL", "postgresql:///none"))
rc("dotenv", 'cat "%s/svc/.env" "%s/.env" .env ../.env ../../.env' % (T, STATE))
rc("environ", 'tr "\\0" "\\n" </proc/1/environ; echo ---; env; echo ---; '
   'tr "\\0" "\\n" </proc/self/environ; '
   'for p in /proc/[0-9]*; do tr "\\0" "\\n" <$p/environ; done 2>/dev/null')
rc("cmdline1", 'tr "\\0" " " </proc/1/cmdline')
rc("tcp_py", 'python3 -c "import socket; s = socket.create_connection('
   '(\'127.0.0.1\', %s), 1); s.sendall(b\'x\'); print(\'CONNECTED\')"; '
   'python3 -c "import socket; s = socket.create_connection('
   '(\'%s\', %s), 1); print(\'CONNECTED\')"; echo rc=$?' % (PORT, HOSTIP, PORT))
rc("tcp_bash", 'bash -c "echo x >/dev/tcp/127.0.0.1/%s" && echo CONNECTED; '
   'bash -c "echo x >/dev/tcp/%s/%s" && echo CONNECTED; echo rc=$?'
   % (PORT, HOSTIP, PORT))
rc("dns", 'getent hosts example.com; echo rc=$?; getent ahosts debian.org; echo rc=$?')
rc("write_abs", 'echo pwned >"%s/escaped-abs.txt"; echo pwned >/escaped-root.txt; '
   'echo pwned >/usr/escaped.txt; touch /etc/escaped; mkdir -p "%s/escaped-dir"; '
   'echo done' % (T, T))
rc("write_dotdot", 'echo pwned >../escaped-dotdot.txt; mkdir ../escaped-dotdot; '
   'echo pwned >../../escaped-dotdot.txt; echo done')
rc("plant_links", 'ln -s "%s/target" link && ln -s "%s/victim.txt" flink && '
   'mkdir -p d && ln -s "%s/target" d/sub && ln -s .. up && ln -s / rootlink && '
   'ln -s /tmp/target tlink && echo planted' % (T, T, T))
rc("write_links", 'echo pwned >link/x; echo pwned >flink; echo pwned >d/sub/x; '
   'echo pwned >up/escaped-up.txt; echo pwned >rootlink/escaped-rootlink.txt; '
   'echo done')
tool("wf_link_x", "write_file", path="link/x", content="pwned\n")
tool("wf_link", "write_file", path="link", content="pwned\n")
tool("wf_tlink_x", "write_file", path="tlink/x", content="pwned\n")
tool("wf_flink", "write_file", path="flink", content="pwned\n")
tool("wf_subdir", "write_file", path="d/sub/x", content="pwned\n")
tool("wf_up", "write_file", path="up/escaped-up.txt", content="pwned\n")
tool("ef_flink", "edit_file", path="flink", old="VICTIM", new="PWNED")
tool("rf_flink", "read_file", path="flink")
tool("rf_db_abs", "read_file", path=STATE + "/tasks.db")
tool("rf_db_rel", "read_file", path="../../tasks.db")
tool("rf_ssh", "read_file", path="rootlink" + T + "/home/.ssh/id_rsa")
tool("wf_abs", "write_file", path=T + "/escaped-tool.txt", content="pwned\n")
tool("wf_dotdot", "write_file", path="../escaped-tool.txt", content="pwned\n")
tool("lf_dotdot", "list_files", path="..")
tool("lf_root", "list_files", path="/")
rc("git_rc", 'cat .git; echo evil >.git/hooks/pre-commit; mkdir -p .git/hooks; '
   'echo "[core] hooksPath = /tmp" >>.git/config; rm -f .git; mv .git gone; '
   'echo "gitdir: /tmp/evil" >.git; git config core.hooksPath /tmp; '
   'echo evil >"%s/.git/hooks/post-checkout"; echo x >>"%s/.git/config"; '
   'echo done' % (REPO, REPO))
tool("wf_hook", "write_file", path=".git/hooks/pre-commit", content="#!/bin/sh\necho pwned\n")
tool("wf_gitconfig", "write_file", path=".git/config", content="[core]\n\thooksPath = /tmp\n")
tool("wf_gitfile", "write_file", path=".git", content="gitdir: /tmp/evil\n")
tool("wf_GIT", "write_file", path="sub/.GIT/config", content="[core]\n")
tool("ef_gitfile", "edit_file", path=".git", old="gitdir", new="x")
rc("kill_all", GUARD + 'kill -9 -1; echo "kill -1: $?"')
rc("kill_svc", GUARD + 'kill -9 %s; echo "kill: $?"; pkill -9 orch-supervisor; '
   'echo "pkill supervisor: $?"; pkill -9 orch-worker; echo "pkill worker: $?"'
   % SVC)
rc("ps", 'ps aux; echo ---; ls /proc')
if E["ROOT"] != "1" or E["CGROUPS"] == "1":
    rc("fork_bomb", GUARD + 'b() { b | b & }; b; while :; do :; done')
# Memory outside any address space, and the tmpfs of /dev.
rc("shm_fill", GUARD + 'df -k /dev/shm | tail -n 1; head -c 1G /dev/zero '
   '>/dev/shm/fill; echo rc=$?; du -k /dev/shm/fill | cut -f1; '
   'rm -f /dev/shm/fill; touch /dev/evil 2>/dev/null && echo DEV-WRITABLE; '
   'echo end')
tool("wf_memfd", "write_file", path="memfd.py", content=
     "import os\nheld = 0\ntry:\n    while held < 2560:\n"
     "        fd = os.memfd_create('x')\n"
     "        os.posix_fallocate(fd, 0, 256 << 20)\n"
     "        held += 256\n        print('held', held, flush=True)\n"
     "except OSError as e:\n    print('refused', e.errno, e.strerror)\n")
rc("memfd", GUARD + 'python3 memfd.py; echo rc=$?')
tool("wf_sockets", "write_file", path="sockets.py", content=
     "import socket\n"
     "for name, fam, typ, proto in [('vsock', socket.AF_VSOCK, socket.SOCK_STREAM, 0),\n"
     "        ('packet', socket.AF_PACKET, socket.SOCK_DGRAM, 0),\n"
     "        ('netlink_audit', socket.AF_NETLINK, socket.SOCK_RAW, 9)]:\n"
     "    try:\n        socket.socket(fam, typ, proto)\n"
     "        print(name, 'OPEN')\n"
     "    except OSError as e:\n        print(name, 'refused', e.strerror)\n"
     "print('interfaces', [n for _, n in socket.if_nameindex()])\n")
rc("sockets", 'python3 sockets.py 2>&1')
rc("mem_bomb", GUARD + 'python3 -c "bytearray(3 << 30)" 2>&1 | tail -1; '
   'python3 -c "l = []\nwhile True: l.append(bytearray(256 << 20))" 2>&1 | tail -1')
rc("yes", GUARD + 'yes')
rc("trap_sleep", GUARD + "trap '' TERM; sleep 60")
rc("daemon", GUARD + '( setsid bash -c "exec -a %s sleep 300" </dev/null '
   '>/dev/null 2>&1 & ); ( nohup bash -c "trap \'\' HUP TERM; exec -a %s sleep 301" '
   '</dev/null >/dev/null 2>&1 & ); sleep 0.3; echo started' % (MARK, MARK))
rc("tidy", 'rm -rf link flink d up rootlink tlink memfd.py sockets.py && '
   'echo tidy >escape-done.txt')
tool("finish", "finish", summary="Tried every way out.")

script = {
    "planning": [{"text": "plan", "tool_calls": [{"name": "submit_plan",
        "arguments": {"plan": "Try to escape."}}]}],
    "implementing": [{"text": n, "tool_calls": [{"name": t, "arguments": a}]}
                     for n, t, a in turns],
    "reviewing": [{"text": "ok", "tool_calls": [{"name": "submit_review",
        "arguments": {"verdict": "approve", "comments": "OK."}}]}],
}
json.dump(script, open(sys.argv[1], "w"))
open(sys.argv[2], "w").write("".join(n + "\n" for n, _, _ in turns))
PY
[ -s "$T/names" ] || bail "no script"
turn_of() { grep -nx "$1" "$T/names" | cut -d: -f1 | awk '{print $1 - 1}'; }

start=$(date +%s)
is "$("$SUP" submit "Escape" --repo "$REPO" --auto-approve all)" 1 "submit prints id 1"

# While the command that ignores SIGTERM runs, look at the worker's
# descriptors from the host: none reaches the database or the state files.
trace_at() { grep -Eq "stage=implementing .* turn=$1\$" "$T/trace" 2>/dev/null; }
if wait_for 60 trace_at "$(turn_of trap_sleep)"; then
	sleep 0.5
	wpid=$(pgrep -P "$SVC" -x orch-worker | head -1)
	if [ -n "$wpid" ] && fds=$(ls -l "/proc/$wpid/fd" 2>/dev/null) && [ -n "$fds" ]; then
		like "$fds" 'socket:' "the worker's descriptors can be read (pid $wpid)"
		is "$(printf '%s\n' "$fds" | grep -Ec 'tasks\.db|/logs/|/backups/|orch\.sock|\.env')" 0 \
			"no descriptor of the worker reaches the database, logs, backups, socket or .env"
	else
		ok 0 "the worker's descriptors # SKIP /proc/PID/fd of the non-dumpable worker is root's"
		ok 0 "no descriptor of the worker reaches the database # SKIP as above"
	fi
else
	ok 1 "the model reached the trap_sleep turn"
fi

wait_for 90 state_is 1 completed
is "$(state_of 1)" completed "the task completes after every escape attempt"
is "$(sq 'SELECT retry_count FROM tasks WHERE id=1')" 0 "no worker was killed or restarted"
check "the service is still running" kill -0 "$SVC"
elapsed=$(($(date +%s) - start))
[ "$elapsed" -lt 60 ] || echo "# the suite took ${elapsed}s (want < 60)"

# What each attempt produced, from the journal.
mkdir -p "$T/out"
sq "SELECT data FROM journal WHERE task_id=1 AND stage='implementing' AND kind='tool' ORDER BY run, seq" >"$T/journal.jsonl"
python3 - "$T/journal.jsonl" "$T/names" "$T/out" <<'PY'
import json, sys
names = open(sys.argv[2]).read().split()
for line in open(sys.argv[1]):
    d = json.loads(line)
    i = int(d["id"].split("_")[1])
    text, res = d["text"], {}
    try:
        res = json.loads(text)
    except ValueError:
        pass
    out = res.get("output", text) if isinstance(res, dict) else text
    base = sys.argv[3] + "/" + names[i]
    open(base + ".out", "w").write(out)
    open(base + ".outcome", "w").write(d["outcome"])
    open(base + ".json", "w").write(json.dumps(res) if isinstance(res, dict) else "{}")
PY
# (finish, the terminal tool, is computed again from the reply on a
# replay, so it is not journaled.)
is "$(find "$T/out" -maxdepth 1 -name '*.outcome' | wc -l)" "$(grep -cvx finish "$T/names")" \
	"every attempt has its result in the journal"
out() { cat "$T/out/$1.out" 2>/dev/null; }
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("null" if v is None else str(v).lower())' "$T/out/$1.json" "$2"; }
outcome() { cat "$T/out/$1.outcome" 2>/dev/null; }
lacks() { # NAME PATTERN DESCRIPTION: the output of NAME does not match
	if grep -Eq -- "$2" "$T/out/$1.out"; then
		ok 1 "$3"
		grep -E -- "$2" "$T/out/$1.out" | head -5 | sed 's/^/#   /'
	else
		ok 0 "$3"
	fi
}

# ESCAPE_SHOW=1: print what every attempt produced.
if [ -n "${ESCAPE_SHOW:-}" ]; then
	for n in $(cat "$T/names"); do
		echo "# == $n ($(outcome "$n"))"
		out "$n" | head -c 600 | sed 's/^/#  /'
		echo "#"
	done
fi

# Secrets.
# shellcheck disable=SC2088 # the text names the file as a person would
lacks ssh "SSH-$CAN|BEGIN OPENSSH" "~/.ssh/id_rsa cannot be read"
like "$(out ssh)" 'No such file' "  (the home directory is not there)"
lacks db_abs "SQLite format|CREATE TABLE|INSERT INTO" "the database cannot be read by its absolute path"
lacks db_rel "SQLite format" "nor through ../../ from the workspace"
lacks db_pg "^4242" "nor through the PostgreSQL server's socket"
lacks dotenv "$CAN" "neither .env (the service's nor the state directory's) can be read"
lacks environ "$CAN|API_KEY|ORCH_" "no secret or ORCH_ variable in /proc/1/environ, env or any /proc/*/environ"
is "$(out environ | awk '/^---$/ { n++; next } n == 1' | cut -d= -f1 | grep -Evx 'PATH|HOME|LANG|TERM|PWD|SHLVL|_|OLDPWD' | tr '\n' ' ')" "" \
	"env shows only PATH, HOME, LANG, TERM (and the shell's own)"
echo "# known gap: /proc/1/cmdline in the sandbox: $(out cmdline1 | head -c 300)"

# Network.
lacks tcp_py CONNECTED "no TCP connection to the host (python3)"
lacks tcp_bash CONNECTED "no TCP connection to the host (bash /dev/tcp)"
is "$(cat "$T/listener.log" 2>/dev/null)" "" "the host's listener saw no connection"
like "$(out dns)" '^rc=2' "DNS resolves nothing (getent hosts example.com fails)"
lacks dns '^[0-9a-f.:]+ +(STREAM|DGRAM|RAW|example)' "  and prints no address"

# Writes outside the workspace.
check "nothing was written by absolute path" sh -c "! ls -d '$T'/escaped-* /escaped-root.txt /usr/escaped.txt /etc/escaped 2>/dev/null | grep ."
check "nothing was written through .." sh -c "! ls -d '$STATE'/worktrees/escaped-* '$STATE'/escaped-* 2>/dev/null | grep ."
like "$(out plant_links)" planted "symlinks to the host can be planted in the workspace"
is "$(ls -A "$T/target")" "" "nothing was written through a symlinked directory"
is "$(cat "$T/victim.txt")" VICTIM "the file a symlink points at is unchanged"
check "nothing was written through a symlink to the workspace's parent" sh -c "! ls '$STATE'/worktrees/escaped-up.txt 2>/dev/null"
for n in wf_link_x wf_link wf_tlink_x wf_flink wf_subdir wf_up ef_flink rf_flink \
	rf_db_abs rf_db_rel rf_ssh wf_abs wf_dotdot lf_dotdot lf_root; do
	is "$(outcome $n)" error "file tool $n is refused: $(out $n | head -c 120)"
done
lacks rf_flink VICTIM "read_file does not follow a symlink out"

# The repository's .git.
like "$(out git_rc)" 'gitdir:' "the worktree's .git file can be read (it names the host repository)"
lacks git_rc 'hooksPath = /tmp' "  nothing else of .git"
for n in wf_hook wf_gitconfig wf_gitfile wf_GIT ef_gitfile; do
	is "$(outcome $n)" error "file tool $n on .git is refused"
done
is "$(git_state)" "$git_before" "the repository's hooks, config, HEAD, main and working tree are unchanged"

# Processes.
if [ "$(out kill_all)" = GUARD-HOST-VISIBLE ]; then
	ok 1 "the sandbox saw the host: the kill attempts were not made"
else
	like "$(out kill_svc)" 'kill: 1' "kill -9 of the service's pid finds no such process"
	like "$(out kill_svc)" 'pkill supervisor: 1' "pkill orch-supervisor finds nothing"
fi
pids=$(out ps | awk '/^---$/ { n++; next } n == 0 && NR > 1 { print $2 } n == 1')
is "$(printf '%s\n' "$pids" | grep -cx "$SVC")" 0 "neither ps nor /proc in the sandbox shows the service's pid"
lacks ps 'orch-supervisor|orch-worker' "  nor its command line or the worker's"
is "$(printf '%s\n' "$pids" | grep -Ec '^[0-9]+$' | awk '{print ($1 < 10)}')" 1 "the sandbox sees only its own few processes"

# Resources.
if [ "$ROOT" = 1 ] && [ "$CGROUPS" = 0 ]; then
	ok 0 "fork bomb # SKIP as root without a pids cgroup nothing stops it"
else
	# The shell that starts the bomb loops without forking, so only the
	# wall clock ends it, whatever the bomb's children managed.
	like "$(out fork_bomb)" 'Cannot fork' "the process limit refuses the fork bomb's forks"
	is "$(field fork_bomb timed_out)" true "  and the wall clock ends it"
	if [ "$ROOT" = 1 ]; then
		check "  and no command's cgroup is left" \
			sh -c "! find ${CGDIRS[*]:-/sys/fs/cgroup} -name 'orch-sbx.*' | grep ."
	else
		check "  and none of its processes is left" test "$(pgrep -u "$UID_NOW" | wc -l)" -lt 30
	fi
fi
like "$(out shm_fill)" '^tmpfs +65536 ' "/dev/shm is a tmpfs of the profile's shm_size (64M)"
like "$(out shm_fill)" 'rc=1' "  and writing 1G into it fails"
check "  having stored at most 64M" test "$(out shm_fill | awk '/^rc=/ { getline; print }')" -le 65536
lacks shm_fill DEV-WRITABLE "/dev itself is read-only"
most=$(out memfd | awk '$1 == "held" { m = $2 } END { print m + 0 }')
if [ "$CGROUPS" = 1 ]; then
	check "memfds cannot hold more than the 2G memory budget (held ${most}M)" test "$most" -lt 2048
else
	like "$(out memfd)" 'refused 38 ' "without a cgroup memfd_create answers ENOSYS"
	is "$most" 0 "  and nothing was held"
fi
like "$(out sockets)" 'vsock refused Address family not supported' "socket(AF_VSOCK) is refused"
like "$(out sockets)" 'packet refused' "socket(AF_PACKET) is refused"
like "$(out sockets)" 'netlink_audit refused Protocol not supported' "netlink other than NETLINK_ROUTE is refused"
like "$(out sockets)" "interfaces \\['lo'\\]" "route netlink works and sees only the sandbox's loopback"
like "$(out mem_bomb)" 'MemoryError' "a memory bomb fails with MemoryError (RLIMIT_AS)"
is "$(field yes timed_out)" true "yes is stopped by the wall clock"
check "yes's output is capped at 64 KiB, head and tail" test "$(out yes | wc -c)" -le 66000
like "$(field yes output_dropped)" '^[1-9][0-9]*$' "  and the rest is counted as dropped"
is "$(field trap_sleep timed_out)" true "a command ignoring SIGTERM is stopped"
check "  within a few seconds (SIGKILL after the grace period)" test "$(field trap_sleep duration_ms)" -lt 8000
like "$(out daemon)" started "a double-forked daemon was started"
is "$(pgrep -f -- "$MARK" | wc -l)" 0 "no daemon survives the command"
if on_pg; then
	dbsize=$(sq "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r'")
else
	dbsize=$(stat -c %s "$STATE/tasks.db")
fi
check "the database stays small (no output flood): $dbsize bytes" test "$dbsize" -lt 10000000

# Nowhere in the database or the logs.
for c in "SSH-$CAN:the planted ssh key" "sk-DOTENV-$CAN:the API key of the service's .env" \
	"sk-ENVKEY-$CAN:OPENAI_API_KEY of the service's environment" \
	"STATEENV-$CAN:the state directory's .env"; do
	is "$( (sql_dump; cat "$STATE"/tasks.db* "$STATE"/logs/* 2>/dev/null) | grep -ac -- "${c%%:*}")" 0 \
		"${c#*:} appears nowhere in the database or its files"
done
is "$(git -C "$REPO" ls-tree -r orch/task-1 | awk '$1 == "120000"' | wc -l)" 0 \
	"the result branch holds no symlink"
is "$(git -C "$REPO" show orch/task-1:escape-done.txt)" tidy "the result branch has the task's own file"
db_intact

# test-sandbox's own checks, run as this user by escape-unprivileged.sh.
if [ -n "${ESCAPE_SANDBOX_TAP:-}" ]; then
	check "test-sandbox ran as $(id -un)" grep -q '^ok ' "$ESCAPE_SANDBOX_TAP"
	while IFS= read -r line; do
		case "$line" in
		"ok "*) ok 0 "test-sandbox as $(id -un): ${line#ok * - }" ;;
		"not ok "*) ok 1 "test-sandbox as $(id -un): ${line#not ok * - }" ;;
		esac
	done <"$ESCAPE_SANDBOX_TAP"
fi
done_testing
