#!/usr/bin/env python3
"""The console's pages with many finished tasks: issue 14's target.

usage: console.py --supervisor PATH [--finished N] [--awaiting N] [--runs N]
                  [--followers N --running N]

A state directory with N finished tasks (rows written straight into the
database the service made, as a long-lived installation would have) and a
few waiting for a person; the service with ORCH_HTTP_LISTEN; then, over
TCP with the bearer token, the calls the console's pages make: the inbox
page, the task list page (its first page, a filtered one, an older page)
and the API's inbox query.  Prints the median and the 90th percentile of
each, and exits 1 when a median is 100 ms or more.

With --followers N (and --worker PATH), N clients then follow the live
logs of --running tasks (the scripted model, each turn delayed) while they
run, and the supervisor's own CPU time (utime + stime in /proc, not its
workers') over that time is compared with the same run without followers.
"""
import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--supervisor", required=True)
    ap.add_argument("--finished", type=int, default=100000)
    ap.add_argument("--awaiting", type=int, default=20)
    ap.add_argument("--runs", type=int, default=31)
    ap.add_argument("--followers", type=int, default=0)
    ap.add_argument("--running", type=int, default=8)
    ap.add_argument("--worker")
    ap.add_argument("--profiles")
    a = ap.parse_args()
    rc = pages(a)
    if a.followers:
        base = follow(a, 0)
        busy = follow(a, a.followers)
        print("\n| followers (%d tasks running) | supervisor CPU %% | wall s |"
              % a.running)
        print("| --- | --- | --- |")
        for n, (cpu, wall) in ((0, base), (a.followers, busy)):
            print("| %d | %.2f | %.1f |" % (n, cpu, wall))
        if busy[0] - base[0] >= 2.0:
            rc = 1
    return rc


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def follow(a, followers):
    """Run a.running tasks with `followers` clients on their event
    streams: the supervisor's CPU %% and the wall time."""
    import threading
    tmp = tempfile.mkdtemp(prefix="orch-bench-follow.")
    port = free_port()
    token = "bench-" + os.urandom(16).hex()
    turn = lambda tool, args: {"text": "x", "delay_ms": 1500,
                               "tool_calls": [{"name": tool, "arguments": args}]}
    script = {"planning": [turn("submit_plan", {"plan": "p"})],
              "implementing": [turn("write_file", {"path": "f", "content": "x\n"}),
                               turn("finish", {"summary": "s"})],
              "reviewing": [turn("submit_review", {"verdict": "approve",
                                                   "comments": "ok"})]}
    with open(tmp + "/script.json", "w") as f:
        json.dump(script, f)
    repo = tmp + "/repo"
    os.makedirs(repo)
    for cmd in (["git", "init", "-q", "-b", "main"],
                ["git", "-c", "user.name=b", "-c", "user.email=b@b",
                 "commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(cmd, cwd=repo, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_STATE_DIR=tmp + "/state", ORCH_LLM_PROVIDER="scripted",
               ORCH_LLM_SCRIPT=tmp + "/script.json",
               ORCH_HTTP_LISTEN="127.0.0.1:%d" % port, ORCH_HTTP_TOKEN=token,
               ORCH_MAX_WORKERS=str(a.running), ORCH_LOG_LEVEL="warn",
               ORCH_MAX_CONNECTIONS=str(followers + 32))
    if a.worker:
        env["ORCH_WORKER_PATH"] = a.worker
    if a.profiles:
        env["ORCH_SANDBOX_PROFILES_DIR"] = a.profiles
    svc = subprocess.Popen([a.supervisor, "serve"], env=env,
                           stdout=subprocess.DEVNULL)
    base = "http://127.0.0.1:%d" % port
    hdr = {"Authorization": "Bearer " + token}

    def call(path, body=None):
        r = urllib.request.Request(base + path, headers=hdr, data=body)
        with urllib.request.urlopen(r, timeout=60) as f:
            return json.loads(f.read())

    try:
        for _ in range(100):
            try:
                call("/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        start_cpu, start = cpu_s(svc.pid), time.time()
        ids = [call("/v1/tasks", json.dumps(
            {"request": "t%d" % i, "repo": repo,
             "auto_approve": "all"}).encode())["id"]
            for i in range(a.running)]

        def reader(tid):
            r = urllib.request.Request(
                base + "/v1/tasks/%d/events?follow=1" % tid, headers=hdr)
            with urllib.request.urlopen(r, timeout=300) as f:
                for _ in f:
                    pass
        th = [threading.Thread(target=reader, args=(ids[i % len(ids)],),
                               daemon=True) for i in range(followers)]
        for t in th:
            t.start()
        while True:
            states = [call("/v1/tasks/%d" % i)["status"] for i in ids]
            if all(s in ("completed", "failed", "cancelled") for s in states):
                break
            time.sleep(0.5)
        cpu, wall = cpu_s(svc.pid) - start_cpu, time.time() - start
        for t in th:
            t.join(10)
        return 100.0 * cpu / wall, wall
    finally:
        svc.terminate()
        svc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def pages(a):
    tmp = tempfile.mkdtemp(prefix="orch-bench-console.")
    port = free_port()
    token = "bench-" + os.urandom(16).hex()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(ORCH_STATE_DIR=tmp + "/state", ORCH_LLM_PROVIDER="scripted",
               ORCH_HTTP_LISTEN="127.0.0.1:%d" % port, ORCH_HTTP_TOKEN=token,
               ORCH_ENABLE_RESUME="false", ORCH_LOG_LEVEL="warn")
    svc = None
    try:
        # The service makes the database; it is stopped while we fill it.
        first = subprocess.Popen([a.supervisor, "serve"], env=env,
                                 stdout=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(tmp + "/state/orch.sock"):
                break
            time.sleep(0.1)
        first.terminate()
        first.wait()
        db = sqlite3.connect(tmp + "/state/tasks.db")
        pad = "x" * 300
        db.executemany(
            "INSERT INTO tasks(request, status, workflow_state, plan,"
            " implementation, review, verification_result, repo)"
            " VALUES(?, 'completed', 'completed', ?, ?, ?, ?, '/srv/repo')",
            (("Request %d %s" % (i, pad), "Plan " + pad, "Impl " + pad,
              '{"verdict":"approve"}', '{"status":"passed"}')
             for i in range(a.finished)))
        db.executemany(
            "INSERT INTO tasks(request, status, workflow_state, plan, repo)"
            " VALUES(?, 'awaiting_approval', 'plan_awaiting_approval', ?,"
            " '/srv/repo')",
            (("Waiting %d" % i, "Plan " + pad) for i in range(a.awaiting)))
        db.commit()
        db.close()
        svc = subprocess.Popen([a.supervisor, "serve"], env=env,
                               stdout=subprocess.DEVNULL)
        base = "http://127.0.0.1:%d" % port

        def get(path):
            r = urllib.request.Request(
                base + path, headers={"Authorization": "Bearer " + token})
            t = time.perf_counter()
            with urllib.request.urlopen(r, timeout=30) as f:
                n = len(f.read())
            return time.perf_counter() - t, n

        for _ in range(100):
            try:
                get("/v1/health")
                break
            except OSError:
                time.sleep(0.1)
        paths = ["/inbox", "/tasks", "/tasks?status=completed",
                 "/tasks?before=%d" % (a.finished // 2),
                 "/v1/tasks?status=awaiting_approval"]
        print("| call (%d finished, %d waiting) | median ms | p90 ms | bytes |"
              % (a.finished, a.awaiting))
        print("| --- | --- | --- | --- |")
        worst = 0.0
        for p in paths:
            times = []
            for _ in range(a.runs):
                t, n = get(p)
                times.append(t * 1000)
            times.sort()
            med = statistics.median(times)
            worst = max(worst, med)
            print("| `%s` | %.1f | %.1f | %d |" %
                  (p, med, times[int(len(times) * 0.9)], n))
        return 0 if worst < 100 else 1
    finally:
        if svc is not None:
            svc.terminate()
            svc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
