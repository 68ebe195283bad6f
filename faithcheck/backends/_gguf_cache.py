"""De-quantised GGUF weights for the hf backend, computed once per file.

transformers de-quantises a GGUF to float32 in Python on every load (221-784 s for
Qwen2.5-0.5B on a loaded 2-core machine). The result is saved once as safetensors, with the
tokenizer and configs, under the cache directory keyed by the GGUF's SHA-256; later loads read
those files. The model's fingerprint stays the GGUF's, so cached calls carry over.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any


def dequantized_dir(gguf_sha256: str) -> Path:
    """Where the de-quantised copy of the GGUF with this hash lives ($FAITHCHECK_CACHE_DIR or ~/.cache/faithcheck)."""
    root = Path(os.environ.get("FAITHCHECK_CACHE_DIR") or Path.home() / ".cache" / "faithcheck")
    return root / "dequantized" / gguf_sha256[:24]


def ready(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any(directory.glob("*.safetensors"))


def save(model: Any, tokenizer: Any, directory: Path) -> bool:
    """Write the loaded model and tokenizer beside their final place and rename them in, so a
    parallel or killed run never leaves half a copy. False (and nothing kept) on any failure:
    the cache only saves time, a run never fails for it."""
    tmp = directory.with_name(f"{directory.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        # transformers refuses save_pretrained on a GGUF-loaded model (it carries a quantisation
        # config); its weights are plain float tensors by now, so they are written directly
        from safetensors.torch import save_model

        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(tmp)
        if not directory.exists():
            os.replace(tmp, directory)
        return ready(directory)
    except (OSError, RuntimeError, ValueError, TypeError, AttributeError):
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
