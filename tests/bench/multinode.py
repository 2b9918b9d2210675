#!/usr/bin/env python3
"""Multi-node benchmarks (issue 13, point 7): several services (nodes) on
this machine sharing one PostgreSQL database and one origin repository,
against the mock model (tests/mock_llm.py) answering every turn after
--delay seconds (1 s: latency-bound work).

    tests/bench/multinode.py [--nodes 1,2,3] [--tasks 24] [--delay 1]
                             [--takeovers 3] [--claims 40] [--lease 3]

  throughput  --tasks tasks (plan, write a file, finish, review: 4 model
              turns) submitted while no node runs, then 1, 2, 3 nodes of
              ORCH_MAX_WORKERS=2 started at once: tasks/s from the first
              "worker started" event to the last completion; the speed-up
              against 1 node (target >= 2.7x at 3 nodes).
  takeover    two nodes; the node running a task in a long model turn is
              killed (SIGKILL): the time until a worker for that task
              starts on the other node (target <= ORCH_LEASE_S + 2 s).
  claim       three idle nodes; one task submitted at a time: the time
              from its row's creation to its first "worker started"
              event (median, p99).

Without ORCH_TEST_PG_URL it runs itself under tests/pg/cluster.sh (a
throwaway PostgreSQL 15 cluster).  Each part uses a database of its own on
that cluster.  Python standard library only; psql for the queries.
Prints progress on stderr and a Markdown table on stdout.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
RESULTS = []
KEY = "sk-bench-multinode"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def result(metric, value, target="", met=None):
    RESULTS.append((metric, value, target,
                    "" if met is None else ("yes" if met else "**no**")))
    log("  %s: %s" % (metric, value))


def ts_epoch(ts):
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in ts else "%Y-%m-%d %H:%M:%S"
    d = datetime.datetime.strptime(ts.strip(), fmt)
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


class Cluster:
    """Nodes, a mock and an origin in one scratch directory, on one
    database of the PostgreSQL cluster."""

    def __init__(self, a, top, name, delay, slow=None):
        self.a = a
        self.dir = os.path.join(top, name)
        os.makedirs(self.dir)
        admin = os.environ["ORCH_TEST_PG_URL"]
        subprocess.run(["psql", "-XAtq", admin, "-c",
                        "CREATE DATABASE bench_%s" % name], check=True,
                       stdout=subprocess.DEVNULL)
        self.url = admin.replace("/postgres?", "/bench_%s?" % name, 1)
        self.nodes = {}
        self.script(delay, slow)
        work = os.path.join(self.dir, "work")
        os.makedirs(work)
        for cmd in (["git", "init", "-q", "-b", "main"],
                    ["sh", "-c", "echo hi > README.md && git add -A"],
                    ["git", "-c", "user.name=b", "-c", "user.email=b@b",
                     "commit", "-qm", "init"]):
            subprocess.run(cmd, cwd=work, check=True)
        subprocess.run(["git", "clone", "-q", "--bare", work,
                        os.path.join(self.dir, "origin.git")], check=True)
        self.origin = "file://" + os.path.join(self.dir, "origin.git")
        port = os.path.join(self.dir, "mock.port")
        self.mock = subprocess.Popen(
            [sys.executable, os.path.join(SRC, "tests", "mock_llm.py"),
             "--port-file", port, "--script",
             os.path.join(self.dir, "script.json"),
             "--log", os.path.join(self.dir, "mock.log"), "--key", KEY],
            stderr=subprocess.DEVNULL)
        for _ in range(200):
            if os.path.exists(port):
                break
            time.sleep(0.05)
        with open(port) as f:
            self.mock_port = int(f.read())
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)

    def script(self, delay, slow=None):
        def turn(text, name, args, d=delay):
            return {"text": text, "delay": d,
                    "tool_calls": [{"name": name, "arguments": args}]}
        s = {"planning": [turn("Plan.", "submit_plan",
                               {"plan": "Write a.txt."})],
             "implementing": [
                 turn("a", "write_file", {"path": "a.txt",
                                          "content": "alpha\n"},
                      slow if slow is not None else delay),
                 turn("Done.", "finish", {"summary": "Wrote a.txt."})],
             "reviewing": [turn("Fine.", "submit_review",
                                {"verdict": "approve", "comments": "OK."})]}
        path = os.path.join(self.dir, "script.json")
        with open(path + ".tmp", "w") as f:
            json.dump(s, f)
        os.rename(path + ".tmp", path)

    def env(self, extra=None):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
             "HOME": self.home, "LANG": "C.UTF-8", "NO_COLOR": "1",
             "ORCH_DATABASE_URL": self.url,
             "ORCH_WORKER_PATH": self.a.worker,
             "ORCH_SANDBOX_PROFILES_DIR": self.a.profiles,
             "ORCH_LLM_PROVIDER": "openai", "ORCH_LLM_API_KEY": KEY,
             "ORCH_LLM_MODEL": "mock-model",
             "ORCH_LLM_BASE_URL": "http://127.0.0.1:%d/v1" % self.mock_port,
             "ORCH_LEASE_S": str(self.a.lease), "ORCH_MAX_WORKERS": "2",
             "ORCH_RETRY_BACKOFF_MS": "200",
             "ORCH_STATE_DIR": os.path.join(self.dir, "cli")}
        e.update(extra or {})
        return e

    def schema(self):
        """Make the schema with one CLI command before the nodes start
        (several first starts at once on an empty database deadlocked in
        the migration on the lease branch: tests/multinode/mn-spread.sh
        checks it)."""
        os.makedirs(os.path.join(self.dir, "cli"), exist_ok=True)
        subprocess.run([self.a.supervisor, "list"], env=self.env(),
                       check=True, stdout=subprocess.DEVNULL)

    def start(self, name):
        state = os.path.join(self.dir, "n-" + name)
        logf = open(os.path.join(self.dir, name + ".log"), "ab")
        p = subprocess.Popen(
            [self.a.supervisor, "serve"], stdin=subprocess.DEVNULL,
            stdout=logf, stderr=logf,
            env=self.env({"ORCH_STATE_DIR": state, "ORCH_NODE_NAME": name}))
        self.nodes[name] = p
        return p

    def wait_up(self, name):
        sock = os.path.join(self.dir, "n-" + name, "orch.sock")
        for _ in range(400):
            if os.path.exists(sock):
                return
            if self.nodes[name].poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("node %s did not start (see %s)" % (
            name, os.path.join(self.dir, name + ".log")))

    def submit(self, n):
        os.makedirs(os.path.join(self.dir, "cli"), exist_ok=True)
        for i in range(n):
            subprocess.run(
                [self.a.supervisor, "submit", "Write a.txt (%d)" % i,
                 "--repo", self.origin, "--auto-approve", "all"],
                env=self.env(), check=True, stdout=subprocess.DEVNULL)

    def q(self, sql):
        out = subprocess.run(["psql", "-XAtq", self.url, "-c", sql],
                             check=True, capture_output=True, text=True)
        return [ln.split("|") for ln in out.stdout.splitlines() if ln]

    def stop(self):
        for p in self.nodes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.wait()
        self.mock.kill()
        self.mock.wait()


def wait(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise SystemExit("timed out: %s" % what)


def throughput(a, top):
    rate = {}
    for n in a.nodes:
        c = Cluster(a, top, "tp%d" % n, a.delay)
        try:
            c.submit(a.tasks)
            names = ["n%d" % i for i in range(1, n + 1)]
            for name in names:
                c.start(name)
            for name in names:
                c.wait_up(name)
            wait(lambda: int(c.q("SELECT count(*) FROM tasks WHERE "
                                 "workflow_state IN ('completed', 'failed',"
                                 " 'cancelled')")[0][0]) == a.tasks,
                 60 + a.tasks * a.delay * 8, "%d tasks on %d nodes" % (
                     a.tasks, n))
            done = int(c.q("SELECT count(*) FROM tasks WHERE "
                           "workflow_state = 'completed'")[0][0])
            first = c.q("SELECT min(ts) FROM events WHERE text LIKE "
                        "'worker % started%'")[0][0]
            last = c.q("SELECT max(ts) FROM events WHERE kind = 'state'"
                       " AND text LIKE '% -> completed%'")[0][0]
            per = c.q("SELECT substring(text from 'on node ([a-z0-9]+)'),"
                      " count(DISTINCT task_id) FROM events WHERE text"
                      " LIKE 'worker % started on node %' GROUP BY 1"
                      " ORDER BY 1")
            span = ts_epoch(last) - ts_epoch(first)
            rate[n] = done / span
            result("throughput, %d node%s: tasks/s (%d tasks in %.1f s;"
                   " tasks per node %s)" % (
                       n, "s" if n > 1 else "", done, span,
                       " ".join("%s=%s" % (x, y) for x, y in per)),
                   "%.3f" % rate[n])
        finally:
            c.stop()
    for n in a.nodes:
        if n > 1 and 1 in rate:
            sp = rate[n] / rate[1]
            target = ">= 2.7x" if n == 3 else ""
            result("speed-up, %d nodes against 1" % n, "%.2fx" % sp,
                   target, sp >= 2.7 if n == 3 else None)


def takeover(a, top):
    c = Cluster(a, top, "takeover", 0.05, slow=60)
    times = []
    try:
        c.schema()
        for name in ("a", "b"):
            c.start(name)
            c.wait_up(name)
        for i in range(a.takeovers):
            c.submit(1)
            tid = c.q("SELECT max(id) FROM tasks")[0][0]

            def in_slow():
                try:
                    with open(os.path.join(c.dir, "mock.log")) as f:
                        return any(json.loads(x).get("task") == tid and
                                   json.loads(x).get("stage") ==
                                   "implementing" and
                                   json.loads(x).get("turn") == 0
                                   for x in f)
                except FileNotFoundError:
                    return False
            wait(in_slow, 60, "task %s in its slow turn" % tid)
            victim = c.q("SELECT lease_node FROM tasks WHERE id=%s" %
                         tid)[0][0]
            other = "b" if victim == "a" else "a"
            t0 = time.time()
            c.nodes[victim].kill()
            c.nodes[victim].wait()
            pat = "worker %% started on node %s %%" % other

            def taken():
                return c.q("SELECT count(*) FROM events WHERE task_id=%s"
                           " AND text LIKE '%s'" % (tid, pat))[0][0] != "0"
            wait(taken, 60, "takeover of task %s" % tid)
            ts = c.q("SELECT min(ts) FROM events WHERE task_id=%s AND text"
                     " LIKE '%s'" % (tid, pat))[0][0]
            times.append(ts_epoch(ts) - t0)
            log("  takeover %d: %.2f s" % (i + 1, times[-1]))
            subprocess.run([a.supervisor, "cancel", tid], env=c.env(),
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            # The victim's name is free again once its heartbeat is a
            # lease old.
            time.sleep(a.lease + 1)
            c.start(victim)
            c.wait_up(victim)
    finally:
        c.stop()
    result("takeover after SIGKILL (ORCH_LEASE_S=%d), each run, s" % a.lease,
           " / ".join("%.2f" % t for t in times))
    result("takeover after SIGKILL, worst", "%.2f s" % max(times),
           "<= %d s" % (a.lease + 2), max(times) <= a.lease + 2)


def claim(a, top):
    c = Cluster(a, top, "claim", 0.05)
    lat = []
    try:
        c.schema()
        for name in ("a", "b", "c"):
            c.start(name)
        for name in ("a", "b", "c"):
            c.wait_up(name)
        time.sleep(1)
        for i in range(a.claims):
            c.submit(1)
            tid = c.q("SELECT max(id) FROM tasks")[0][0]

            def started():
                return c.q("SELECT count(*) FROM events WHERE task_id=%s"
                           " AND text LIKE 'worker %% started%%'" %
                           tid)[0][0] != "0"
            wait(started, 30, "a worker for task %s" % tid)
            row = c.q("SELECT t.created_at, min(e.ts) FROM tasks t JOIN"
                      " events e ON e.task_id = t.id WHERE t.id=%s AND"
                      " e.text LIKE 'worker %% started%%' GROUP BY"
                      " t.created_at" % tid)[0]
            lat.append((ts_epoch(row[1]) - ts_epoch(row[0])) * 1000)
            time.sleep(0.2)
    finally:
        c.stop()
    result("claim latency, submit to worker started, 3 idle nodes: median"
           " / p99 / max ms (%d tasks)" % len(lat),
           "%.0f / %.0f / %.0f" % (statistics.median(lat), pct(lat, 99),
                                   max(lat)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    build = os.path.join(SRC, "build")
    p.add_argument("--supervisor",
                   default=os.path.join(build, "supervisor",
                                        "orch-supervisor"))
    p.add_argument("--worker",
                   default=os.path.join(build, "worker", "orch-worker"))
    p.add_argument("--profiles", default=os.path.join(SRC,
                                                      "sandbox-profiles"))
    p.add_argument("--only", default="throughput,takeover,claim")
    p.add_argument("--nodes", default="1,2,3")
    p.add_argument("--tasks", type=int, default=24)
    p.add_argument("--delay", type=float, default=1.0)
    p.add_argument("--lease", type=int, default=3)
    p.add_argument("--takeovers", type=int, default=3)
    p.add_argument("--claims", type=int, default=40)
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    a.nodes = [int(x) for x in a.nodes.split(",")]
    if not os.environ.get("ORCH_TEST_PG_URL"):
        cl = os.path.join(SRC, "tests", "pg", "cluster.sh")
        os.execvp("bash", ["bash", cl, "run", sys.executable,
                           os.path.abspath(__file__)] + sys.argv[1:])
    top = tempfile.mkdtemp(prefix="orch-mnbench.")
    os.chmod(top, 0o755)
    try:
        only = a.only.split(",")
        log("multi-node benchmark: %s" % a.only)
        if "throughput" in only:
            log("throughput (%d tasks, mock replies of %.1f s)" % (
                a.tasks, a.delay))
            throughput(a, top)
        if "takeover" in only:
            log("takeover")
            takeover(a, top)
        if "claim" in only:
            log("claim latency")
            claim(a, top)
    finally:
        if a.keep:
            log("kept %s" % top)
        else:
            shutil.rmtree(top, ignore_errors=True)
    print("| metric | measured | target | met |")
    print("| --- | --- | --- | --- |")
    for m, v, t, ok in RESULTS:
        print("| %s | %s | %s | %s |" % (m, v, t, ok))
    return 0


if __name__ == "__main__":
    sys.exit(main())
