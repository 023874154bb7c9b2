#!/usr/bin/python3
"""Scripted model server for the agent-CLI tests: Anthropic Messages API and OpenAI Responses API,
both streaming (SSE), on 127.0.0.1 only.  Python 3 standard library only; never connects anywhere.

    model_server.py [--port N] [--log FILE]     (port 0 = pick one; the port is stdout's first line)

The reply is a pure function of the request, so retries and resumed sessions behave the same.
It reads the last real user text P and counts the tool results N that follow it:

    create NAME   N=0: the CLI's write tool writes NAME ("hello from model_server\\n");
                  N=1: its shell tool runs `ls`;  N>=2: final text "Done: created NAME."
    runsleep      N=0: shell tool runs `sleep 300` (for interrupt tests);  then final text
    ask           final text that is a question
    failNNN       HTTP NNN (400..599): fail500 is retried by the CLIs, fail400 is not
    anything else final text "mock reply to: P"

The write/shell tools are chosen among those the request offers: Claude Code Write/Bash, OpenCode
write/bash, Codex apply_patch (custom) + exec_command/shell_command/shell.  A request offering
none of them (title generation) gets text.  Each request is logged as one JSON line to --log.
"""
import argparse
import hashlib
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def h40(text):
    """A stable 40-bit hash (Python's hash() changes with every process)."""
    return int(hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:10], 16)


LOG_LOCK = threading.Lock()
LOG_FILE = None
CONTENT = "hello from model_server\n"


def log_request(method, path, headers, body):
    if LOG_FILE is None:
        return
    rec = {"time": time.time(), "method": method, "path": path, "headers": dict(headers)}
    try:
        rec["body"] = json.loads(body) if body else None
    except ValueError:
        rec["body_raw"] = body.decode("utf-8", "replace")
    with LOG_LOCK:
        with open(LOG_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)


def clean(text):
    return REMINDER.sub("", text).strip()


def plan(prompt, n_results, cwd):
    """What to do next: ("write", name) | ("shell", cmd) | ("text", s) | ("fail", code)."""
    m = re.search(r"\bcreate\s+([A-Za-z0-9._-]+)", prompt)
    if m:
        name = m.group(1)
        if n_results == 0:
            return ("write", name)
        if n_results == 1:
            return ("shell", "ls")
        return ("text", "Done: created %s." % name)
    if re.search(r"\brunsleep\b", prompt):
        if n_results == 0:
            return ("shell", "sleep 300")
        return ("text", "Done sleeping.")
    m = re.search(r"\bfail([45]\d\d)\b", prompt)
    if m:
        return ("fail", int(m.group(1)))
    if re.search(r"\bask\b", prompt):
        return ("text", "Which file should I create?")
    return ("text", "mock reply to: %s" % prompt)


# ---- Anthropic Messages ------------------------------------------------------------------------

def anthropic_state(body):
    """(prompt, tool results after it, cwd) of a Messages request."""
    msgs = body.get("messages") or []
    prompt, idx = "", -1
    for i, m in enumerate(msgs):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            if clean(c):
                prompt, idx = clean(c), i
            continue
        if not isinstance(c, list) or any(isinstance(b, dict) and b.get("type") == "tool_result" for b in c):
            continue
        texts = [clean(b.get("text", "")) for b in c if isinstance(b, dict) and b.get("type") == "text"]
        texts = [t for t in texts if t]
        if texts:
            prompt, idx = texts[-1], i
    n = 0
    for m in msgs[idx + 1:]:
        c = m.get("content")
        if m.get("role") == "user" and isinstance(c, list):
            n += sum(1 for b in c if isinstance(b, dict) and b.get("type") == "tool_result")
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    cwd = None
    m = re.search(r"(?:Primary working directory|Working directory):\s*(\S+)", str(system or ""))
    if m:
        cwd = m.group(1)
    return prompt, n, cwd


def anthropic_blocks(body):
    prompt, n, cwd = anthropic_state(body)
    tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
    act = plan(prompt, n, cwd)
    tid = "toolu_%02d%s" % (n, format(h40(prompt), "010x"))
    if act[0] == "write":
        name = act[1]
        if "Write" in tools:
            path = (cwd.rstrip("/") + "/" + name) if cwd else "/workspace/" + name
            return [{"type": "tool_use", "id": tid, "name": "Write",
                     "input": {"file_path": path, "content": CONTENT}}], "tool_use", act
        if "write" in tools:
            path = (cwd.rstrip("/") + "/" + name) if cwd else name
            return [{"type": "tool_use", "id": tid, "name": "write",
                     "input": {"filePath": path, "content": CONTENT}}], "tool_use", act
    if act[0] == "shell":
        for tn in ("Bash", "bash"):
            if tn in tools:
                return [{"type": "tool_use", "id": tid, "name": tn,
                         "input": {"command": act[1], "description": "run " + act[1].split()[0]}}], "tool_use", act
    if act[0] in ("write", "shell"):
        act = ("text", "mock reply to: %s" % prompt)
    if act[0] == "fail":
        return None, None, act
    return [{"type": "text", "text": act[1]}], "end_turn", act


def sse(wfile, event, data):
    if event:
        wfile.write(("event: %s\n" % event).encode())
    wfile.write(("data: %s\n\n" % json.dumps(data)).encode())
    wfile.flush()


def anthropic_stream(h, body, blocks, stop):
    model = body.get("model", "mock")
    mid = "msg_%016x" % h40(json.dumps(body.get("messages"), sort_keys=True))
    h.start_sse()
    w = h.wfile
    sse(w, "message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 100, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0}}})
    sse(w, "ping", {"type": "ping"})
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            sse(w, "content_block_start", {"type": "content_block_start", "index": i,
                                           "content_block": {"type": "text", "text": ""}})
            words = re.findall(r"\S+\s*", b["text"]) or [b["text"]]
            for piece in words:
                sse(w, "content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "text_delta", "text": piece}})
        else:
            sse(w, "content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
            js = json.dumps(b["input"])
            for k in range(0, len(js), 16):
                sse(w, "content_block_delta", {"type": "content_block_delta", "index": i,
                                               "delta": {"type": "input_json_delta", "partial_json": js[k:k + 16]}})
        sse(w, "content_block_stop", {"type": "content_block_stop", "index": i})
    sse(w, "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                             "usage": {"output_tokens": 20}})
    sse(w, "message_stop", {"type": "message_stop"})
    h.close_connection = True


def anthropic_messages(h, body):
    blocks, stop, act = anthropic_blocks(body)
    if blocks is None:
        return h.send_json(act[1], {"type": "error", "error": {
            "type": "api_error" if act[1] >= 500 else "invalid_request_error", "message": "mock error %d" % act[1]}})
    if body.get("stream"):
        return anthropic_stream(h, body, blocks, stop)
    h.send_json(200, {"id": "msg_mock", "type": "message", "role": "assistant", "model": body.get("model", "mock"),
                      "content": blocks, "stop_reason": stop, "stop_sequence": None,
                      "usage": {"input_tokens": 100, "output_tokens": 20}})


# ---- OpenAI Responses --------------------------------------------------------------------------

def item_text(item):
    c = item.get("content")
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


def responses_state(body):
    inp = body.get("input")
    if isinstance(inp, str):
        return inp.strip(), 0
    items = inp if isinstance(inp, list) else []
    prompt, idx = "", -1
    for i, it in enumerate(items):
        if not isinstance(it, dict) or it.get("role") != "user":
            continue
        t = item_text(it).strip()
        if t and not t.startswith("<") and not t.startswith("# AGENTS.md"):
            prompt, idx = t, i
    n = sum(1 for it in items[idx + 1:] if isinstance(it, dict) and str(it.get("type", "")).endswith("_call_output"))
    return prompt, n


def tool_names(body):
    names = set()
    for t in body.get("tools") or []:
        if isinstance(t, dict):
            names.add(t.get("name") or (t.get("function") or {}).get("name"))
    return names


def responses_items(body):
    prompt, n = responses_state(body)
    tools = tool_names(body)
    act = plan(prompt, n, None)
    cid = "call_%02d%010x" % (n, h40(prompt))
    if act[0] == "write" and "apply_patch" in tools:
        patch = "*** Begin Patch\n*** Add File: %s\n+%s*** End Patch\n" % (act[1], CONTENT)
        return [{"type": "custom_tool_call", "id": "ctc_" + cid, "call_id": cid, "name": "apply_patch",
                 "input": patch, "status": "completed"}], act
    if act[0] == "shell":
        if "exec_command" in tools:
            args = {"cmd": act[1], "yield_time_ms": 30000}
            name = "exec_command"
        elif "shell_command" in tools:
            args, name = {"command": act[1]}, "shell_command"
        elif "shell" in tools:
            args, name = {"command": ["bash", "-lc", act[1]]}, "shell"
        else:
            name = None
        if name:
            return [{"type": "function_call", "id": "fc_" + cid, "call_id": cid, "name": name,
                     "arguments": json.dumps(args), "status": "completed"}], act
    if act[0] in ("write", "shell"):
        act = ("text", "mock reply to: %s" % prompt)
    if act[0] == "fail":
        return None, act
    return [{"type": "message", "id": "msg_" + cid, "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": act[1], "annotations": []}]}], act


def responses(h, body):
    items, act = responses_items(body)
    if items is None:
        return h.send_json(act[1], {"error": {
            "type": "server_error" if act[1] >= 500 else "invalid_request_error", "message": "mock error %d" % act[1]}})
    rid = "resp_%016x" % h40(json.dumps(body.get("input"), sort_keys=True))
    usage = {"input_tokens": 300, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 60,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 360}
    base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": body.get("model", "mock")}
    if not body.get("stream"):
        return h.send_json(200, dict(base, status="completed", output=items, usage=usage))
    h.start_sse()
    w = h.wfile
    seq = [0]

    def ev(kind, **kw):
        seq[0] += 1
        sse(w, kind, dict({"type": kind, "sequence_number": seq[0]}, **kw))

    ev("response.created", response=dict(base, status="in_progress", output=[]))
    ev("response.in_progress", response=dict(base, status="in_progress", output=[]))
    for oi, it in enumerate(items):
        if it["type"] == "message":
            text = it["content"][0]["text"]
            ev("response.output_item.added", output_index=oi, item=dict(it, status="in_progress", content=[]))
            ev("response.content_part.added", item_id=it["id"], output_index=oi, content_index=0,
               part={"type": "output_text", "text": "", "annotations": []})
            for piece in re.findall(r"\S+\s*", text) or [text]:
                ev("response.output_text.delta", item_id=it["id"], output_index=oi, content_index=0, delta=piece)
            ev("response.output_text.done", item_id=it["id"], output_index=oi, content_index=0, text=text)
            ev("response.content_part.done", item_id=it["id"], output_index=oi, content_index=0,
               part=it["content"][0])
        elif it["type"] == "function_call":
            ev("response.output_item.added", output_index=oi, item=dict(it, status="in_progress", arguments=""))
            ev("response.function_call_arguments.delta", item_id=it["id"], output_index=oi, delta=it["arguments"])
            ev("response.function_call_arguments.done", item_id=it["id"], output_index=oi, arguments=it["arguments"])
        else:
            ev("response.output_item.added", output_index=oi, item=dict(it, status="in_progress", input=""))
            ev("response.custom_tool_call_input.delta", item_id=it["id"], output_index=oi, delta=it["input"])
            ev("response.custom_tool_call_input.done", item_id=it["id"], output_index=oi, input=it["input"])
        ev("response.output_item.done", output_index=oi, item=it)
    ev("response.completed", response=dict(base, status="completed", output=items, usage=usage))
    h.close_connection = True


# ---- HTTP --------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model_server/1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def start_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > 64 << 20:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def do_HEAD(self):
        log_request("HEAD", self.path, self.headers, b"")
        self.send_json(200, {})

    def do_GET(self):
        log_request("GET", self.path, self.headers, b"")
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/models"):
            return self.send_json(200, {"object": "list", "data": [
                {"id": "mock-model", "object": "model", "type": "model", "display_name": "Mock"}]})
        if path == "":
            return self.send_json(200, {"ok": True})
        self.send_json(404, {"error": {"type": "not_found", "message": "no such path: " + self.path}})

    def do_POST(self):
        try:
            raw = self.read_body()
        except ValueError:
            return self.send_json(413, {"error": {"message": "too large"}})
        log_request("POST", self.path, self.headers, raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self.send_json(400, {"error": {"type": "invalid_request_error", "message": "bad json"}})
        if not isinstance(body, dict):
            return self.send_json(400, {"error": {"type": "invalid_request_error", "message": "not an object"}})
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/messages/count_tokens"):
            return self.send_json(200, {"input_tokens": 100})
        if path.endswith("/messages"):
            return anthropic_messages(self, body)
        if path.endswith("/responses"):
            return responses(self, body)
        self.send_json(404, {"error": {"type": "not_found", "message": "no such path: " + self.path}})


def main():
    global LOG_FILE
    ap = argparse.ArgumentParser(description="scripted model server (loopback only)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default=None)
    a = ap.parse_args()
    LOG_FILE = a.log
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
