#!/usr/bin/env python3
"""Checks for tests/chaos/hostile.sh.  Each prints what it found wrong (at
most --max lines, for TAP comments) and exits 1 if anything was.

    hostile_check.py bytes FILE...   a raw control byte: C0 except \\n and
                                     \\t, DEL, or C1 (U+0080-U+009F as
                                     UTF-8); with where and what
    hostile_check.py json FILE...    not valid JSON (strict UTF-8)
    hostile_check.py utf8 FILE...    not valid UTF-8 (a note, not a rule)
    hostile_check.py model LOG       the model's log: the invariants about
                                     what the model saw (see below)
    hostile_check.py events DB       events holding raw control bytes, by
                                     kind and stage (a diagnosis); DB is
                                     the SQLite file or a PostgreSQL URL

FILE names are "LABEL=PATH" or PATH (the label, or the file's base name, is
what the report calls it).
"""

import json
import os
import re
import sys
from collections import defaultdict

MAX = 12
# C0 but \t (09) and \n (0a), DEL, and C1 in UTF-8 (C2 80 - C2 9F).
BAD = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def files(args):
    for a in args:
        if "=" in a:
            label, _, path = a.rpartition("=")
        else:
            label, path = os.path.basename(a), a
        yield label, path


def show(b):
    return b.decode("utf-8", "backslashreplace").encode(
        "unicode_escape").decode("ascii")


# Where a line is, in the human outputs: the section of `show` ("Plan:",
# "Review:"...) or the stage of a `logs` line ("[implementing]").
SECTION = re.compile(rb"^([A-Z][A-Za-z ]{1,30}):")
LOGLINE = re.compile(rb"^[0-9:. -]+(?:#\d+ )?(\[[a-z_]+\])")
JSONKEY = re.compile(rb'^\s*"([A-Za-z_]+)":')


def check_bytes(args):
    bad = 0
    kinds = defaultdict(int)
    where = defaultdict(int)
    for label, path in files(args):
        data = open(path, "rb").read()
        hits = list(BAD.finditer(data))
        if not hits:
            continue
        bad += 1
        for m in hits:
            kinds[show(m.group())] += 1
        seen = set()
        section = "(top)"
        for line in data.split(b"\n"):
            m = SECTION.match(line)
            if m:
                section = m.group(1).decode()
            m = LOGLINE.match(line)
            if m:
                section = "log " + m.group(1).decode()
            m = JSONKEY.match(line)
            if m:
                section = '"%s"' % m.group(1).decode()
            if BAD.search(line):
                seen.add(section)
        for sct in seen:
            where[sct] += 1
        if bad <= MAX:
            m = hits[0]
            line_start = data.rfind(b"\n", 0, m.start()) + 1
            line_end = data.find(b"\n", m.end())
            line = data[line_start:line_end if line_end != -1 else None]
            print("%s: %d raw control bytes, first %s at byte %d, in: %s" %
                  (label, len(hits), show(m.group()), m.start(),
                   show(line[:160])))
    if bad:
        top = sorted(kinds.items(), key=lambda kv: -kv[1])
        print("%d outputs with raw control bytes; bytes seen (%d kinds): %s"
              % (bad, len(top), ", ".join("%s x%d" % kv for kv in top[:12])))
        print("where (outputs with a raw byte there): %s" %
              ", ".join("%s %d" % kv for kv in
                        sorted(where.items(), key=lambda kv: -kv[1])))
    return 1 if bad else 0


def check_json(args):
    bad = 0
    for label, path in files(args):
        data = open(path, "rb").read()
        try:
            json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            bad += 1
            if bad <= MAX:
                print("%s: not valid JSON: %s" % (label, str(e)[:200]))
    if bad:
        print("%d outputs are not valid JSON" % bad)
    return 1 if bad else 0


def check_utf8(args):
    bad = 0
    for label, path in files(args):
        data = open(path, "rb").read()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            bad += 1
            if bad <= MAX:
                print("%s: invalid UTF-8 at byte %d: %s" %
                      (label, e.start, show(data[max(0, e.start - 40):
                                                 e.start + 20])))
    if bad:
        print("%d outputs are not valid UTF-8" % bad)
    return 1 if bad else 0


def event_rows(db):
    """(kind, stage, text) of every event, as bytes (stage None when NULL),
    from the SQLite file DB or, for a postgres[ql]:// URL, through psql:
    each value hex-encoded there, so that no byte of it can pass for psql's
    separators."""
    if re.match(r"postgres(ql)?://", db):
        import subprocess
        q = ("SELECT encode(convert_to(kind, 'UTF8'), 'hex'), "
             "coalesce(encode(convert_to(stage, 'UTF8'), 'hex'), '-'), "
             "encode(convert_to(text, 'UTF8'), 'hex') FROM events")
        out = subprocess.run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                              db, "-c", q], check=True,
                             stdout=subprocess.PIPE).stdout.decode()
        for line in out.splitlines():
            kind, stage, text = line.split("|")
            yield (bytes.fromhex(kind),
                   None if stage == "-" else bytes.fromhex(stage),
                   bytes.fromhex(text))
        return
    import sqlite3
    c = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=10)
    c.text_factory = bytes
    yield from c.execute("SELECT kind, stage, text FROM events")


def events(args):
    """The events (what `logs` prints) holding raw control bytes, by kind
    and stage: where the raw bytes of `logs` come from."""
    n = defaultdict(int)
    total = defaultdict(int)
    for kind, stage, text in event_rows(args[0]):
        k = "%s/%s" % (kind.decode(), (stage or b"-").decode())
        total[k] += 1
        if BAD.search(text):
            n[k] += 1
    print(", ".join("%s %d of %d" % (k, v, total[k]) for k, v in
                    sorted(n.items(), key=lambda kv: -kv[1])) or "none")
    return 0


def model(args):
    """Facts from the model's log, one "name value" line each, then the
    details of what is wrong, as "# name: ..." lines."""
    log = [json.loads(line) for line in open(args[0])]
    turns = defaultdict(list)
    for r in log:
        if r["status"] in (404, 401) and r["task"] is None:
            continue
        turns[(r["task"], r["stage"], r["round"], r["turn"])].append(r)
    out = {}
    notes = defaultdict(list)

    def fact(name, bad_items):
        out[name] = len(bad_items)
        notes[name] = bad_items[:MAX]

    fact("requests", [])
    out["requests"] = len(log)
    fact("bad_key", ["task %s %s turn %s: status %s" % (
        r["task"], r["stage"], r["turn"], r["status"])
        for r in log if not r["key_ok"]])
    fact("key_in_body", ["task %s %s round %s turn %s (after %s)" % (
        r["task"], r["stage"], r["round"], r["turn"], r["tags"])
        for r in log if r["key_in_body"]])
    fact("no_user", sorted({"task %s %s round %s turn %s: %d bytes" % (
        r["task"], r["stage"], r["round"], r["turn"], r["bytes"])
        for r in log if r["no_user"]}))
    # A turn asked more than once beyond the injected faults: the worker
    # retried (or was restarted on) a reply it could not take.
    again = []
    for k, rs in sorted(turns.items(), key=lambda kv: str(kv[0])):
        faults = sum(1 for r in rs if r["fault"])
        if len(rs) > 1 + faults:
            tags = rs[0]["tags"]
            again.append("task %s %s round %s turn %s asked %d times "
                         "(%d faults injected); the reply: %s" %
                         (k[0], k[1], k[2], k[3], len(rs), faults,
                          " ".join(tags)))
    fact("asked_again", again)
    out["faults"] = sum(1 for r in log if r["fault"])
    doomed = sorted({int(r["task"]) for r in log
                     if r["doom"] and r["task"] is not None})
    out["doomed"] = len(doomed)
    for name in ("requests", "faults", "doomed", "bad_key", "key_in_body",
                 "no_user", "asked_again"):
        print("%s %d" % (name, out[name]))
    print("doomed_tasks %s" % ",".join(map(str, doomed)))
    for name, items in notes.items():
        for i in items:
            print("# %s: %s" % (name, i))
    # What the model asked for, counted: the tags of the replies sent.
    tags = defaultdict(int)
    for r in log:
        if r["n"] == 1:
            for t in r["tags"]:
                tags[t] += 1
    print("# tags: " + ", ".join("%s %d" % kv for kv in sorted(tags.items())))
    return 0


def main():
    global MAX
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "--max":
        MAX = int(argv[1])
        argv = argv[2:]
    cmd, args = argv[0], argv[1:]
    return {"bytes": check_bytes, "json": check_json, "utf8": check_utf8,
            "events": events, "model": model}[cmd](args)


if __name__ == "__main__":
    sys.exit(main())
