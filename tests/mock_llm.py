#!/usr/bin/env python3
"""A mock LLM server for the integration tests: the OpenAI chat completions
API (/v1/chat/completions and /chat/completions) and the Anthropic Messages
API (/v1/messages), streamed or not, replaying a script of turns, with
faults injected per turn.  Python standard library only.

    mock_llm.py --port-file F --script S --log L [--key KEY] [--bodies DIR]
                [--models list|404|401]

It listens on 127.0.0.1 on a free port and writes the port to F.  The
script (re-read on every request, so a test can rewrite it) is

    { "planning": [TURN, ...], "implementing": [...], "reviewing": [...] }
    TURN = { "text": "...", "tool_calls": [{"name": "...", "arguments":
             {...} or "raw text"}], "usage": {"in": N, "out": N},
             "delay": SECONDS,            (before a 200, every time; the
                                           request is logged before it)
             "fault": "429" | "500" | "529" | "garbage" | "stall" |
                      "cut_tool" | "sse_error" | "401" | "400" |
                      "insufficient_quota",
             "retry_after": SECONDS,      (429: the Retry-After header)
             "retry_after_date": SECONDS, (429: Retry-After as an HTTP
                                           date that many seconds ahead)
             "stall": SECONDS,            (stall: silence after the headers)
             "times": N,                  (the fault hits N requests; 1)
             "fault_model": NAME,         (the fault hits requests for
                                           that model only)
             "permanent": true }          (the fault hits every request)

The stage comes from the X-Orch-Stage header.  The turn asked for is the
number of assistant messages in the request's conversation: the n-th model
call of a stage run, whether or not the worker restarted in between, as in
the scripted provider.  With --key, a request without that key (Bearer or
x-api-key) gets a 401.

Every request appends one JSON line to the log: task, stage, turn, api,
path, the X-Orch-* headers, key_sent (the expected key was sent), n (the
how-many-th request for this task, stage and turn), fault (what was
injected, or null), status and t (the time it came).

With --bodies DIR, every request's parsed JSON body is also saved as
DIR/SEQ-TASK-STAGE-TURN.json (SEQ counts all requests from 1, 4 digits) and
the log line names it in "body", so a test can check what the model was told.

Stage rounds: the log line's "round" is 1 for the first opening of a stage
(the conversation up to and including its first user message) seen for a
task, 2 for the second different opening (a stage run again after a review,
a failed verification or a rejection starts with new feedback), and so on; a
restarted worker sends the same opening, so it stays in its round.  A script
key "STAGE#ROUND" (e.g. "implementing#2") overrides "STAGE" for that round,
as in the scripted provider.
"""

import argparse
import email.utils
import json
import os
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

LOCK = threading.Lock()
COUNTS = {}
OPENINGS = {}
SEQ = [0]
ARGS = None


def load_script():
    with open(ARGS.script) as f:
        return json.load(f)


def log_line(rec):
    with LOCK:
        with open(ARGS.log, "a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")


def chunks(s, n):
    return [s[i:i + n] for i in range(0, len(s), n)] or [""]


def turn_calls(turn, tnum):
    out = []
    for i, c in enumerate(turn.get("tool_calls", [])):
        a = c.get("arguments", {})
        out.append({
            "id": "call_%d_%d" % (tnum, i),
            "name": c.get("name", ""),
            "arguments": a if isinstance(a, str) else json.dumps(a),
        })
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    # Plumbing.

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.flush()

    def sse(self, data, event=None):
        s = ""
        if event:
            s += "event: %s\n" % event
        s += "data: %s\n\n" % (data if isinstance(data, str)
                                else json.dumps(data))
        self.wfile.write(s.encode())
        self.wfile.flush()

    def raw(self, s):
        self.wfile.write(s.encode())
        self.wfile.flush()

    # The request.

    def do_GET(self):
        # Only with --models: without it, GET stays unsupported (501), as
        # it always was.
        path = self.path.split("?")[0]
        if ARGS.models is None:
            self.send_error(501, "Unsupported method ('GET')")
            return
        log_line({"path": path, "method": "GET", "status": None,
                  "models": ARGS.models, "t": time.time()})
        if path not in ("/v1/models", "/models"):
            self.send_json(404, {"error": {"message": "no such path"}})
            return
        if ARGS.models == "404":
            self.send_json(404, {"error": {"message": "no such path"}})
            return
        auth = self.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else \
            self.headers.get("x-api-key")
        if ARGS.models == "401" or (ARGS.key and key != ARGS.key):
            self.send_json(401, {"error": {"message": "invalid key",
                                           "type": "authentication_error"}})
            return
        self.send_json(200, {"object": "list", "data": [
            {"id": "mock-model", "object": "model"}]})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        try:
            req = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            req = {}
        path = self.path.split("?")[0]
        if path in ("/v1/chat/completions", "/chat/completions"):
            api = "openai"
            key = self.headers.get("Authorization", "")
            key = key[7:] if key.startswith("Bearer ") else None
        elif path == "/v1/messages":
            api = "anthropic"
            key = self.headers.get("x-api-key")
        else:
            self.send_json(404, {"error": {"message": "no such path",
                                           "type": "not_found_error"}})
            return
        task = self.headers.get("X-Orch-Task-Id")
        stage = self.headers.get("X-Orch-Stage")
        tnum = sum(1 for m in req.get("messages", [])
                   if m.get("role") == "assistant")
        opening = []
        for m in req.get("messages", []):
            opening.append(m)
            if m.get("role") == "user":
                break
        opening = json.dumps(opening, sort_keys=True)
        with LOCK:
            k = (task, stage, tnum)
            COUNTS[k] = COUNTS.get(k, 0) + 1
            nreq = COUNTS[k]
            seen = OPENINGS.setdefault((task, stage), [])
            if opening not in seen:
                seen.append(opening)
            rnd = seen.index(opening) + 1
            SEQ[0] += 1
            seq = SEQ[0]
        body = None
        if ARGS.bodies:
            body = "%04d-%s-%s-%d.json" % (seq, task, stage, tnum)
            tmp = os.path.join(ARGS.bodies, "." + body + ".tmp")
            with open(tmp, "w") as f:
                json.dump(req, f, indent=1, sort_keys=True)
            os.rename(tmp, os.path.join(ARGS.bodies, body))
        rec = {
            "t": time.time(),
            "task": task, "stage": stage, "turn": tnum, "api": api,
            "path": path, "n": nreq, "fault": None, "status": 200,
            "headers": {h: v for h, v in self.headers.items()
                        if h.lower().startswith("x-orch-")},
            "key_sent": ARGS.key is not None and key == ARGS.key,
            "stream": bool(req.get("stream")),
            "anthropic_version": self.headers.get("anthropic-version"),
            "round": rnd, "body": body, "model": req.get("model"),
        }
        if ARGS.key is not None and key != ARGS.key:
            rec["status"] = 401
            log_line(rec)
            self.send_json(401, {"error": {
                "message": "Incorrect API key provided: %s" % key,
                "type": "invalid_request_error",
                "code": "invalid_api_key"}})
            return
        try:
            script = load_script()
        except (OSError, ValueError) as e:
            log_line(dict(rec, status=500, fault="bad script"))
            self.send_json(500, {"error": {"message": "mock script: %s" % e}})
            return
        turns = script.get("%s#%d" % (stage, rnd), script.get(stage, []))
        if tnum >= len(turns):
            log_line(dict(rec, status=400, fault="no turn"))
            self.send_json(400, {"error": {
                "message": "mock: no turn %d for stage %s" % (tnum, stage),
                "type": "invalid_request_error"}})
            return
        turn = turns[tnum]
        fault = turn.get("fault")
        if fault and not turn.get("permanent") and \
                nreq > int(turn.get("times", 1)):
            fault = None
        if fault and "fault_model" in turn and \
                req.get("model") != turn["fault_model"]:
            fault = None
        rec["fault"] = fault
        try:
            self.answer(api, req, turn, tnum, fault, rec)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def answer(self, api, req, turn, tnum, fault, rec):
        def status(code):
            rec["status"] = code
            log_line(rec)

        oa = api == "openai"
        if fault in ("429", "500", "529", "401", "400",
                     "insufficient_quota"):
            code = 429 if fault == "insufficient_quota" else int(fault)
            headers = {}
            if fault == "429" and "retry_after" in turn:
                headers["Retry-After"] = str(turn["retry_after"])
            if fault == "429" and "retry_after_date" in turn:
                headers["Retry-After"] = email.utils.formatdate(
                    time.time() + turn["retry_after_date"], usegmt=True)
            if fault == "insufficient_quota":
                if oa:
                    err = {"error": {
                        "message": "You exceeded your current quota, "
                                   "please check your plan and billing.",
                        "type": "insufficient_quota",
                        "code": "insufficient_quota"}}
                else:
                    code = 400
                    err = {"type": "error", "error": {
                        "type": "invalid_request_error",
                        "message": "Your credit balance is too low to "
                                   "access the Anthropic API."}}
            else:
                msg = {429: "Rate limit reached", 500: "internal error",
                       529: "Overloaded", 401: "invalid x-api-key",
                       400: "mock: the request was refused"}[code]
                err = {"type": "error", "error": {
                    "type": "mock_error", "message": msg}}
            status(code)
            self.send_json(code, err, headers)
            return
        status(200)
        if turn.get("delay"):
            time.sleep(float(turn["delay"]))
        if fault == "garbage":
            body = b"<html><body>502 Bad Gateway</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if fault == "stall":
            self.start_stream()
            time.sleep(float(turn.get("stall", 30)))
            return
        text = turn.get("text", "")
        calls = turn_calls(turn, tnum)
        usage = turn.get("usage", {"in": 10, "out": 5})
        if not req.get("stream"):
            self.send_json(200, self.whole(oa, text, calls, usage))
            return
        self.start_stream()
        if oa:
            self.openai_stream(text, calls, usage, fault)
        else:
            self.anthropic_stream(text, calls, usage, fault)

    def whole(self, oa, text, calls, usage):
        if oa:
            msg = {"role": "assistant", "content": text or None}
            if calls:
                msg["tool_calls"] = [{
                    "id": c["id"], "type": "function",
                    "function": {"name": c["name"],
                                 "arguments": c["arguments"]}}
                    for c in calls]
            return {"id": "chatcmpl-mock", "object": "chat.completion",
                    "choices": [{"index": 0, "message": msg,
                                 "finish_reason": "tool_calls" if calls
                                 else "stop"}],
                    "usage": {"prompt_tokens": usage["in"],
                              "completion_tokens": usage["out"]}}
        content = [{"type": "text", "text": text}] if text else []
        for c in calls:
            try:
                inp = json.loads(c["arguments"])
            except ValueError:
                inp = {}
            content.append({"type": "tool_use", "id": "toolu_" + c["id"],
                            "name": c["name"], "input": inp})
        return {"id": "msg_mock", "type": "message", "role": "assistant",
                "content": content,
                "stop_reason": "tool_use" if calls else "end_turn",
                "usage": {"input_tokens": usage["in"],
                          "output_tokens": usage["out"]}}

    def openai_stream(self, text, calls, usage, fault):
        def chunk(delta, finish=None):
            return {"id": "chatcmpl-mock",
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": delta,
                                 "finish_reason": finish}]}
        self.raw(": mock keep-alive\n\n")
        self.sse(chunk({"role": "assistant", "content": ""}))
        for piece in chunks(text, 7):
            self.sse(chunk({"content": piece}))
        if fault == "sse_error":
            self.sse({"error": {"message": "mock: overloaded mid-stream",
                                "type": "server_error"}}, event="error")
            return
        for i, c in enumerate(calls):
            self.sse(chunk({"tool_calls": [{
                "index": i, "id": c["id"], "type": "function",
                "function": {"name": c["name"], "arguments": ""}}]}))
            args = c["arguments"]
            for j, piece in enumerate(chunks(args, 5)):
                if fault == "cut_tool" and j * 5 >= len(args) // 2:
                    # Cut in the middle of the arguments, in the middle of
                    # an event.
                    self.raw('data: {"choices":[{"index":0,"delta":'
                             '{"tool_calls":[{"index":%d,"function":'
                             '{"argu' % i)
                    return
                self.sse(chunk({"tool_calls": [{
                    "index": i, "function": {"arguments": piece}}]}))
        self.sse(chunk({}, "tool_calls" if calls else "stop"))
        self.sse({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                  "choices": [],
                  "usage": {"prompt_tokens": usage["in"],
                            "completion_tokens": usage["out"],
                            "total_tokens": usage["in"] + usage["out"]}})
        self.raw("data: [DONE]\r\n\r\n")

    def anthropic_stream(self, text, calls, usage, fault):
        def ev(obj):
            self.sse(obj, event=obj["type"])
        ev({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant",
            "content": [], "model": "mock", "stop_reason": None,
            "usage": {"input_tokens": usage["in"], "output_tokens": 1}}})
        ev({"type": "ping"})
        idx = 0
        if text:
            ev({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}})
            for piece in chunks(text, 7):
                ev({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}})
            ev({"type": "content_block_stop", "index": 0})
            idx = 1
        if fault == "sse_error":
            ev({"type": "error", "error": {"type": "overloaded_error",
                                           "message": "Overloaded"}})
            return
        for c in calls:
            ev({"type": "content_block_start", "index": idx,
                "content_block": {"type": "tool_use",
                                  "id": "toolu_" + c["id"],
                                  "name": c["name"], "input": {}}})
            args = c["arguments"]
            for j, piece in enumerate(chunks(args, 5)):
                if fault == "cut_tool" and j * 5 >= len(args) // 2:
                    self.raw('event: content_block_delta\ndata: {"type":'
                             '"content_block_delta","index":%d,"delta":'
                             '{"type":"input_json_delta","partial_' % idx)
                    return
                ev({"type": "content_block_delta", "index": idx,
                    "delta": {"type": "input_json_delta",
                              "partial_json": piece}})
            ev({"type": "content_block_stop", "index": idx})
            idx += 1
        ev({"type": "message_delta",
            "delta": {"stop_reason": "tool_use" if calls else "end_turn",
                      "stop_sequence": None},
            "usage": {"output_tokens": usage["out"]}})
        self.raw("event: message_stop\r\ndata: {\"type\": "
                 "\"message_stop\"}\r\n\r\n")


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--key")
    p.add_argument("--models", choices=["list", "404", "401"],
                   help="answer GET /models (/v1/models): the list, 404 "
                   "(a server or proxy without it) or 401; without this "
                   "option GET is not supported (501)")
    p.add_argument("--bodies", help="save every request body in this "
                   "directory as SEQ-TASK-STAGE-TURN.json")
    ARGS = p.parse_args()
    if ARGS.bodies:
        os.makedirs(ARGS.bodies, exist_ok=True)
    srv = Server(("127.0.0.1", 0), Handler)
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, ARGS.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
