"""`organism:NAME` — a bundled model organism (tiny GPT-2 trained with known CoT behaviour).

Organisms are ordinary transformers checkpoints under `data/organisms/NAME`, so they run
through the hf backend and take the same `--model-arg` options.
"""

from __future__ import annotations

from pathlib import Path

from faithcheck.backends import backends
from faithcheck.backends.base import Backend
from faithcheck.errors import BadInput
from faithcheck.paths import data_dir


def organisms_dir() -> Path:
    return data_dir() / "organisms"


def available_organisms() -> list[str]:
    """Names of the organisms whose weights are present (a directory with a config.json)."""
    root = organisms_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


@backends.register("organism", "a bundled model organism: organism:NAME (see `faithcheck list`)")
def organism_backend(target: str, model_args: list[str]) -> Backend:
    from faithcheck.backends.base import parse_model_args
    from faithcheck.backends.hf import HFBackend, HFConfig

    names = available_organisms()
    if target not in names:
        known = ", ".join(names) if names else f"none (no trained organisms under {organisms_dir()})"
        raise BadInput(f"model 'organism:{target}': unknown organism; available: {known}")
    config = parse_model_args(HFConfig, model_args)
    return HFBackend(str(organisms_dir() / target), config, name=f"organism:{target}")
