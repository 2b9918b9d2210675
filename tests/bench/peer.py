#!/usr/bin/env python3
"""Same work as LangGraph.js (issue 16): orch-supervisor against a peer.

    tests/bench/peer.py [--peer-tasks 100] [--peer-concurrency 1,8]
                        [--repeat 3] [--no-strace]

The peer (tests/bench/peer/graph.mjs; install it once with
tests/bench/peer/setup.sh) is a LangGraph.js StateGraph with the SQLite
checkpointer, durability "sync", doing what one task of the workflow
benchmark does (run.py --only workflow: mock-fast, auto_approve all, a
two-file repository, no --verify): the same git command lines with the
same environment, the same model requests to the same mock.

First a check run, each side once on a recording mock, a few tasks one at
a time, under strace -f: both sides' git execve (argv and environment,
the task's paths and the commit ids made placeholders) and the model
requests (headers and bodies) must be the same, or the driver stops with
the difference.  The check run also gives the prompts the peer sends
(ours, captured), and counts per task: git processes, model calls,
fsync/fdatasync, processes started.

Then, for each repeat and each concurrency, ours and the peer in turn
(ours, peer, ours, peer ...), the same number of tasks on one mock-fast:
  tasks/s   tasks / (last completion - first submission)
  CPU/task  this script's RUSAGE_CHILDREN delta over the side's whole
            life (ours: the service, its workers and their git; the
            peer: node and its git), less an idle start+stop of that side
  RSS       our supervisor's VmHWM against the node process's VmHWM
Medians of the repeats; a Markdown table on stdout (metric, ours, peer,
ratio, target, met).  Python standard library only; builds nothing.
"""

import argparse
import ast
import http.server
import json
import os
import re
import shutil
import signal
import socketserver
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import run  # noqa: E402  (the workflow benchmark's pieces)

PEER = os.path.join(HERE, "peer")
log = run.log
LIVE = []  # services and peers to stop if the driver stops early


def stop_all():
    for x in LIVE:
        p = x.p
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()


def uptime():
    with open("/proc/loadavg") as f:
        return "load average " + " ".join(f.read().split()[:3])


# ------------------------------------------------------------ recording mock

def sse_reply(name, args):
    """mock-fast's reply: the tool call name(args) as a streamed chunk."""
    head = ('{"id":"chatcmpl-mock","object":"chat.completion.chunk",'
            '"choices":[{"index":0,')
    call = json.dumps({"index": 0, "id": "call_0", "type": "function",
                       "function": {"name": name, "arguments": args}},
                      separators=(",", ":"))
    return ("data: " + head + '"delta":{"role":"assistant","content":""},'
            '"finish_reason":null}]}\n\n'
            "data: " + head + '"delta":{"tool_calls":[' + call + ']},'
            '"finish_reason":null}]}\n\n'
            "data: " + head + '"delta":{},"finish_reason":"tool_calls"}]}'
            "\n\n"
            'data: {"id":"chatcmpl-mock","object":"chat.completion.chunk",'
            '"choices":[],"usage":{"prompt_tokens":100,'
            '"completion_tokens":10,"total_tokens":110}}\n\n'
            "data: [DONE]\n\n").encode()


class RecordingMock:
    """mock-fast's answers, every request kept (path, headers, body)."""

    def __init__(self):
        self.reqs = []
        rec = self.reqs

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                if n > (1 << 24):
                    self.send_error(413)
                    return
                body = self.rfile.read(n)
                rec.append({"path": self.path,
                            "headers": {k.lower(): v for k, v in
                                        self.headers.items()},
                            "body": body.decode("utf-8", "replace")})
                st = self.headers.get("X-Orch-Stage", "")
                answered = b'"tool_call_id"' in body
                if st == "planning":
                    r = sse_reply("submit_plan",
                                  '{"plan":"1. Write bench.txt."}')
                elif st == "implementing" and not answered:
                    r = sse_reply("write_file", '{"path":"bench.txt",'
                                  '"content":"benchmark"}')
                elif st == "implementing":
                    r = sse_reply("finish", '{"summary":"Wrote bench.txt."}')
                elif st == "reviewing":
                    r = sse_reply("submit_review", '{"verdict":"approve",'
                                  '"comments":"Fine."}')
                else:
                    self.send_error(400, "no reply for stage %r" % st)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(r)))
                self.end_headers()
                self.wfile.write(r)

            def log_message(self, *a):
                pass

        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/v1" % self.srv.server_address[1]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


# ------------------------------------------------------------------- strace

EXEC_RE = re.compile(r'^(\d+) +execve\("([^"]*)", (\[.*?\]), (\[.*?\])'
                     r'(\) = 0$| <unfinished \.\.\.>$)')
RESUMED_RE = re.compile(r'^(\d+) +<\.\.\. execve resumed>\) += 0$')


def strace_cmd(out):
    return ["strace", "-f", "-qq", "-v", "-s", "65536", "-o", out, "-e",
            "trace=execve,fsync,fdatasync,clone,clone3,fork,vfork"]
SYNC_RE = re.compile(r'^(\d+) +(fsync|fdatasync)\(')
FORK_RE = re.compile(r'^(\d+) +(clone3?|vfork|fork)\(')


def parse_strace(path):
    """The successful git execve (argv, env) in order, and counts: execve,
    fsync+fdatasync, processes made (clones but threads).  A call another
    thread interrupted is in two lines (unfinished, resumed): it counts
    at its end, when it succeeded."""
    gits, cnt, pending = [], {"execve": 0, "fsync": 0, "forks": 0}, {}

    def done(path, argv, env):
        cnt["execve"] += 1
        if os.path.basename(path) == "git":
            gits.append((ast.literal_eval(argv), ast.literal_eval(env)))
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = EXEC_RE.match(line)
            if m:
                if m.group(5).startswith(")"):
                    done(*m.group(2, 3, 4))
                else:
                    pending[m.group(1)] = m.group(2, 3, 4)
                continue
            m = RESUMED_RE.match(line)
            if m:
                if m.group(1) in pending:
                    done(*pending.pop(m.group(1)))
                continue
            if SYNC_RE.match(line):
                cnt["fsync"] += 1
            elif FORK_RE.match(line) and "CLONE_THREAD" not in line and \
                    "<unfinished" not in line:
                cnt["forks"] += 1
            elif re.match(r'^\d+ +<\.\.\. (clone3?|vfork|fork) resumed>',
                          line) and "CLONE_THREAD" not in line:
                cnt["forks"] += 1
    return gits, cnt


class Norm:
    """Placeholders for what legitimately differs between the sides: their
    scratch paths, commit ids (their dates differ) and state ids."""

    def __init__(self, paths):
        self.paths = sorted(paths.items(), key=lambda kv: -len(kv[1]))
        self.ids = {}

    def __call__(self, s):
        for name, p in self.paths:
            s = s.replace(p, "<%s>" % name)

        def hexid(m):
            h = m.group(0)
            if h not in self.ids:
                self.ids[h] = "<id%d>" % (len(self.ids) + 1)
            return self.ids[h]
        s = re.sub(r"\b[0-9a-f]{40}\b", hexid, s)
        s = re.sub(r"\b[0-9a-f]{32}\b", "<state-id>", s)
        return re.sub(r"-[0-9a-f]{12}\b", "-<state-id12>", s)


def norm_gits(gits, norm):
    out = []
    for argv, env in gits:
        # Commit ids are numbered per task (each starts with submission's
        # rev-parse): two tasks within one second make identical commits
        # (same tree, parent, message and date) on one side, not the other.
        if "--show-toplevel" in argv:
            norm.ids.clear()
        out.append((tuple(norm(a) for a in argv),
                    tuple(norm(e) for e in env)))
    return out


HEADERS = ("User-Agent", "Authorization", "Content-Type", "Accept",
           "X-Orch-Task-Id", "X-Orch-Stage", "Content-Length")


def norm_reqs(reqs, norm):
    return [(r["path"], tuple((h, r["headers"].get(h.lower()))
                                       for h in HEADERS),
             norm(r["body"])) for r in reqs]


def explain(x, y):
    """Where two normalised items first differ, short enough to read."""
    if x is None or y is None:
        return "ours: %r\n  peer: %r" % (x, y)
    fx, fy = json.dumps(x), json.dumps(y)
    i = next((k for k, (c, d) in enumerate(zip(fx, fy)) if c != d),
             min(len(fx), len(fy)))
    lo = max(0, i - 100)
    return "at character %d:\n  ours: ...%s...\n  peer: ...%s..." % (
        i, fx[lo:i + 100], fy[lo:i + 100])


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    if len(a) != len(b):
        i = min(len(a), len(b))
        return i, a[i] if i < len(a) else None, b[i] if i < len(b) else None
    return None


# --------------------------------------------------------------- the sides

def check_run(ctx, k):
    """Each side once, k tasks one at a time, on a recording mock (and
    under strace unless --no-strace): the prompts for the peer, and the
    comparison of git argv and model requests."""
    a = ctx.a
    use_strace = a.strace and shutil.which("strace") is not None
    if a.strace and not use_strace:
        raise SystemExit("strace is missing (or run with --no-strace)")
    out = {}
    # Ours, one task at a time.
    mock = RecordingMock()
    try:
        name = "check-ours"
        repo = os.path.join(ctx.scratch, name, "repo")
        run.make_repo(repo)
        svc = run.Service(ctx, name, mock, 1)
        LIVE.append(svc)
        svc.start()
        trace = os.path.join(ctx.scratch, name, "strace.txt")
        st = None
        if use_strace:
            st = subprocess.Popen(strace_cmd(trace) + ["-p", str(svc.p.pid)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # attached (strace has no ready signal)
        for i in range(k):
            svc.submit(repo)
            svc.wait_tasks("SELECT count(*) FROM tasks WHERE status IN"
                           " ('completed','failed','cancelled')", i + 1,
                           timeout=120, poll=0.01)
        bad = svc.q("SELECT count(*) FROM tasks WHERE status != "
                    "'completed'")[0][0]
        if st is not None:
            st.send_signal(signal.SIGINT)
            st.wait()
        svc.stop()
        if bad:
            raise SystemExit("check run: %d of our tasks did not complete:"
                             " see %s" % (bad, svc.logpath))
        ours_reqs = list(mock.reqs)
        ours_paths = {"repo": repo, "state": svc.state, "home": svc.home}
        if use_strace:
            out["ours"] = parse_strace(trace)
    finally:
        mock.stop()
    if len(ours_reqs) == 0:
        raise SystemExit("check run: no model request of ours recorded")
    # The prompts: per stage, the system prompt and tools ours sent.
    prompts = {"model": None, "stages": {}}
    for r in ours_reqs:
        b = json.loads(r["body"])
        prompts["model"] = b["model"]
        prompts["stages"][r["headers"]["x-orch-stage"]] = {
            "system": b["messages"][0]["content"], "tools": b["tools"]}
    ctx.prompts = os.path.join(ctx.scratch, "prompts.json")
    with open(ctx.prompts, "w") as f:
        json.dump(prompts, f)
    # The peer, one task at a time.
    mock = RecordingMock()
    try:
        name = "check-peer"
        trace = os.path.join(ctx.scratch, name, "strace.txt")
        pr = Peer(ctx, name, mock, 1, k,
                  strace=strace_cmd(trace) if use_strace else None)
        pr.start()
        summary = pr.run()
        pr.stop()
        if summary["done"] != k:
            raise SystemExit("check run: the peer failed: %s" %
                             "; ".join(summary["errors"]))
        peer_reqs = list(mock.reqs)
        peer_paths = {"repo": pr.repo, "state": pr.state, "home": pr.home}
        if use_strace:
            out["peer"] = parse_strace(trace)
    finally:
        mock.stop()
    # Same requests, same git work.
    ro, rp = (norm_reqs(ours_reqs, Norm(ours_paths)),
              norm_reqs(peer_reqs, Norm(peer_paths)))
    d = first_diff(ro, rp)
    if d is not None:
        raise SystemExit("check run: the model requests differ at request "
                         "%d (of %d ours, %d the peer's), %s" % (
                             d[0], len(ro), len(rp), explain(d[1], d[2])))
    res = {"model_calls": len(ro) / k}
    if use_strace:
        go = norm_gits(out["ours"][0], Norm(ours_paths))
        gp = norm_gits(out["peer"][0], Norm(peer_paths))
        d = first_diff(go, gp)
        if d is not None:
            raise SystemExit(
                "check run: the git commands differ at git process %d (of %d"
                " ours, %d the peer's), %s" % (
                    d[0], len(go), len(gp), explain(d[1], d[2])))
        res["git"] = len(go) / k
        res["git_top"] = sum(1 for g in go if g[0][0] == "git") / k
        for side in ("ours", "peer"):
            for key, v in out[side][1].items():
                res["%s_%s" % (side, key)] = v / k
    return res


class Peer:
    """One run of graph.mjs: ready, go, its summary, its /proc, quit."""

    def __init__(self, ctx, name, mock, conc, n, strace=None):
        self.ctx = ctx
        self.repo = os.path.join(ctx.scratch, name, "repo")
        self.state = os.path.join(ctx.scratch, name, "state")
        self.home = os.path.join(ctx.scratch, name, "home")
        os.makedirs(self.home, exist_ok=True)
        if n > 0:
            run.make_repo(self.repo)
        else:
            os.makedirs(self.repo, exist_ok=True)
        self.cmd = [ctx.a.node, os.path.join(PEER, "graph.mjs"), "--mock",
                    mock.url, "--repo", self.repo, "--state", self.state,
                    "--tasks", str(n), "--concurrency", str(conc),
                    "--prompts", ctx.prompts]
        if ctx.a.peer_synchronous:
            self.cmd += ["--synchronous", ctx.a.peer_synchronous]
        self.traced = strace is not None
        if strace:
            self.cmd = strace + self.cmd
        self.errpath = os.path.join(ctx.scratch, name, "peer.err")
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin",
                    "HOME": self.home, "LANG": "C.UTF-8"}
        self.p = None

    def start(self):
        LIVE.append(self)
        self.p = subprocess.Popen(self.cmd, env=self.env, cwd=PEER,
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=open(self.errpath, "a"), text=True)
        if self.p.stdout.readline().strip() != "ready":
            self.p.wait()
            raise SystemExit("the peer did not start (exit %s): see %s" % (
                self.p.returncode, self.errpath))
        # node itself: strace's child when traced.
        self.pid = self.p.pid
        if self.traced:
            kids = run.children(self.p.pid)
            self.pid = kids[0] if kids else self.p.pid
        return self

    def run(self):
        own0 = run.proc_cpu(self.pid)[0]  # node's start-up: not the work's
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            self.p.wait()
            raise SystemExit("the peer ended early (exit %s): see %s" % (
                self.p.returncode, self.errpath))
        s = json.loads(line)
        s["hwm_kb"] = run.proc_status(self.pid, "VmHWM")
        s["own"], s["kids"] = run.proc_cpu(self.pid)
        s["own"] -= own0
        return s

    def stop(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.close()
        if self.p.wait(timeout=60) != 0:
            raise SystemExit("the peer exited %d: see %s" % (
                self.p.returncode, self.errpath))


def ours_once(ctx, mock, conc, n, rep):
    name = "ours-%d-%d" % (conc, rep)
    repo = os.path.join(ctx.scratch, name, "repo")
    run.make_repo(repo)
    svc = run.Service(ctx, name, mock, conc)
    LIVE.append(svc)
    c0 = run.children_cpu()
    svc.start()
    own0 = run.proc_cpu(svc.p.pid)[0]  # the start-up: not the work's
    t0 = time.time()
    for _ in range(n):
        svc.submit(repo)
    svc.wait_tasks("SELECT count(*) FROM tasks WHERE status IN"
                   " ('completed','failed','cancelled')", n,
                   timeout=60 + n * 5, poll=0.02)
    hwm = run.proc_status(svc.p.pid, "VmHWM")
    own = run.proc_cpu(svc.p.pid)[0] - own0
    svc.stop()
    cpu = run.children_cpu() - c0
    _, _, last = run.stage_latencies(svc)
    failed = svc.q("SELECT count(*) FROM tasks WHERE status != 'completed'"
                   )[0][0]
    if failed:
        raise SystemExit("%d of our tasks did not complete: see %s" % (
            failed, svc.logpath))
    return {"tasks_s": n / (last - t0), "cpu_ms": cpu * 1e3 / n,
            "sup_ms": own * 1e3 / n, "hwm_kb": hwm}


def peer_once(ctx, mock, conc, n, rep):
    name = "peer-%d-%d" % (conc, rep)
    c0 = run.children_cpu()
    pr = Peer(ctx, name, mock, conc, n).start()
    s = pr.run()
    pr.stop()
    cpu = run.children_cpu() - c0
    if s["failed"] or s["done"] != n:
        raise SystemExit("the peer: %d of %d tasks failed: %s" % (
            s["failed"], n, "; ".join(s["errors"])))
    ctx.peer_sync = s["synchronous"]
    return {"tasks_s": n / (s["t1"] - s["t0"]), "cpu_ms": cpu * 1e3 / n,
            "node_ms": s["own"] * 1e3 / n, "hwm_kb": s["hwm_kb"]}


def idle(ctx, mock):
    """CPU of an idle start+stop of each side, median of 3 (subtracted),
    and their peak RSS when idle."""
    o, p, ho, hp = [], [], [], []
    for i in range(3):
        svc = run.Service(ctx, "idle-ours-%d" % i, mock, 1)
        LIVE.append(svc)
        c0 = run.children_cpu()
        svc.start()
        ho.append(run.proc_status(svc.p.pid, "VmHWM"))
        svc.stop()
        o.append(run.children_cpu() - c0)
        c0 = run.children_cpu()
        pr = Peer(ctx, "idle-peer-%d" % i, mock, 1, 0).start()
        hp.append(pr.run()["hwm_kb"])
        pr.stop()
        p.append(run.children_cpu() - c0)
    med = statistics.median
    return med(o), med(p), med(ho), med(hp)


# --------------------------------------------------------------------- main

def main():
    build = os.path.join(run.SRC, "build")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=build, help="build directory")
    p.add_argument("--supervisor")
    p.add_argument("--worker")
    p.add_argument("--mock")
    p.add_argument("--profiles", default=os.path.join(run.SRC,
                                                      "sandbox-profiles"))
    p.add_argument("--node", default=shutil.which("node") or "node")
    p.add_argument("--tmp", default=None, help="scratch parent (/tmp)")
    p.add_argument("--env", action="append", default=[],
                   metavar="NAME=VALUE",
                   help="a variable for every service of ours (repeat)")
    p.add_argument("--keep", action="store_true", help="keep the scratch")
    p.add_argument("--json", help="write the results here too")
    p.add_argument("--peer-tasks", type=int, default=100,
                   help="tasks per run and side")
    p.add_argument("--peer-concurrency", default="1,8",
                   help="tasks in flight (ORCH_MAX_WORKERS; the peer's "
                   "pool)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--check-tasks", type=int, default=3,
                   help="tasks of the check run, one at a time")
    p.add_argument("--no-strace", dest="strace", action="store_false",
                   help="compare the model requests only, not git")
    p.add_argument("--check-only", action="store_true",
                   help="the check run alone: same requests, same git")
    p.add_argument("--peer-synchronous", choices=("NORMAL", "FULL"),
                   help="the peer's SQLite synchronous setting (default: "
                   "as shipped, NORMAL in WAL mode; ours is FULL)")
    a = p.parse_args()
    a.supervisor = a.supervisor or os.path.join(
        a.build, "supervisor", "orch-supervisor")
    a.worker = a.worker or os.path.join(a.build, "worker", "orch-worker")
    a.mock = a.mock or os.path.join(a.build, "tests", "bench", "mock-fast")
    for f in (a.supervisor, a.worker, a.mock):
        if not os.access(f, os.X_OK):
            raise SystemExit("%s is missing: build first (ninja -C build)" %
                             f)
    if not os.path.isdir(os.path.join(PEER, "node_modules")):
        raise SystemExit("the peer is not installed: run %s first" %
                         os.path.join(PEER, "setup.sh"))
    concs = [int(x) for x in a.peer_concurrency.split(",")]
    ctx = run.Ctx(a)
    log("machine: " + run.machine())
    log("scratch: " + ctx.scratch)
    log(uptime())
    t0 = time.time()
    load0 = uptime()
    rows = []
    try:
        log("== check run: %d tasks each side, one at a time%s" % (
            a.check_tasks, ", under strace" if a.strace else ""))
        chk = check_run(ctx, a.check_tasks)
        log("   same model requests (%.1f per task)%s" % (
            chk["model_calls"], "; same git argv and environment (%.1f git "
            "processes per task, %.1f started by the program itself)" % (
                chk["git"], chk["git_top"]) if "git" in chk else ""))
        if a.check_only:
            return 0
        mock = run.Mock(ctx, 0)
        try:
            io, ip, iho, ihp = idle(ctx, mock)
            log("   idle start+stop CPU: ours %.1f ms, peer %.1f ms" % (
                io * 1e3, ip * 1e3))
            by = {}
            for rep in range(a.repeat):
                for c in concs:
                    for side, fn, sub in (("ours", ours_once, io),
                                          ("peer", peer_once, ip)):
                        r = fn(ctx, mock, c, a.peer_tasks, rep)
                        r["cpu_ms"] -= sub * 1e3 / a.peer_tasks
                        by.setdefault((side, c), []).append(r)
                        log("   %s %d in flight rep %d: %.1f tasks/s, %.1f"
                            " ms CPU/task, peak RSS %.1f MB" % (
                                side, c, rep, r["tasks_s"], r["cpu_ms"],
                                r["hwm_kb"] / 1024))
        finally:
            mock.stop()
    finally:
        stop_all()
        if not a.keep:
            shutil.rmtree(ctx.scratch, ignore_errors=True)

    def med(side, c, k):
        return statistics.median(r[k] for r in by[(side, c)])

    def row(metric, o, pv, fmt, target=None, better="high"):
        ratio = o / pv if pv else float("nan")
        met = ""
        if target is not None:
            ok = ratio >= target if better == "high" else ratio <= target
            met = "yes" if ok else "**no**"
        rows.append((metric, fmt % o, fmt % pv, "%.2fx" % ratio,
                     "" if target is None else ("%s %gx" % (
                         ">=" if better == "high" else "<=", target)), met))

    for c in concs:
        row("%d in flight: tasks/s" % c, med("ours", c, "tasks_s"),
            med("peer", c, "tasks_s"), "%.1f", 2.0)
    for c in concs:
        row("%d in flight: CPU ms per task (all processes)" % c,
            med("ours", c, "cpu_ms"), med("peer", c, "cpu_ms"), "%.1f",
            0.5, "low")
    for c in concs:
        row("%d in flight: ... of which the supervisor / node itself" % c,
            med("ours", c, "sup_ms"), med("peer", c, "node_ms"), "%.1f")
    for c in concs:
        # The peer's children are its git processes alone: the same git
        # work as ours, so ours less the supervisor less that is about
        # what the workers themselves cost.
        row("%d in flight: ... the rest (ours: workers + git; the peer: "
            "git)" % c, med("ours", c, "cpu_ms") - med("ours", c, "sup_ms"),
            med("peer", c, "cpu_ms") - med("peer", c, "node_ms"), "%.1f")
    for c in concs:
        row("%d in flight: peak RSS MB, supervisor vs node" % c,
            med("ours", c, "hwm_kb") / 1024,
            med("peer", c, "hwm_kb") / 1024, "%.1f", 0.1, "low")
    row("idle: peak RSS MB", iho / 1024, ihp / 1024, "%.1f")
    row("idle start+stop CPU ms (subtracted)", io * 1e3, ip * 1e3, "%.1f")
    row("model calls per task (check run)", chk["model_calls"],
        chk["model_calls"], "%.1f")
    if "git" in chk:
        rows.append(("git processes per task (check run; all / started "
                     "by the program itself)", "%.1f / %.1f" % (
                         chk["git"], chk["git_top"]), "%.1f / %.1f" % (
                         chk["git"], chk["git_top"]), "1.00x", "", ""))
        for k, what in (("fsync", "fsync+fdatasync"), ("execve",
                        "execve (all)"), ("forks", "processes started")):
            row("%s per task (check run, strace)" % what,
                chk["ours_" + k], chk["peer_" + k], "%.1f")
    print("\nmachine: %s\n%s at the start, %s at the end; total %.0f s\n"
          "%d tasks per run, %d repeat(s), medians; check run of %d tasks"
          " %s\nSQLite synchronous: ours FULL, the peer's %s\n" % (
              run.machine(), load0, uptime(), time.time() - t0,
              a.peer_tasks, a.repeat, a.check_tasks,
              "(same model requests, same git argv and environment: "
              "checked by strace)" if "git" in chk else
              "(same model requests; git not checked: --no-strace)",
              {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                  ctx.peer_sync, ctx.peer_sync)))
    print("| metric | ours | peer | ratio | target | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| %s |" % " | ".join(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": [dict(zip(("metric", "ours", "peer", "ratio",
                                          "target", "met"), r))
                                for r in rows],
                       "runs": {"%s-%d" % k: v for k, v in by.items()}},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
