#!/usr/bin/env python3
"""Benchmarks of orch-supervisor (see tests/bench/README.md).

    tests/bench/run.py [--only workflow,parts,scale,recovery] [options]

Builds nothing: it runs the programs of a build directory (build/ by
default).  Python standard library only.  Every benchmark starts its own
service (as a child of this script, with a state directory of its own under
a scratch directory) and its own mock model (tests/bench/mock-fast), and
stops both at the end.

  workflow  N tasks (--tasks, 200) of the whole workflow, auto-approved,
            openai provider against mock-fast (one model call per stage,
            no file changes, verification skipped), at each --workers count
            (1,2,8,32): tasks/s, CPU ms per task (service and everything it
            started, from RUSAGE_CHILDREN of this script once the service
            is reaped), stage-to-stage latency p50/p99 from the events
            table, and the overhead per stage (see README.md for the
            method).
  parts     tests/bench/parts: each part of a stage against its floor, and
            the workspace on a repository of 1,000 files.
  scale     1,000 tasks awaiting approval, 100,000 finished tasks and 64
            tasks running at once against a mock that takes 2 s per reply:
            start-up with recovery, the supervisor's CPU and peak RSS,
            the workers' proportional memory (PSS), `list --status
            in_progress`.  `--running 1000 --delay-ms 5000` is the
            thousand-task configuration (issue 16's targets: every task
            has a worker within 2 s, the supervisor under 10 % of a core,
            under 2 MB PSS per worker).
  recovery  kill -9 the supervisor with 200 tasks in flight, start it
            again: time until every task runs again and until all complete.

--stores sqlite,pg runs the workflow on SQLite and on PostgreSQL, interleaved
(each worker count and repeat on one, then the other), PostgreSQL in a
throwaway cluster of its own (tests/pg/cluster.sh, fsync and
synchronous_commit on, a unix socket), a fresh database per run; it adds
the server's CPU and its commits (pg_stat_database, pg_stat_wal) per task.
"""

import argparse
import csv
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
STAGES = ("planning", "implementing", "reviewing", "verifying")

RESULTS = []  # (benchmark, metric, value, target, met)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def result(bench, metric, value, target="", met=None):
    RESULTS.append((bench, metric, value, target, met))
    log("  %-10s %-58s %s%s" % (bench, metric, value,
                                 "  (target %s: %s)" % (
                                     target, "met" if met else "NOT met")
                                 if target else ""))


def pct(v, p):
    v = sorted(v)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def ts_epoch(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid):
    """(own CPU s, reaped children's CPU s) of a live process."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    hz = os.sysconf("SC_CLK_TCK")
    return ((int(rest[11]) + int(rest[12])) / hz,
            (int(rest[13]) + int(rest[14])) / hz)


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def pss_kb(pid):
    """Proportional set size of a process in kB (smaps_rollup)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def nchildren(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return len(f.read().split())
    except OSError:
        return 0


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("orch", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def api(sockpath, method, url, body=None):
    c = UnixHTTP(sockpath)
    try:
        c.request(method, url,
                  body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        c.close()


def make_repo(d):
    os.makedirs(d)
    with open(os.path.join(d, "README.md"), "w") as f:
        f.write("# Demo project\n")
    with open(os.path.join(d, "app.py"), "w") as f:
        f.write('print("hi")\n')
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b")
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"],
                ["commit", "-qm", "init"]):
        subprocess.run(["git", "-C", d] + cmd, check=True, env=env)


class Mock:
    def __init__(self, ctx, delay_ms=0):
        self.portfile = os.path.join(ctx.scratch, "mock-%d.port" % delay_ms)
        if os.path.exists(self.portfile):
            os.unlink(self.portfile)
        self.p = subprocess.Popen(
            [ctx.a.mock, "--port-file", self.portfile, "--delay-ms",
             str(delay_ms)], stderr=open(os.path.join(
                 ctx.scratch, "mock-%d.err" % delay_ms), "a"))
        end = time.time() + 10
        while not os.path.exists(self.portfile):
            if time.time() > end or self.p.poll() is not None:
                raise SystemExit("mock-fast did not start")
            time.sleep(0.01)
        with open(self.portfile) as f:
            self.port = int(f.read())
        self.url = "http://127.0.0.1:%d/v1" % self.port

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait()


class Psql:
    """One psql session kept open (python has no PostgreSQL driver in its
    standard library): a query per call, CSV rows back.  One connection
    for the whole run, whose backend the server CPU figure leaves out."""

    MARK = "--orch-bench-end--"

    def __init__(self, url, errpath):
        self.p = subprocess.Popen(
            ["psql", "-X", "-q", "-t", "--csv", "-v", "ON_ERROR_STOP=0",
             "-d", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(errpath, "a"), text=True)
        self.n = 0  # statements sent: each is a transaction of its own
        self.pid = self.q("SELECT pg_backend_pid()")[0][0]

    def q(self, sql, args=()):
        if args:
            raise ValueError("Psql.q takes no parameters")
        self.p.stdin.write(sql.strip().rstrip(";") + ";\n\\echo " +
                           self.MARK + "\n")
        self.p.stdin.flush()
        self.n += 1
        lines = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise SystemExit("psql ended (query: %s)" % sql[:200])
            if line.rstrip("\n") == self.MARK:
                break
            lines.append(line)
        return [tuple(None if x == "" else int(x) if re.fullmatch(
            r"-?[0-9]+", x) else x for x in row)
            for row in csv.reader(lines) if row]

    def close(self):
        if self.p is not None:
            self.p.stdin.close()
            self.p.wait()
            self.p = None


def pg_url_db(url, name):
    """The libpq URI url naming database name instead."""
    return re.sub(r"^(postgres(?:ql)?://[^/?]*)(/[^?]*)?", r"\g<1>/" + name,
                  url, count=1)


class PgCluster:
    """A throwaway PostgreSQL cluster from tests/pg/cluster.sh, held by a
    bash that stops it when its standard input closes (or, through
    cluster.sh's watchdog, when this script dies).  fsync and
    synchronous_commit on: the defaults, and what SQLite's
    synchronous=FULL compares with.  pg_stat_statements for the profile."""

    SETTINGS = "\n".join([
        "fsync = on", "synchronous_commit = on",
        "shared_preload_libraries = 'pg_stat_statements'",
        "pg_stat_statements.track_utility = on"])

    def __init__(self, ctx):
        self.ctx = ctx
        env = dict(os.environ, ORCH_TEST_PG_SETTINGS=self.SETTINGS)
        if ctx.a.tmp:
            env["TMPDIR"] = ctx.a.tmp
        self.sh = subprocess.Popen(
            ["bash", "-c", '. "$1" && pg_cluster_start || exit 1; printf'
             ' "%s\\n%s\\n" "$PG_CLUSTER_URL" "$PG_CLUSTER_DIR"; read -r _;'
             ' pg_cluster_stop', "pg-bench",
             os.path.join(SRC, "tests", "pg", "cluster.sh")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            text=True)
        self.url = self.sh.stdout.readline().strip()
        self.dir = self.sh.stdout.readline().strip()
        if not self.url or not self.dir:
            raise SystemExit("the PostgreSQL cluster did not start")
        with open(os.path.join(self.dir, "data", "postmaster.pid")) as f:
            self.pid = int(f.readline())
        self.ndb = 0

    def psql(self, url, sql):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                        url, "-c", sql], check=True,
                       stdout=subprocess.DEVNULL)

    def new_db(self, name):
        """A fresh database (with pg_stat_statements): its URL."""
        self.ndb += 1
        db = re.sub(r"[^a-z0-9_]", "_", name.lower()) + "_%d" % self.ndb
        self.psql(self.url, "CREATE DATABASE %s" % db)
        url = pg_url_db(self.url, db)
        self.psql(url, "CREATE EXTENSION pg_stat_statements")
        return url

    def cpu(self, skip=()):
        """CPU seconds of the server: the postmaster, its live processes
        but those in skip, and those that ended."""
        own, ended = proc_cpu(self.pid)
        total = own + ended
        for c in children(self.pid):
            if c in skip:
                continue
            try:
                total += proc_cpu(c)[0]
            except OSError:
                pass  # ended meanwhile: in ended next time
        return total

    def stop(self):
        if self.sh is not None:
            self.sh.stdin.close()
            self.sh.wait()
            self.sh = None


class Service:
    def __init__(self, ctx, name, mock, workers, extra=None, pg=None):
        self.ctx = ctx
        self.state = os.path.join(ctx.scratch, name, "state")
        self.home = os.path.join(ctx.scratch, name, "home")
        os.makedirs(self.home, exist_ok=True)
        self.sock = os.path.join(self.state, "orch.sock")
        self.db = os.path.join(self.state, "tasks.db")
        self.logpath = os.path.join(ctx.scratch, name, "service.log")
        self.env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "NO_COLOR": "1",
            "ORCH_STATE_DIR": self.state,
            "ORCH_WORKER_PATH": ctx.a.worker,
            "ORCH_SANDBOX_PROFILES_DIR": ctx.a.profiles,
            "ORCH_LLM_PROVIDER": "openai",
            "ORCH_LLM_BASE_URL": mock.url,
            "ORCH_LLM_MODEL": "mock-model",
            "ORCH_LLM_API_KEY": "sk-bench",
            "ORCH_MAX_WORKERS": str(workers),
        }
        self.pgurl = None
        self.psql = None
        if pg is not None:
            self.db = None
            self.pgurl = pg.new_db(name)
            self.env["ORCH_DATABASE_URL"] = self.pgurl
        self.env.update(extra or {})
        self.env.update(kv.split("=", 1) for kv in ctx.a.env)
        self.p = None

    def start(self, wait=True):
        self.t_exec = time.time()
        self.p = subprocess.Popen([self.ctx.a.supervisor, "serve"],
                                  env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=open(self.logpath, "a"),
                                  stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        end = time.time() + timeout
        while True:
            if self.p.poll() is not None:
                raise SystemExit("the service exited (%s): see %s" % (
                    self.p.returncode, self.logpath))
            try:
                st, _ = api(self.sock, "GET", "/v1/health")
                if st == 200:
                    break
            except OSError:
                pass
            if time.time() > end:
                raise SystemExit("the service did not start: see %s" %
                                 self.logpath)
            time.sleep(0.002)
        self.t_ready = time.time()
        return self.t_ready - self.t_exec

    def psql_n(self):
        """Statements the driver's PostgreSQL session has sent."""
        return self.psql.n

    def close_q(self):
        if self.psql is not None:
            self.psql.close()
            self.psql = None

    def stop(self, sig=signal.SIGTERM):
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.p = None

    def submit(self, repo, auto="all"):
        st, b = api(self.sock, "POST", "/v1/tasks",
                    {"request": "Benchmark task", "repo": repo,
                     "auto_approve": auto})
        if st != 201:
            raise SystemExit("submit: HTTP %d %s" % (st, b))
        return b["id"]

    def q(self, sql, args=()):
        if self.pgurl is not None:
            if self.psql is None:
                self.psql = Psql(self.pgurl, self.logpath + ".psql")
            return self.psql.q(sql, args)
        c = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True,
                            timeout=30)
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()

    def wait_tasks(self, cond_sql, n, timeout, poll=0.05):
        end = time.time() + timeout
        while True:
            got = self.q(cond_sql)[0][0]
            if got >= n:
                return
            if time.time() > end:
                raise SystemExit("timed out waiting for %s (%d of %d)" %
                                 (cond_sql, got, n))
            if self.p is not None and self.p.poll() is not None:
                raise SystemExit("the service died: see %s" % self.logpath)
            time.sleep(poll)


class Ctx:
    def __init__(self, a):
        self.a = a
        self.scratch = tempfile.mkdtemp(prefix="orch-bench.", dir=a.tmp)


def parse_parts(out):
    parts, ratios, info = {}, {}, {}
    for line in out.splitlines():
        f = line.split("\t")
        if f[0] == "PART":
            parts[f[2]] = (float(f[3]), float(f[4]), int(f[5]))
        elif f[0] == "RATIO":
            ratios[f[1]] = (f[2], float(f[3]))
        elif f[0] == "INFO":
            info[f[2]] = f[3]
    return parts, ratios, info


def run_parts(ctx, mock, only, runs, ws_runs, files, sub):
    d = os.path.join(ctx.scratch, sub)
    cmd = [ctx.a.parts, "--worker", ctx.a.worker, "--profiles",
           ctx.a.profiles, "--dir", d, "--mock-url", mock.url, "--runs",
           str(runs), "--ws-runs", str(ws_runs), "--files", str(files),
           "--only", only]
    env = dict(os.environ, HOME=os.path.join(ctx.scratch, "home"))
    os.makedirs(env["HOME"], exist_ok=True)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit("parts failed (exit %d)" % r.returncode)
    return parse_parts(r.stdout)


# ---------------------------------------------------------------- workflow

def stage_latencies(svc):
    """Per task, the times it entered each stage and completed."""
    rows = svc.q("SELECT task_id, ts, text FROM events WHERE kind='state'"
                 " ORDER BY id")
    enter = {}
    for task, ts, text in rows:
        text = str(text)
        if " -> " not in text:
            continue
        to = text.split(" -> ")[1].split()[0].rstrip(":")
        if to in STAGES or to in ("completed", "failed"):
            enter.setdefault(task, []).append((to, ts_epoch(ts)))
    lat, per = [], {s: [] for s in STAGES}
    last = 0
    for task, seq in enter.items():
        for (s0, t0), (_, t1) in zip(seq, seq[1:]):
            lat.append((t1 - t0) * 1e3)
            if s0 in per:
                per[s0].append((t1 - t0) * 1e3)
        last = max(last, seq[-1][1])
    return lat, per, last


def stage_phases(svc):
    """Per stage, from the events: spawn (state change -> 'worker started'),
    run (worker started -> the terminal tool's event: exec, handshake,
    workspace, model call, journal commit), finish (-> the next state
    change: result commit, exit, reap, next start)."""
    rows = svc.q("SELECT task_id, ts, kind, stage, text FROM events"
                 " WHERE kind IN ('state','info','tool') ORDER BY id")
    cur, out = {}, {s: {"spawn": [], "run": [], "finish": []}
                    for s in STAGES}
    for task, ts, kind, stage, text in rows:
        t = ts_epoch(ts) * 1e3
        text = str(text)
        c = cur.setdefault(task, {})
        if kind == "state" and " -> " in text:
            if c.get("stage") in out and "started" in c and \
                    c.get("last") is not None:
                out[c["stage"]]["finish"].append(t - c["last"])
            c.clear()
            to = text.split(" -> ")[1].split()[0].rstrip(":")
            if to in STAGES:
                c["stage"], c["enter"] = to, t
        elif kind == "info" and text.startswith("worker ") and \
                "started" in text and "enter" in c:
            c["started"] = c["last"] = t
            out[c["stage"]]["spawn"].append(t - c["enter"])
        elif kind == "tool" and "started" in c:
            out[c["stage"]]["run"].append(t - c["started"])
            c["last"] = t
    return out


PG_COUNTS = ("SELECT (SELECT xact_commit FROM pg_stat_database WHERE"
             " datname = current_database()), wal_sync, wal_write,"
             " wal_records FROM pg_stat_wal")


def workflow_once(ctx, mock, workers, n, rep, pg=None):
    name = "wf-%s-%d-%d" % ("pg" if pg else "sqlite", workers, rep)
    repo = os.path.join(ctx.scratch, name, "repo")
    make_repo(repo)
    svc = Service(ctx, name, mock, workers, pg=pg)
    if pg:
        # The driver's own session first, so that neither its start nor
        # its backend is in the figures; the counters' start.
        svc.q("SELECT 1")
        k0 = svc.psql_n()
        pg0 = svc.q(PG_COUNTS)[0]
        srv0 = pg.cpu(skip=(svc.psql.pid,))
    c0 = children_cpu()
    svc.start()
    if pg and workers == 1 and rep == 0:
        # The profile below: the run's statements, not the schema's.
        kr = svc.psql_n()
        svc.q("SELECT pg_stat_statements_reset()")
    t0 = time.time()
    for _ in range(n):
        svc.submit(repo)
    t_sub = time.time() - t0
    svc.wait_tasks("SELECT count(*) FROM tasks WHERE status IN"
                   " ('completed','failed','cancelled')", n,
                   timeout=60 + n * 5)
    own, kids = proc_cpu(svc.p.pid)
    # The model process (orch-model) is alive until the stop, so its CPU
    # is in neither figure above; the total (RUSAGE_CHILDREN) has it.
    model = 0.0
    for mp in subprocess.run(["pgrep", "-P", str(svc.p.pid), "-x",
                              "orch-model"], capture_output=True,
                             text=True).stdout.split():
        model += sum(proc_cpu(int(mp)))
    if pg:
        srv1 = pg.cpu(skip=(svc.psql.pid,))
        backend = 0
        for (bpid,) in svc.q("SELECT pid FROM pg_stat_activity WHERE"
                             " application_name = 'orch-supervisor' AND"
                             " datname = current_database()"):
            backend += proc_cpu(bpid)[0]
    svc.stop()
    cpu = children_cpu() - c0
    starts = svc.q("SELECT count(*) FROM events WHERE kind = 'info' AND"
                   " text LIKE 'worker %% started%%'")[0][0]
    lat, per, last = stage_latencies(svc)
    failed = svc.q("SELECT count(*) FROM tasks WHERE status != 'completed'"
                   )[0][0]
    commits = svc.q(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM"
        " checkpoints), (SELECT count(*) FROM journal)")[0]
    r = {
        "workers": workers, "tasks_s": n / (last - t0), "wall": last - t0,
        "submit_s": t_sub, "cpu_ms": cpu * 1e3 / n,
        "sup_ms": own * 1e3 / n, "kids_ms": kids * 1e3 / n,
        "model_ms": model * 1e3 / n,
        "starts": starts, "sup_per_start": own * 1e3 / max(starts, 1),
        "lat": lat, "per": per, "failed": failed,
        "phases": stage_phases(svc),
        "rows": [x / n for x in commits],
    }
    if pg:
        # The service's backend flushed its statistics when it ended; the
        # driver's session flushes its own now.  Every statement the
        # session sent since the first count is a transaction of its own
        # (the one reading the first count included): not the service's.
        time.sleep(1.1)
        svc.q("SELECT pg_stat_force_next_flush()")
        k1 = svc.psql_n()
        pg1 = svc.q(PG_COUNTS)[0]
        r["pg_xact"] = (pg1[0] - pg0[0] - (k1 - k0)) / n
        r["pg_wal_sync"] = (pg1[1] - pg0[1]) / n
        r["pg_wal_write"] = (pg1[2] - pg0[2]) / n
        r["pg_wal_records"] = (pg1[3] - pg0[3]) / n
        r["srv_ms"] = (srv1 - srv0) * 1e3 / n
        r["backend_ms"] = backend * 1e3 / n
        r["backend_per_start"] = backend * 1e3 / max(starts, 1)
        if workers == 1 and rep == 0:
            # Round trips: every statement the server ran in the run,
            # less the driver's own (its session's, counted).
            calls = svc.q(
                "SELECT sum(calls) FROM pg_stat_statements WHERE dbid ="
                " (SELECT oid FROM pg_database WHERE datname ="
                " current_database())")[0][0]
            # The driver's since the reset, that one in, this one out.
            r["stmts"] = (calls - (svc.psql_n() - 1 - kr)) / n
            r["top"] = svc.q(
                "SELECT calls, round(total_exec_time::numeric, 1),"
                " round(mean_exec_time::numeric, 3), left(regexp_replace("
                "query, '\\s+', ' ', 'g'), 70) FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname ="
                " current_database()) ORDER BY total_exec_time DESC LIMIT 8")
    svc.close_q()
    return r


def idle_cpu(ctx, mock, pg=None):
    """CPU of starting and stopping an idle service (subtracted)."""
    v = []
    for i in range(3):
        svc = Service(ctx, "idle-%s-%d" % ("pg" if pg else "sqlite", i),
                      mock, 1, pg=pg)
        c0 = children_cpu()
        svc.start()
        svc.stop()
        v.append(children_cpu() - c0)
    return statistics.median(v)


def count_syncs(ctx, mock, n=20):
    """fsync/fdatasync calls of the service and its workers per task."""
    if shutil.which("strace") is None:
        return None
    name = "wf-strace"
    repo = os.path.join(ctx.scratch, name, "repo")
    make_repo(repo)
    svc = Service(ctx, name, mock, 1).start()
    out = os.path.join(ctx.scratch, name, "strace.txt")
    st = subprocess.Popen(["strace", "-f", "-c", "-e",
                           "trace=fsync,fdatasync,execve,clone,clone3,fork,"
                           "vfork", "-o", out, "-p", str(svc.p.pid)],
                          stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    for _ in range(n):
        svc.submit(repo)
    svc.wait_tasks("SELECT count(*) FROM tasks WHERE status IN"
                   " ('completed','failed')", n, timeout=300)
    st.send_signal(signal.SIGINT)
    st.wait()
    svc.stop()
    calls = {}
    with open(out) as f:
        for line in f:
            f_ = line.split()
            if len(f_) >= 5 and f_[-1] in ("fsync", "fdatasync", "execve",
                                           "clone", "clone3", "fork",
                                           "vfork"):
                try:
                    calls[f_[-1]] = int(f_[3]) if len(f_) >= 6 else int(
                        f_[3])
                except ValueError:
                    pass
    return {k: v / n for k, v in calls.items()}


def bench_workflow(ctx):
    a = ctx.a
    stores = a.stores.split(",")
    for st in stores:
        if st not in ("sqlite", "pg"):
            raise SystemExit("--stores: sqlite or pg, not %r" % st)
    # Names as before when SQLite runs alone; prefixed when compared.
    lab = (lambda st: "") if stores == ["sqlite"] else (
        lambda st: "[%s] " % st)
    log("== workflow: %d tasks at %s workers, %d repeat(s), stores %s" %
        (a.tasks, a.workers, a.repeat, ",".join(stores)))
    mock = Mock(ctx, 0)
    pg = None
    try:
        if "pg" in stores:
            pg = PgCluster(ctx)
            log("   PostgreSQL cluster: %s" % pg.url)
        pgs = {"sqlite": None, "pg": pg}
        idle = {}
        for st in stores:
            idle[st] = idle_cpu(ctx, mock, pgs[st])
            result("workflow", lab(st) + "CPU of an idle service start+stop"
                   " (subtracted)", "%.1f ms" % (idle[st] * 1e3))
        by = {}
        # Interleaved: each worker count and repeat on every store in
        # turn, so that the machine's mood falls on both alike.
        for rep in range(a.repeat):
            for w in [int(x) for x in a.workers.split(",")]:
                for st in stores:
                    r = workflow_once(ctx, mock, w, a.tasks, rep, pgs[st])
                    r["cpu_ms"] -= idle[st] * 1e3 / a.tasks
                    by.setdefault((st, w), []).append(r)
                    log("   %s %2d workers rep %d: %.1f tasks/s, %.2f ms "
                        "CPU/task, p50 %.1f ms, failed %d%s" % (
                            st, w, rep, r["tasks_s"], r["cpu_ms"],
                            pct(r["lat"], 0.5), r["failed"],
                            ", server %.2f ms CPU/task, %.1f commits/task"
                            % (r["srv_ms"], r["pg_xact"]) if "srv_ms" in r
                            else ""))
        for (st, w), rs in by.items():
            med = lambda k: statistics.median(r[k] for r in rs)
            lat = [x for r in rs for x in r["lat"]]
            tps = med("tasks_s")
            tgt = {1: 175, 8: 250}.get(w)
            result("workflow", lab(st) + "%d worker(s): tasks/s (median of "
                   "%d)" % (w, len(rs)), "%.1f" % tps,
                   ">= %d" % tgt if tgt else "", tps >= tgt if tgt else None)
            cpu = med("cpu_ms")
            result("workflow", lab(st) + "%d worker(s): CPU ms per task "
                   "(all procs)" % w,
                   "%.1f (supervisor %.1f, workers+git %.1f, model "
                   "process %.1f)" % (
                       cpu, med("sup_ms"), med("kids_ms"),
                       med("model_ms")), "<= 4",
                   cpu <= 4)
            result("workflow", lab(st) + "%d worker(s): supervisor CPU per "
                   "stage start" % w, "%.2f ms (%d starts)" % (
                       med("sup_per_start"), med("starts")))
            if "srv_ms" in rs[0]:
                result("workflow", lab(st) + "%d worker(s): server CPU ms "
                       "per task (all postgres processes; the service's "
                       "backend)" % w, "%.1f; %.1f" % (
                           med("srv_ms"), med("backend_ms")))
                result("workflow", lab(st) + "%d worker(s): supervisor + "
                       "its backend CPU per stage start" % w,
                       "%.2f + %.2f ms" % (med("sup_per_start"),
                                          med("backend_per_start")))
                result("workflow", lab(st) + "%d worker(s): per task: "
                       "commits (xact_commit) / WAL syncs / WAL writes / "
                       "WAL records" % w, "%.1f / %.1f / %.1f / %.1f" % (
                           med("pg_xact"), med("pg_wal_sync"),
                           med("pg_wal_write"), med("pg_wal_records")))
            result("workflow", lab(st) + "%d worker(s): stage-to-stage p50 "
                   "/ p99 ms" % w, "%.1f / %.1f" % (pct(lat, 0.5),
                                                    pct(lat, 0.99)))
            result("workflow", lab(st) + "%d worker(s): per stage p50 ms" %
                   w, " ".join("%s %.1f" % (s[:4], pct(
                       [x for r in rs for x in r["per"][s]], 0.5))
                       for s in STAGES))
            fails = sum(r["failed"] for r in rs)
            if fails:
                result("workflow", lab(st) + "%d worker(s): tasks not "
                       "completed" % w, str(fails))
        for st in stores:
            r1 = by.get((st, 1), [None])[0]
            if not r1:
                continue
            for s in STAGES:
                ph = r1["phases"][s]
                result("workflow", lab(st) + "1 worker: %s phases p50 ms: "
                       "spawn / run / finish" % s, "%.1f / %.1f / %.1f" % (
                           pct(ph["spawn"], 0.5), pct(ph["run"], 0.5),
                           pct(ph["finish"], 0.5)))
            result("workflow", lab(st) + "rows per task: events / "
                   "checkpoints / journal", "%.1f / %.1f / %.1f" %
                   tuple(r1["rows"]))
            if "stmts" in r1:
                result("workflow", lab(st) + "1 worker: statements per task"
                       " (pg_stat_statements)", "%.0f" % r1["stmts"])
            for calls, total, mean, q in r1.get("top", []):
                result("workflow", lab(st) + "1 worker, pg_stat_statements:"
                       " `%s`" % str(q).replace("|", "/"),
                       "%s calls, %s ms, %s ms each" % (calls, total, mean))
        # Decomposition of a stage at 1 worker (README: method).
        parts, _, _ = run_parts(ctx, mock, "exec,commit,llm,ws", 100, 30, 2,
                                "wf-parts")
        g = lambda k: parts[k][0]
        # What each stage runs on a clean handoff (no restore: that is
        # only after a crash or a resume).
        git = {
            "planning": g("ws_create (git worktree add)"),
            "implementing": g("ws_create (exists: read .git)") +
            g("ws_squash") + g("ws_diffstat"),
            "reviewing": g("ws_create (exists: read .git)") + g("ws_diff"),
            "verifying": g("ws_create (exists: read .git)") +
            g("ws_remove (git worktree remove)"),
        }
        model = g("model call via worker code")
        # implementing asks twice (write_file, then finish).
        calls = {"planning": 1, "implementing": 2, "reviewing": 1,
                 "verifying": 0}
        over = {}
        for st in stores:
            if (st, 1) not in by:
                continue
            ov = []
            for s in STAGES:
                p = pct([x for r in by[(st, 1)] for x in r["per"][s]], 0.5)
                o = p - git[s] - model * calls[s]
                ov.append(o)
                result("workflow", lab(st) + "1 worker: %s = git %.1f + "
                       "model %.1f + overhead" % (
                           s, git[s], model * calls[s]),
                       "%.1f ms -> overhead %.1f ms" % (p, o))
            over[st] = statistics.median(ov)
            result("workflow", lab(st) + "overhead per stage transition, "
                   "median of stages", "%.1f ms" % over[st], "<= 1.5 ms",
                   over[st] <= 1.5)
        if "sqlite" in over and "pg" in over:
            ratio = over["pg"] / over["sqlite"]
            result("workflow", "per-stage overhead, PostgreSQL / SQLite",
                   "%.1f / %.1f ms: %.2fx" % (over["pg"], over["sqlite"],
                                              ratio), "<= 1.5x",
                   ratio <= 1.5)
        result("workflow", "bottom-up: exec worker + 1 checkpoint commit",
               "%.1f + %.1f ms" % (g("fork+exec orch-worker"),
                                   g("checkpoint commit (store API)")))
        if a.strace and "sqlite" in stores:
            sy = count_syncs(ctx, mock)
            if sy:
                result("workflow", lab("sqlite") + "per task (strace, 1 "
                       "worker): fsync+fdatasync / execve / fork+clone",
                       "%.1f / %.1f / %.1f" % (
                           sy.get("fsync", 0) + sy.get("fdatasync", 0),
                           sy.get("execve", 0),
                           sum(sy.get(k, 0) for k in ("clone", "clone3",
                                                      "fork", "vfork"))))
    finally:
        mock.stop()
        if pg is not None:
            pg.stop()


# ------------------------------------------------------------------- parts

def bench_parts(ctx):
    a = ctx.a
    log("== parts: %d runs each, workspace %d runs on %d files" %
        (a.runs, a.ws_runs, a.files))
    mock = Mock(ctx, 0)
    try:
        parts, ratios, info = run_parts(ctx, mock, "exec,commit,sandbox,llm",
                                        a.runs, a.ws_runs, a.files, "parts")
        for name, (med, p99, n) in parts.items():
            result("parts", name + " (median, p99 ms)",
                   "%.3f, %.3f" % (med, p99))
        for name, (floor, r) in ratios.items():
            result("parts", "%s / %s" % (name, floor), "%.2fx" % r,
                   "<= 1.5x", r <= 1.5)
        result("parts", "model request body bytes",
               info.get("request_bytes", "?"))
        parts, ratios, info = run_parts(ctx, mock, "ws", a.runs, a.ws_runs,
                                        a.files, "ws")
        for name, (med, p99, n) in parts.items():
            result("workspace", "%s, %s files (median, p99 ms)" %
                   (name, a.files), "%.1f, %.1f" % (med, p99))
        g = lambda k: parts[k][0]
        result("workspace", "create + 1 snapshot + restore (ms)",
               "%.1f" % (g("ws_create (git worktree add)") +
                         g("ws_snapshot (1 file changed)") +
                         g("ws_restore (reset --hard + clean)")))
    finally:
        mock.stop()


# ------------------------------------------------------------------- scale

def clone_tasks(db, template, count, overrides, with_rows=True):
    """Insert count copies of task template (and its rows in the tables
    that have a task_id), with column overrides."""
    c = sqlite3.connect(db, timeout=60)
    c.execute("PRAGMA synchronous=OFF")
    cols = [r[1] for r in c.execute("PRAGMA table_info(tasks)")
            if r[1] != "id"]
    sel = ", ".join("?" if k in overrides else k for k in cols)
    args = [overrides[k] for k in cols if k in overrides]
    first = c.execute("SELECT coalesce(max(id), 0) + 1 FROM tasks"
                      ).fetchone()[0]
    c.execute("BEGIN")
    c.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n"
              " WHERE i < %d) INSERT INTO tasks (%s) SELECT %s FROM n,"
              " tasks WHERE tasks.id = %d" % (count, ", ".join(cols), sel,
                                             template), args)
    if with_rows:
        tables = [r[0] for r in c.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            tc = [r[1] for r in c.execute("PRAGMA table_info(%s)" % t)]
            if t == "tasks" or "task_id" not in tc:
                continue
            keep = [k for k in tc if k not in ("id", "task_id")]
            c.execute(
                "INSERT INTO %s (task_id%s) SELECT tasks.id%s FROM tasks,"
                " %s x WHERE tasks.id >= %d AND x.task_id = %d ORDER BY"
                " tasks.id%s" % (
                    t, "".join(", " + k for k in keep),
                    "".join(", x." + k for k in keep), t, first, template,
                    ", x.id" if "id" in tc else ""))
    c.execute("COMMIT")
    c.close()
    return first


def bench_scale(ctx):
    a = ctx.a
    # Issue 16's targets for a thousand tasks in flight; the first round's
    # for the default 64.
    big_run = a.running >= 1000
    t_all = 2.0 if big_run else 1.0
    t_cpu = 10 if big_run else 5
    log("== scale: %d awaiting, %d finished, %d running (%d ms replies)" %
        (a.awaiting, a.finished, a.running, a.delay_ms))
    fast = Mock(ctx, 0)
    slow = Mock(ctx, a.delay_ms)
    try:
        name = "scale"
        repo = os.path.join(ctx.scratch, name, "repo")
        make_repo(repo)
        svc = Service(ctx, name, fast, 4).start()
        ta = svc.submit(repo, "none")
        tc = svc.submit(repo, "all")
        svc.wait_tasks("SELECT count(*) FROM tasks WHERE (id=%d AND"
                       " workflow_state='plan_awaiting_approval') OR (id=%d"
                       " AND status='completed')" % (ta, tc), 2, 60)
        svc.stop()
        t0 = time.time()
        clone_tasks(svc.db, tc, a.finished, {})
        clone_tasks(svc.db, ta, a.awaiting, {})
        # In flight when the service went down: in planning, a new run.
        first = clone_tasks(svc.db, ta, a.running, {
            "workflow_state": "planning", "status": "in_progress",
            "auto_approve": 3}, with_rows=False)
        c = sqlite3.connect(svc.db)
        c.execute("UPDATE tasks SET stage_run = stage_run + 1 WHERE id >= ?",
                  (first,))
        c.commit()
        c.close()
        # More to run, so that `running` stay busy through the window.
        npend = a.running * 3 if a.pending is None else a.pending
        clone_tasks(svc.db, ta, npend, {
            "workflow_state": "pending", "status": "pending",
            "auto_approve": 3}, with_rows=False)
        counts = svc.q("SELECT status, count(*) FROM tasks GROUP BY status")
        log("   database built in %.1f s: %s, %.0f MB" % (
            time.time() - t0, counts, os.path.getsize(svc.db) / 1e6))
        result("scale", "database", "%s; %.0f MB" % (
            ", ".join("%s %d" % x for x in counts),
            os.path.getsize(svc.db) / 1e6))
        maxev = svc.q("SELECT max(id) FROM events")[0][0]
        # The service that ran those tasks would have written their audit
        # files; without this the start writes 1.4 M lines (from the loop,
        # 1000 at a time, which the CPU figure would then measure).
        with open(os.path.join(os.path.dirname(svc.db), "logs",
                               "audit.pos"), "w") as f:
            f.write("%020d\n" % maxev)

        big = Service(ctx, name, slow, a.running)
        big.start(wait=False)
        ready = big.wait_ready()
        result("scale", "start-up with recovery: control socket answers",
               "%.0f ms" % (ready * 1e3), "< 1000 ms", ready < 1.0)
        big.wait_tasks("SELECT count(DISTINCT task_id) FROM events WHERE"
                       " id > %d AND text LIKE 'worker %% started%%'" % maxev,
                       a.running, 60, poll=0.05 if big_run else 0.01)
        first_started = big.q(
            "SELECT max(ts) FROM (SELECT task_id, min(ts) AS ts FROM events"
            " WHERE id > %d AND text LIKE 'worker %% started%%' AND task_id"
            " >= %d AND task_id < %d GROUP BY task_id)" % (
                maxev, first, first + a.running))[0][0]
        allrun = ts_epoch(first_started) - big.t_exec
        result("scale", "start-up: all %d resumed tasks have a worker" %
               a.running, "%.0f ms" % (allrun * 1e3),
               "< %.0f ms" % (t_all * 1e3), allrun < t_all)
        time.sleep(2)
        pid = big.p.pid
        ev0 = big.q("SELECT max(id) FROM events")[0][0]
        own0, _ = proc_cpu(pid)
        t1 = time.time()
        nrun = []
        while time.time() - t1 < a.seconds:
            nrun.append(nchildren(pid))
            time.sleep(0.5)
        own1, _ = proc_cpu(pid)
        wall = time.time() - t1
        cpu = (own1 - own0) / wall * 100
        # The workers' memory: PSS shares the pages they have in common
        # (the program, its libraries) among them, so the sum is what
        # they cost the machine together.
        pss = [k for k in map(pss_kb, children(pid)) if k is not None]
        starts = big.q("SELECT count(*) FROM events WHERE id > %d AND text"
                       " LIKE 'worker %% started%%'" % ev0)[0][0]
        hwm = proc_status(pid, "VmHWM") / 1024
        result("scale", "workers running during the window (median, min)",
               "%d, %d" % (statistics.median(nrun), min(nrun)))
        result("scale", "supervisor CPU over %.0f s (%% of a core)" % wall,
               "%.2f %%" % cpu, "< %d %%" % t_cpu, cpu < t_cpu)
        if pss:
            per = sum(pss) / len(pss) / 1024
            result("scale", "PSS per worker (%d workers, smaps_rollup)" %
                   len(pss), "%.2f MB (all: %.0f MB)" % (
                       per, sum(pss) / 1024), "< 2 MB", per < 2)
            result("scale", "supervisor PSS", "%.1f MB" % (
                (pss_kb(pid) or 0) / 1024))
        if starts:
            result("scale", "... stage starts in the window; supervisor CPU"
                   " per stage", "%d (%.1f/s); %.2f ms" % (
                       starts, starts / wall,
                       (own1 - own0) * 1e3 / starts))
        result("scale", "supervisor peak RSS (VmHWM)", "%.1f MB" % hwm,
               "< 32 MB", hwm < 32)
        v, n = [], 0
        for _ in range(11):
            t = time.time()
            r = subprocess.run([a.supervisor, "list", "--status",
                                "in_progress"], env=big.env,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
            v.append((time.time() - t) * 1e3)
            n = len(r.stdout.splitlines())
            if r.returncode != 0:
                log("   list: exit %d: %s" % (r.returncode,
                                             r.stderr.strip()[:300]))
        result("scale", "`list --status in_progress` (CLI, %d lines) median"
               % n, "%.1f ms" % statistics.median(v), "< 50 ms",
               statistics.median(v) < 50)
        v = []
        for _ in range(11):
            t = time.time()
            st, b = api(big.sock, "GET", "/v1/tasks?status=in_progress")
            v.append((time.time() - t) * 1e3)
            n = len((b or {}).get("tasks", [])) if st == 200 else -st
        result("scale", "GET /v1/tasks?status=in_progress (%d tasks) "
               "median" % n,
               "%.1f ms" % statistics.median(v))
        v = []
        for _ in range(11):
            t = time.time()
            c = UnixHTTP(big.sock)
            try:
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read()
            finally:
                c.close()
            v.append((time.time() - t) * 1e3)
        result("scale", "GET /metrics (HTTP %d, %d bytes) median" % (
            r.status, len(body)), "%.1f ms" % statistics.median(v))
        big.stop()
        # Start-up alone with everything in the database (median of 3).
        v = []
        for _ in range(3):
            s2 = Service(ctx, name, slow, a.running)
            s2.start(wait=False)
            v.append(s2.wait_ready() * 1e3)
            s2.stop()
        result("scale", "start-up again (median of 3 restarts)",
               "%.0f ms" % statistics.median(v), "< 1000 ms",
               statistics.median(v) < 1000)
    finally:
        fast.stop()
        slow.stop()


# ---------------------------------------------------------------- recovery

def bench_recovery(ctx):
    a = ctx.a
    n = a.recovery_tasks
    log("== recovery: %d tasks, %d workers, %d ms replies" %
        (n, a.recovery_workers, a.recovery_delay_ms))
    mock = Mock(ctx, a.recovery_delay_ms)
    try:
        name = "recovery"
        repo = os.path.join(ctx.scratch, name, "repo")
        make_repo(repo)
        svc = Service(ctx, name, mock, a.recovery_workers).start()
        for _ in range(n):
            svc.submit(repo)
        svc.wait_tasks("SELECT count(DISTINCT task_id) FROM events WHERE"
                       " text LIKE 'worker % started%'", n, 120,
                       poll=0.01)
        inflight = svc.q("SELECT count(*) FROM tasks WHERE status NOT IN"
                         " ('completed','failed','cancelled')")[0][0]
        running = nchildren(svc.p.pid)
        svc.stop(signal.SIGKILL)
        result("recovery", "killed -9 with tasks in flight / workers "
               "running", "%d / %d" % (inflight, running))
        maxev = svc.q("SELECT max(id) FROM events")[0][0]
        time.sleep(0.2)  # the workers die with it (parent-death signal)
        backoff = int(svc.env.get("ORCH_RETRY_BACKOFF_MS", "1000"))
        s2 = Service(ctx, name, mock, a.recovery_workers)
        s2.start(wait=False)
        ready = s2.wait_ready()
        s2.wait_tasks("SELECT count(*) FROM tasks t WHERE status IN"
                      " ('completed','failed','cancelled') OR EXISTS (SELECT"
                      " 1 FROM events e WHERE e.task_id = t.id AND e.id > %d"
                      " AND e.text LIKE 'worker %% started%%')" % maxev, n,
                      120, poll=0.01)
        t_run = s2.q("SELECT max(ts) FROM (SELECT min(ts) AS ts FROM events"
                     " WHERE id > %d AND text LIKE 'worker %% started%%'"
                     " GROUP BY task_id)" % maxev)[0][0]
        allrun = ts_epoch(t_run) - s2.t_exec if t_run else float("nan")
        s2.wait_tasks("SELECT count(*) FROM tasks WHERE status IN"
                      " ('completed','failed','cancelled')", n, 600)
        t_done = s2.q("SELECT max(ts) FROM events WHERE kind='state' AND"
                      " (text LIKE '% -> completed%' OR text LIKE"
                      " '% -> failed%')")[0][0]
        done = ts_epoch(t_done) - s2.t_exec
        failed = s2.q("SELECT count(*) FROM tasks WHERE status !="
                      " 'completed'")[0][0]
        restarts = s2.q("SELECT coalesce(sum(retry_count),0) FROM tasks"
                        )[0][0]
        s2.stop()
        result("recovery", "restart: control socket answers",
               "%.0f ms" % (ready * 1e3))
        result("recovery", "restart: every unfinished task running again",
               "%.0f ms" % (allrun * 1e3), "< 1000 ms + backoff (%d ms)"
               % backoff, allrun < 1.0 + backoff / 1000)
        result("recovery", "restart: all %d complete" % n,
               "%.1f s (not completed: %d, restarts counted: %d)" % (
                   done, failed, restarts))
    finally:
        mock.stop()


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return "nproc %d, %s, Linux %s, %s" % (
        os.cpu_count(), model, platform.release(),
        time.strftime("%a %d %b %Y %H:%M:%S %Z"))


def main():
    build = os.path.join(SRC, "build")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="workflow,parts,scale,recovery")
    p.add_argument("--build", default=build, help="build directory")
    p.add_argument("--supervisor")
    p.add_argument("--worker")
    p.add_argument("--mock")
    p.add_argument("--parts")
    p.add_argument("--profiles", default=os.path.join(SRC,
                                                      "sandbox-profiles"))
    p.add_argument("--tmp", default=None, help="scratch parent (/tmp)")
    p.add_argument("--env", action="append", default=[],
                   metavar="NAME=VALUE",
                   help="a variable for every service started (repeat)")
    p.add_argument("--keep", action="store_true", help="keep the scratch")
    p.add_argument("--json", help="write the results here too")
    g = p.add_argument_group("workflow")
    g.add_argument("--tasks", type=int, default=200)
    g.add_argument("--workers", default="1,2,8,32")
    g.add_argument("--repeat", type=int, default=1)
    g.add_argument("--no-strace", dest="strace", action="store_false")
    g.add_argument("--stores", default="sqlite",
                   help="sqlite,pg: the workflow on both, interleaved, "
                   "PostgreSQL in a throwaway cluster (tests/pg/cluster.sh)")
    g = p.add_argument_group("parts")
    g.add_argument("--runs", type=int, default=200)
    g.add_argument("--ws-runs", type=int, default=20)
    g.add_argument("--files", type=int, default=1000)
    g = p.add_argument_group("scale")
    g.add_argument("--awaiting", type=int, default=1000)
    g.add_argument("--finished", type=int, default=100000)
    g.add_argument("--running", type=int, default=64,
                   help="tasks in flight at once (ORCH_MAX_WORKERS); 1000"
                   " for issue 16's configuration")
    g.add_argument("--pending", type=int, default=None,
                   help="tasks queued behind them (default 3 x running)")
    g.add_argument("--delay-ms", type=int, default=2000)
    g.add_argument("--seconds", type=float, default=20)
    g = p.add_argument_group("recovery")
    g.add_argument("--recovery-tasks", type=int, default=200)
    g.add_argument("--recovery-workers", type=int, default=200)
    g.add_argument("--recovery-delay-ms", type=int, default=3000)
    a = p.parse_args()
    a.supervisor = a.supervisor or os.path.join(
        a.build, "supervisor", "orch-supervisor")
    a.worker = a.worker or os.path.join(a.build, "worker", "orch-worker")
    a.mock = a.mock or os.path.join(a.build, "tests", "bench", "mock-fast")
    a.parts = a.parts or os.path.join(a.build, "tests", "bench", "parts")
    for f in (a.supervisor, a.worker, a.mock, a.parts):
        if not os.access(f, os.X_OK):
            raise SystemExit("%s is missing: build first (ninja -C build)" %
                             f)
    ctx = Ctx(a)
    log("machine: " + machine())
    log("scratch: " + ctx.scratch)
    t0 = time.time()
    try:
        for b in a.only.split(","):
            {"workflow": bench_workflow, "parts": bench_parts,
             "scale": bench_scale, "recovery": bench_recovery}[b](ctx)
    finally:
        if not a.keep:
            shutil.rmtree(ctx.scratch, ignore_errors=True)
    print("\nmachine: %s\ntotal: %.0f s\n" % (machine(), time.time() - t0))
    print("| benchmark | metric | measured | target | met |")
    print("| --- | --- | --- | --- | --- |")
    for b, m, v, t, met in RESULTS:
        print("| %s | %s | %s | %s | %s |" % (
            b, m, v, t, "" if met is None else ("yes" if met else "**no**")))
    if a.json:
        with open(a.json, "w") as f:
            json.dump([dict(zip(("benchmark", "metric", "value", "target",
                                 "met"), r)) for r in RESULTS], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
