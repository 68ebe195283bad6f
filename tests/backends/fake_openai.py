"""A deterministic OpenAI-compatible server on loopback, for the fault and kill tests that must
run in the default suite without llama.cpp.

It answers /v1/models, /v1/completions and /v1/chat/completions. The text is a function of
the request alone: after an answer word it writes a number, otherwise a short chain of
thought ending in "answer N" (the modular task's format). It logs every request it
receives and every response it has finished writing, with the request's key (a hash of its
body), so a test can tell which calls were answered before a kill and which were asked for
again. It can be slowed (`delay` seconds per request) to leave time for a kill, and can call
`on_request(path, key)` as each request arrives (to look at the client's cache then).

It can also pass for other servers: llama.cpp's C++ server (`props`: what GET /props answers,
`owned_by` in /v1/models), vLLM (`continue_final_message`: a prefilled chat turn is left open,
so its prompt is shorter), a server without /completions (`completions=False`), and a hosted
API that answers 400 to a body field it does not know (`strict`). It keeps every POST body
(`bodies`) and the most requests it had in flight at once (`max_in_flight`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def body_key(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return hashlib.sha256(body).hexdigest()[:16]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def reply_text(text: str) -> str:
    n = int(hashlib.sha256(text.encode()).hexdigest()[:6], 16) % 23
    return f" {n}" if text.rstrip().endswith("answer") else f" add them up . answer {n}"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a killed client is expected
            super().handle_error(request, client_address)


# What OpenAI's API takes in a completions or chat body (a hosted API refuses anything else).
OPENAI_FIELDS = {"model", "prompt", "messages", "max_tokens", "temperature", "seed", "stop", "logprobs",
                 "top_logprobs", "echo", "n", "top_p", "suffix", "user"}


class FakeOpenAI:
    def __init__(self, model: str = "fake-model", delay: float = 0.0, on_request: Callable | None = None,
                 props: dict | None = None, owned_by: str | None = None, continue_final_message: bool = False,
                 completions: bool = True, strict: bool = False):
        self.model, self.delay, self.on_request = model, delay, on_request
        self.props, self.owned_by, self.completions, self.strict = props, owned_by, completions, strict
        self.continue_final_message = continue_final_message
        self.received: list[tuple[float, str, str]] = []  # (time, path, key)
        self.answered: list[tuple[float, str, str]] = []  # (time the response was written, path, key)
        self.bodies: list[tuple[str, dict]] = []  # (path, body) of every POST, in arrival order
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def __enter__(self) -> FakeOpenAI:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    entry = {"id": server.model, "object": "model"}
                    entry.update({"owned_by": server.owned_by} if server.owned_by else {})
                    self._send(200, {"object": "list", "data": [entry]})
                elif self.path == "/props" and server.props is not None:
                    self._send(200, server.props)
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                key = body_key(body)
                data = json.loads(body)
                with server._lock:
                    server.received.append((time.monotonic(), self.path, key))
                    server.bodies.append((self.path, data))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(key, data)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, key: str, data: dict) -> None:
                if server.on_request is not None:
                    server.on_request(self.path, key)
                if server.delay:
                    time.sleep(server.delay)
                unknown = sorted(set(data) - OPENAI_FIELDS)
                if server.strict and unknown:
                    self._send(400, {"error": {"message": f"Unrecognized request argument supplied: {unknown[0]}"}})
                    return
                prompt_tokens = len(json.dumps(data)) // 4
                if self.path.endswith("/chat/completions"):
                    text = "".join(m["content"] for m in data["messages"])
                    out = {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply_text(text)},
                                        "finish_reason": "stop"}]}
                    if server.continue_final_message:  # as vLLM renders it: an open turn is shorter than a closed one
                        prompt_tokens = len(text) // 4 + 8 * len(data["messages"])
                        prompt_tokens -= 5 if data.get("continue_final_message") else 0
                elif self.path.endswith("/completions") and server.completions:
                    out = {"choices": [{"index": 0, "text": reply_text(data["prompt"]), "finish_reason": "stop"}]}
                else:
                    self._send(404, {"error": "not found"})
                    return
                out.update(object="text_completion", model=server.model,
                           usage={"prompt_tokens": prompt_tokens, "completion_tokens": 4})
                try:
                    self._send(200, out)
                except (BrokenPipeError, ConnectionResetError):  # the client is gone: not answered
                    return
                with server._lock:
                    server.answered.append((time.monotonic(), self.path, key))

            def _send(self, status: int, payload: dict) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                self.wfile.flush()

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
