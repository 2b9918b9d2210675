#!/usr/bin/env python3
"""The multi-node tests' check that no committed model reply was asked
again, from the mock model's request log and the journal.

    check.py repeats MOCK_LOG JOURNAL_FILE

JOURNAL_FILE: psql -A -t output of
    SELECT task_id, stage, run, seq, created_at FROM journal
    WHERE kind = 'reply' ORDER BY task_id, stage, run, seq

A stage's n-th model call (the mock's "turn": the number of assistant
messages in the conversation) is answered by its n-th journaled reply; its
round (the mock's "round", the n-th different opening of the stage for the
task) is the n-th run of that stage in the journal.  A request for a turn
whose reply was committed before the request came is a committed reply
asked again: what must never happen, whatever was killed or restarted.  A
request made again before the reply was committed (the model's answer
lost with a killed worker or node, or a commit that did not happen) is
allowed, and counted.

Prints "requests=N repeated=N after_commit=N" and, on stderr, each request
asked after its reply was committed.
"""

import datetime
import json
import sys


def parse_ts(s):
    # The store's text timestamps: UTC, "YYYY-MM-DD HH:MM:SS[.fff]".
    s = s.strip()
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in s else "%Y-%m-%d %H:%M:%S"
    d = datetime.datetime.strptime(s, fmt)
    return d.replace(tzinfo=datetime.timezone.utc).timestamp()


def repeats(mock_log, journal_file):
    replies = {}  # (task, stage) -> {run: [created, ...]}
    with open(journal_file) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            task, stage, run, _seq, created = line.split("|", 4)
            runs = replies.setdefault((task, stage), {})
            runs.setdefault(int(run), []).append(parse_ts(created))
    reqs = []
    try:
        with open(mock_log) as f:
            reqs = [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        pass
    reqs = [r for r in reqs if r.get("stage") and r.get("task")]
    repeated = after = 0
    for r in reqs:
        if r["n"] > 1:
            repeated += 1
        runs = replies.get((r["task"], r["stage"]), {})
        order = sorted(runs)
        rnd = int(r.get("round") or 1)
        if rnd > len(order):
            continue
        times = runs[order[rnd - 1]]
        turn = int(r["turn"])
        # The store's timestamps are cut to the millisecond: 10 ms of
        # slack keeps a request made right before the commit on the
        # right side.
        if turn < len(times) and r["t"] > times[turn] + 0.01:
            after += 1
            print("# task %s %s round %d turn %d asked at %.3f, its reply"
                  " committed at %.3f (request %d of that turn)" % (
                      r["task"], r["stage"], rnd, turn, r["t"],
                      times[turn], r["n"]), file=sys.stderr)
    print("requests=%d repeated=%d after_commit=%d" % (
        len(reqs), repeated, after))
    return 0


def main():
    if len(sys.argv) != 4 or sys.argv[1] != "repeats":
        print(__doc__, file=sys.stderr)
        return 2
    return repeats(sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    sys.exit(main())
