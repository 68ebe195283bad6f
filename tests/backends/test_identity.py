"""One model identity for cache, manifest and report: the call cache keys on every option that
can change a model's output and on nothing that cannot.

The matrix runs through the real engine and cache: an output-changing option must make
fresh model calls (a replay would be another configuration's answers), a harmless one
must be answered entirely from the cache.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faithcheck.backends import load_backend
from faithcheck.backends.base import ModelIdentity, output_options
from faithcheck.backends.hf import HFConfig
from faithcheck.backends.organism import available_organisms
from faithcheck.engine.cache import CallCache
from faithcheck.engine.engine import Engine
from faithcheck.records import GenerationRequest
from faithcheck.tasks import get_task

ORGANISM = "organism:faithful"
OUTPUT_OPTIONS = [["dtype=bfloat16"], ["bos=off"], ["chat=off"], ["prefix_sharing=off"], ["trust_remote_code=true"],
                  ["bos=off", "dtype=bfloat16"]]
HARMLESS_OPTIONS = [["threads=1"], ["batch_size=3"], ["pack_tokens=64"], ["threads=1", "batch_size=2", "pack_tokens=32"]]

needs_organism = pytest.mark.skipif("faithful" not in available_organisms(), reason="organism not trained")


def baseline_requests(n: int = 4) -> list[GenerationRequest]:
    task = get_task("modular")
    return [GenerationRequest(task.prompt(i), "", 40, task.cot_stop) for i in task.load(n, 0).items]


def run(model: str, args: list[str], cache: CallCache) -> Engine:
    backend = load_backend(model, args)
    engine = Engine(backend, cache, progress=False)
    try:
        engine.run(baseline_requests())
    finally:
        backend.close()
    return engine


def test_identity_lists_only_changed_output_options():
    assert output_options(HFConfig()) == {}
    assert output_options(HFConfig(dtype="bfloat16", threads=2, batch_size=3, pack_tokens=64)) == {"dtype": "bfloat16"}
    plain = ModelIdentity("organism:x", "hf:/x:abc")
    assert plain.cache_key == "hf:/x:abc"  # default options key as before: existing caches stay valid
    changed = ModelIdentity("organism:x", "hf:/x:abc", (("bos", "off"),))
    assert changed.cache_key != plain.cache_key and changed.to_dict()["options"] == {"bos": "off"}


@needs_organism
def test_each_output_option_makes_fresh_model_calls(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    n = len(baseline_requests())
    first = run(ORGANISM, [], cache)
    assert (first.stats.model_calls, first.stats.cache_hits) == (n, 0)
    keys = {first.backend.identity.cache_key}
    for args in OUTPUT_OPTIONS:
        engine = run(ORGANISM, args, cache)
        assert (engine.stats.model_calls, engine.stats.cache_hits) == (n, 0), args
        keys.add(engine.backend.identity.cache_key)
        assert set(dict(engine.backend.identity.options)) == {a.split("=")[0] for a in args}
    assert len(keys) == len(OUTPUT_OPTIONS) + 1
    again = run(ORGANISM, ["bos=off", "dtype=bfloat16"], cache)  # the same options again: all from the cache
    assert (again.stats.model_calls, again.stats.cache_hits) == (0, n)
    cache.close()


@needs_organism
def test_each_harmless_option_is_served_from_the_cache(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    n = len(baseline_requests())
    first = run(ORGANISM, [], cache)
    assert first.stats.model_calls == n
    for args in HARMLESS_OPTIONS:
        engine = run(ORGANISM, args, cache)
        assert (engine.stats.model_calls, engine.stats.cache_hits) == (0, n), args
        assert engine.backend.identity == first.backend.identity
    cache.close()


# --- openai: the same model name at another URL ---------------------------------------------


class _Server(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible completions server serving model "m"; its answer names the port."""

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._send({"data": [{"id": "m"}]})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send({"choices": [{"text": f" served by {self.server.server_port}", "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 4}})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def two_servers():
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Server) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_port}/v1" for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_openai_model_name_at_another_url_is_another_model(tmp_path, two_servers):
    pytest.importorskip("httpx")
    cache = CallCache(tmp_path / "calls.sqlite")
    n = len(baseline_requests())
    a, b = (f"openai:m@{url}" for url in two_servers)
    first = run(a, [], cache)
    assert (first.stats.model_calls, first.stats.cache_hits) == (n, 0)
    other = run(b, [], cache)
    assert (other.stats.model_calls, other.stats.cache_hits) == (n, 0)
    assert run(a, ["endpoint=completions"], cache).stats.model_calls == n  # an output option
    for harmless in (["timeout=30"], ["max_retries=1", "concurrency=2"], ["backoff_base=0.1", "warn_after=0"]):
        again = run(a, harmless, cache)
        assert (again.stats.model_calls, again.stats.cache_hits) == (0, n), harmless
    cache.close()


@needs_organism
def test_manifest_and_report_show_the_identity_the_cache_keyed_on(tmp_path):
    from faithcheck.audit.pipeline import AuditConfig, run_audit

    config = AuditConfig(ORGANISM, n=3, probes=("no_cot",), model_args=("bos=off", "batch_size=2"),
                         out=tmp_path / "run", cache_path=tmp_path / "calls.sqlite", progress=False)
    run_audit(config)
    identity = json.loads((tmp_path / "run" / "manifest.json").read_text())["model_identity"]
    assert identity["name"] == ORGANISM and identity["options"] == {"bos": "off"}  # batch_size cannot change output
    cache = CallCache(tmp_path / "calls.sqlite")
    assert cache.count(f"{identity['fingerprint']}|{json.dumps({'bos': 'off'}, separators=(',', ':'))}") > 0
    assert cache.count(identity["fingerprint"]) == 0  # nothing stored under the default configuration's key
    cache.close()
    assert "bos=off" in (tmp_path / "run" / "report.html").read_text()
