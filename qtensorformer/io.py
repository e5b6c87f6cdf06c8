"""The saved-model format: ``config.json`` + ``model.safetensors``, written atomically.

:meth:`QTensorFormer.save_pretrained` / :meth:`~QTensorFormer.from_pretrained` use these
helpers; this module sits below the model (it never imports it).

A directory is accepted only if its ``config.json`` says ``"format": "qtensorformer"`` and the
safetensors file carries the same format in its metadata; anything else (a Hugging Face
checkpoint, a truncated file, a state dict of another architecture) is refused with an error
that says what is wrong and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ._version import __version__
from .config import ModelConfig
from .files import WEIGHTS_FILE, CheckpointError, atomic_write

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_write",
    "load_state",
    "read_config",
    "save_model",
]

FORMAT = "qtensorformer"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = WEIGHTS_FILE


def _store_once(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``state`` with each tensor once (tied weights share one entry) and the aliases: dropped
    name → the kept name holding the same tensor."""
    kept: dict[tuple, str] = {}
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        if key in kept:
            aliases[name] = kept[key]
            continue
        kept[key] = name
        out[name] = t.detach().contiguous()
    return out, aliases


def save_model(model, directory: str | Path) -> Path:
    """Save ``model`` (anything with a ``config`` that has ``to_dict()`` and a ``state_dict``,
    i.e. a :class:`~qtensorformer.QTensorFormer`) to ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config": model.config.to_dict(),
    }
    state, aliases = _store_once(model.state_dict())
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    if aliases:
        metadata["aliases"] = json.dumps(aliases, sort_keys=True)
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p), metadata=metadata))
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / CONFIG_NAME, lambda p: p.write_text(text))
    return directory


def read_config(directory: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` of a saved model directory (validated)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no model directory at {directory}")
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{directory} has no {CONFIG_NAME}: not a model saved by QTensorFormer.save_pretrained"
        )
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is corrupt (not valid JSON: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        hint = ""
        if isinstance(meta, dict) and "model_type" in meta:
            hint = (
                f" It looks like a Hugging Face checkpoint (model_type={meta['model_type']!r}); "
                "load it with transformers, or compress it with `qtf compress`."
            )
        raise CheckpointError(f"{cfg_path} is not a qtensorformer config.{hint}")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path} has format_version {meta.get('format_version')}, newer than this "
            f"library ({__version__}) reads; upgrade qtensorformer"
        )
    try:
        return ModelConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path} holds an invalid model config: {e}") from e


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Tensors of a qtensorformer safetensors file (format checked)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CheckpointError(
                    f"{path} is a safetensors file but not a qtensorformer one "
                    f"(metadata format={meta.get('format')!r})"
                )
            state = {k: f.get_tensor(k) for k in f.keys()}
            aliases = json.loads(meta.get("aliases", "{}"))
    except SafetensorError as e:
        raise CheckpointError(f"{path} is corrupt or not a safetensors file ({e})") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has corrupt metadata (aliases: {e})") from e
    for name, kept in aliases.items():
        if kept not in state:
            raise CheckpointError(f"{path}: alias {name!r} names a missing tensor {kept!r}")
        state[name] = state[kept]
    return state
