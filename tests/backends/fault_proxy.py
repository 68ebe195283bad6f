"""A loopback HTTP proxy that injects faults in front of an OpenAI-compatible server.

Stdlib asyncio for the listening side (one request per connection, `Connection: close`),
httpx for forwarding, so the faults are exactly the bytes we write: a 429 with
Retry-After, a 500, a 503, a stall past the client's timeout, a body cut short, a malformed or
incomplete JSON body, a body with an empty `choices` list, a reset connection, a 400 that
echoes the Authorization header (after `echo_pad` characters, to put the key across a cut).
POSTs take faults from `schedule` in arrival order ("ok" once it runs out); a POST whose
body contains `poison` is always answered with a malformed body. GETs are forwarded.
Only 127.0.0.1 is used; the proxy never logs header values.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Iterable

FAULTS = ("ok", "429", "500", "503", "timeout", "truncated", "malformed", "missing_field", "empty_choices", "reset",
          "echo_auth")
_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


class FaultProxy:
    def __init__(self, upstream: str, schedule: Iterable[str] = (), poison: str | None = None,
                 retry_after: float = 1.0, stall: float = 60.0, echo_pad: int = 0):
        self.upstream = upstream.rstrip("/")
        self.schedule = list(schedule)
        unknown = set(self.schedule) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        self.poison = poison.encode() if poison else None
        self.retry_after, self.stall, self.echo_pad = retry_after, stall, echo_pad
        self.log: list[tuple[float, str, str]] = []  # (time, path, fault) per request received
        self.received: list[tuple[float, str, str]] = []  # (time, path, body key) per POST received
        self.answered: list[tuple[float, str, str]] = []  # (time, path, body key) per POST answered with 200
        self.auth_headers_seen = 0
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def faults(self) -> list[str]:
        return [f for _, _, f in self.log]

    def __enter__(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _serve(self) -> None:
        import httpx

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(300.0))
        self._server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            try:
                writer.close()
            except (ConnectionError, RuntimeError):
                pass

    def _next_fault(self, method: str, body: bytes) -> str:
        if method != "POST":
            return "ok"
        if self.poison and self.poison in body:
            return "malformed"
        return self.schedule.pop(0) if self.schedule else "ok"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, path, _ = head[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if ":" in h)}
        size = int(headers.get("content-length") or 0)
        body = await reader.readexactly(size) if size else b""
        if "authorization" in headers:
            self.auth_headers_seen += 1
        fault = self._next_fault(method, body)
        self.log.append((time.monotonic(), path, fault))
        key = hashlib.sha256(body).hexdigest()[:16]
        if method == "POST":
            self.received.append((time.monotonic(), path, key))
        if fault == "ok":
            resp = await self._client.request(method, self.upstream + path, content=body,
                                              headers={"content-type": headers.get("content-type", "application/json")})
            await _write(writer, resp.status_code, resp.content)
            if method == "POST" and resp.status_code == 200:
                self.answered.append((time.monotonic(), path, key))
        elif fault == "429":
            await _write(writer, 429, b'{"error": "rate limited (injected)"}', {"Retry-After": f"{self.retry_after:g}"})
        elif fault == "500":
            await _write(writer, 500, b'{"error": "internal error (injected)"}')
        elif fault == "503":
            await _write(writer, 503, b'{"error": "overloaded (injected)"}')
        elif fault == "empty_choices":
            await _write(writer, 200, b'{"id": "cmpl-1", "object": "text_completion", "choices": []}')
        elif fault == "timeout":
            await asyncio.sleep(self.stall)
        elif fault == "truncated":
            await _write(writer, 200, b'{"id": "cmpl-1", "choices": [{"te', content_length=400)
        elif fault == "malformed":
            await _write(writer, 200, b'{"choices": [{"text": "never closed"')
        elif fault == "missing_field":
            await _write(writer, 200, b'{"id": "cmpl-1", "object": "text_completion"}')
        elif fault == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif fault == "echo_auth":
            echoed = headers.get("authorization", "")
            pad = "x" * self.echo_pad
            await _write(writer, 400, f'{{"error": "{pad}bad request; you sent {echoed}"}}'.encode())


async def _write(writer: asyncio.StreamWriter, status: int, body: bytes, extra: dict[str, str] | None = None,
                 content_length: int | None = None) -> None:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/json",
             f"Content-Length: {len(body) if content_length is None else content_length}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
