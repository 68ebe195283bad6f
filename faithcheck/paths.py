"""Where bundled data lives: `data/` in a checkout, `faithcheck/_data` in an installed wheel."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    checkout = REPO_ROOT / "data"
    if (checkout / "modular").is_dir():
        return checkout
    return Path(__file__).resolve().parent / "_data"  # the wheel maps data/ to faithcheck/_data


def shared_datasets() -> Path:
    """The project's shared datasets (`../shared/datasets` beside a checkout)."""
    return REPO_ROOT.parent / "shared" / "datasets"
