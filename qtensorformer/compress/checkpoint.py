"""Saving and loading compressed models: safetensors weights plus a JSON manifest.

A folder holds ``model.safetensors`` (the whole state dict, shared tensors once) and
``compressed.json``: a format tag, the model class, the base model's config, one entry per
compressed module (layer type, shapes, ranks/modes, bias; a ``SharedBasisLinear`` also its
``group``: the names of every module holding the same basis, in order, listed alike by
each; a ``TreeSharedLinear`` (``ttns``) its path's ``ranks`` and ``nodes``: one key per node
from its root down, the same key in every layer below that node) and the weights' size and
SHA-256. A shared basis or tree node is written once; loading builds one parameter per group
or node key and hands it to every layer holding it.
Both files are written atomically, the manifest last. :func:`load_compressed` rebuilds the
layer types in a freshly built model of the uncompressed architecture, then loads the
weights; anything foreign, corrupt, truncated or mismatched raises
:class:`~qtensorformer.files.CheckpointError`.

Example:
    >>> import tempfile, torch
    >>> from torch import nn
    >>> from qtensorformer.compress import SVDConfig
    >>> from qtensorformer.nn.replace import replace_modules
    >>> def build():
    ...     return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    >>> model = build()
    >>> names = replace_modules(model, SVDConfig(ratio=0.5))
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_compressed(model, {"modules": names}, folder)
    >>> loaded = load_compressed(folder, build())
    >>> x = torch.randn(3, 8)
    >>> torch.equal(loaded(x), model(x))
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from ..files import CheckpointError, atomic_write
from ..nn.replace import replace_modules
from ..tensor import TTLinear
from ..tensor.lowrank import LowRankLinear, SharedBasisLinear
from ..tensor.tree import TreeSharedLinear
from .calibrate import is_compressible, linear_weight
from .summary import CompressionReport

__all__ = [
    "FORMAT",
    "MANIFEST",
    "WEIGHTS",
    "build_layer",
    "layer_spec",
    "load_compressed",
    "read_manifest",
    "save_compressed",
]

FORMAT = "qtensorformer.compressed"
VERSION = 1
MANIFEST = "compressed.json"
WEIGHTS = "model.safetensors"


# ---------------------------------------------------------------------------- layer specs
def layer_spec(
    module: nn.Module, group: list[str] | None = None, nodes: list[str] | None = None
) -> dict[str, Any]:
    """What it takes to rebuild a compressed layer (without its values); ``group``: the
    names of the modules sharing a SharedBasisLinear's basis; ``nodes``: the keys of a
    TreeSharedLinear's path nodes, root first (required for one)."""
    if isinstance(module, TreeSharedLinear):
        if nodes is None or len(nodes) != len(module.ranks):
            raise ValueError(
                f"a TreeSharedLinear needs one node key per path node ({len(module.ranks)}), "
                f"got {nodes!r}: save it with save_compressed"
            )
        return {
            "type": "TreeSharedLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "ranks": list(module.ranks),
            "nodes": list(nodes),
            "bias": module.bias is not None,
        }
    if isinstance(module, SharedBasisLinear):
        return {
            "type": "SharedBasisLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "rank": module.rank,
            "bias": module.bias is not None,
            "group": list(group or []),
        }
    if isinstance(module, LowRankLinear):
        return {
            "type": "LowRankLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "rank": module.rank,
            "bias": module.bias is not None,
        }
    if isinstance(module, TTLinear):
        return {
            "type": "TTLinear",
            "in_features": module.in_features,
            "out_features": module.out_features,
            "in_modes": list(module.in_modes),
            "out_modes": list(module.out_modes),
            "ranks": list(module.max_ranks),
            "bias": module.bias is not None,
        }
    raise TypeError(
        f"{type(module).__name__} is not a compressed layer (LowRankLinear, SharedBasisLinear, "
        "TreeSharedLinear, TTLinear)"
    )


def build_layer(
    name: str,
    spec: dict[str, Any],
    like: nn.Module,
    basis: nn.Parameter | None = None,
    chain: list[nn.Parameter] | None = None,
) -> nn.Module:
    """An empty layer of ``spec`` with the dtype/device of the module it replaces; a
    SharedBasisLinear takes its group's ``basis`` (rank × in_features), a TreeSharedLinear
    its path's node parameters ``chain`` (root first)."""
    w = linear_weight(like)
    if tuple(w.shape) != (spec["out_features"], spec["in_features"]):
        raise CheckpointError(
            f"{name}: the manifest has a {spec['out_features']}×{spec['in_features']} layer but "
            f"the base model's is {tuple(w.shape)}: wrong base model?"
        )
    kw = {"bias": bool(spec["bias"]), "device": w.device, "dtype": w.dtype}
    if spec["type"] == "SharedBasisLinear":
        if basis is None:
            raise ValueError(f"{name} is a SharedBasisLinear: give its group's basis")
        return SharedBasisLinear(basis, spec["out_features"], bias=kw["bias"])
    if spec["type"] == "TreeSharedLinear":
        if chain is None:
            raise ValueError(f"{name} is a TreeSharedLinear: give its path's node parameters")
        return TreeSharedLinear(chain, spec["out_features"], bias=kw["bias"])
    if spec["type"] == "LowRankLinear":
        return LowRankLinear(spec["in_features"], spec["out_features"], int(spec["rank"]), **kw)
    return TTLinear(
        spec["in_features"],
        spec["out_features"],
        [int(r) for r in spec["ranks"]],
        in_modes=tuple(spec["in_modes"]),
        out_modes=tuple(spec["out_modes"]),
        **kw,
    )


_SPEC_KEYS = {
    "LowRankLinear": {"in_features", "out_features", "rank", "bias"},
    "SharedBasisLinear": {"in_features", "out_features", "rank", "bias", "group"},
    "TreeSharedLinear": {"in_features", "out_features", "ranks", "nodes", "bias"},
    "TTLinear": {"in_features", "out_features", "in_modes", "out_modes", "ranks", "bias"},
}


def _check_spec(name: str, spec: Any) -> None:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in _SPEC_KEYS or not _SPEC_KEYS[kind] <= set(spec):
        raise CheckpointError(f"the manifest's entry for {name} is malformed: {spec!r}")


def _check_group(name: str, specs: dict[str, Any]) -> None:
    """A SharedBasisLinear entry's group: a list of distinct names, itself among them, each a
    SharedBasisLinear entry of the same in_features and rank listing the same group."""
    spec = specs[name]
    group = spec["group"]
    if (
        not isinstance(group, list)
        or not all(isinstance(member, str) for member in group)
        or len(set(group)) != len(group)
        or name not in group
    ):
        raise CheckpointError(
            f"the manifest's group of {name} is broken: {group!r} must list distinct module "
            "names, itself among them"
        )
    for member in group:
        other = specs.get(member)
        if not isinstance(other, dict) or other.get("type") != "SharedBasisLinear":
            raise CheckpointError(
                f"the manifest's group of {name} names {member!r}, which is not a "
                "SharedBasisLinear entry of the manifest"
            )
        if other.get("group") != group:
            raise CheckpointError(
                f"the manifest's group of {name} is broken: {member} lists the group "
                f"{other.get('group')!r}, not {group!r}"
            )
        if (other["in_features"], other["rank"]) != (spec["in_features"], spec["rank"]):
            raise CheckpointError(
                f"the manifest's group of {name} is broken: {member} has another basis shape "
                f"(rank {other['rank']} × {other['in_features']}, not {spec['rank']} × "
                f"{spec['in_features']})"
            )


def _check_trees(specs: dict[str, Any]) -> None:
    """Every TreeSharedLinear entry: equally long lists of distinct node keys and positive
    ranks, and each node key with one path above it and one shape wherever it is listed."""
    seen: dict[str, tuple[tuple, str]] = {}
    for name, spec in specs.items():
        if spec["type"] != "TreeSharedLinear":
            continue
        nodes, ranks = spec["nodes"], spec["ranks"]
        if (
            not isinstance(nodes, list)
            or not nodes
            or not all(isinstance(key, str) for key in nodes)
            or len(set(nodes)) != len(nodes)
            or not isinstance(ranks, list)
            or len(ranks) != len(nodes)
            or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks)
        ):
            raise CheckpointError(
                f"the manifest's tree path of {name} is broken: nodes {nodes!r} and ranks "
                f"{ranks!r} must be equally long lists of distinct node keys and positive ints"
            )
        for i, key in enumerate(nodes):
            here = (tuple(nodes[:i]), tuple(ranks[: i + 1]), spec["in_features"])
            first, owner = seen.setdefault(key, (here, name))
            if first != here:
                raise CheckpointError(
                    f"the manifest's tree path of {name} is broken: node {key!r} has another "
                    f"path or shape there than in {owner} (nodes above it {list(here[0])} vs "
                    f"{list(first[0])}, ranks {list(here[1])} vs {list(first[1])})"
                )


# ---------------------------------------------------------------------------- saving
def model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    """``model.config`` as a dict (``to_dict()`` or a dataclass), None without one."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    if callable(getattr(config, "to_dict", None)):
        return config.to_dict()
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _module_names(report_or_manifest: CompressionReport | dict[str, Any]) -> list[str]:
    if isinstance(report_or_manifest, CompressionReport):
        return list(report_or_manifest.modules)
    modules = report_or_manifest.get("modules") if isinstance(report_or_manifest, dict) else None
    if modules is None:
        raise TypeError("give a CompressionReport or a manifest dict with 'modules'")
    return list(modules)


def _basis_groups(model: nn.Module, names: list[str]) -> dict[str, list[str]]:
    """For each SharedBasisLinear of ``model``: the names of the modules holding its basis
    (every one of them must be among ``names``, the modules being saved)."""
    by_basis: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, SharedBasisLinear):
            by_basis.setdefault(id(module.basis), []).append(name)
    listed = set(names)
    for group in by_basis.values():
        if listed & set(group) and not set(group) <= listed:
            raise ValueError(
                f"{sorted(listed & set(group))} share their basis with "
                f"{sorted(set(group) - listed)}, which are not saved: save the whole group"
            )
    return {name: group for group in by_basis.values() for name in group}


def _tree_nodes(model: nn.Module, names: list[str]) -> dict[str, list[str]]:
    """For each TreeSharedLinear of ``model``: its path's node keys, a node keyed
    ``<first module holding it>.chain.<position>`` (every holder must be among ``names``)."""
    keys: dict[int, str] = {}
    holders: dict[int, set[str]] = {}
    paths: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, TreeSharedLinear):
            path = []
            for i, node in enumerate(module.chain):
                path.append(keys.setdefault(id(node), f"{name}.chain.{i}"))
                holders.setdefault(id(node), set()).add(name)
            paths[name] = path
    listed = set(names)
    for group in holders.values():
        if listed & group and not group <= listed:
            raise ValueError(
                f"{sorted(listed & group)} share tree nodes with {sorted(group - listed)}, "
                "which are not saved: save the whole tree"
            )
    return paths


def save_compressed(
    model: nn.Module,
    report_or_manifest: CompressionReport | dict[str, Any],
    directory: str | Path,
    base_config: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and the manifest of its compressed modules (those the report,
    or the manifest's ``modules``, names) to ``directory``; returns the manifest path.

    ``base_config``: the uncompressed model's config dict (default: ``model.config``'s).
    """
    directory = Path(directory)
    modules = dict(model.named_modules())
    missing = [n for n in _module_names(report_or_manifest) if n not in modules]
    if missing:
        raise ValueError(f"the model has no modules {missing}: was it compressed?")
    names = _module_names(report_or_manifest)
    groups = _basis_groups(model, names)
    paths = _tree_nodes(model, names)
    specs = {n: layer_spec(modules[n], groups.get(n), paths.get(n)) for n in names}
    weights = atomic_write(directory / WEIGHTS, lambda p: save_model(model, str(p)))
    report = report_or_manifest if isinstance(report_or_manifest, CompressionReport) else None
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "base_config": base_config if base_config is not None else model_config_dict(model),
        "modules": specs,
        "weights": {"file": WEIGHTS, "bytes": weights.stat().st_size, "sha256": _sha256(weights)},
        "report": report.to_dict() if report is not None else None,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(directory / MANIFEST, lambda p: p.write_text(text))


# ---------------------------------------------------------------------------- loading
def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The validated manifest of a compressed-model folder (CheckpointError if it is not one)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{directory} has no {MANIFEST}: not a compressed model written by save_compressed"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({err}); save the model again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} manifest (foreign file)")
    if not isinstance(manifest.get("version"), int) or manifest["version"] > VERSION:
        raise CheckpointError(
            f"{path} has format version {manifest.get('version')!r}; this library reads up to "
            f"{VERSION}: upgrade qtensorformer"
        )
    for key in ("modules", "weights"):
        if not isinstance(manifest.get(key), dict):
            raise CheckpointError(f"{path} lacks its {key!r} section: corrupt or truncated")
    for name, spec in manifest["modules"].items():
        _check_spec(name, spec)
    for name, spec in manifest["modules"].items():
        if spec["type"] == "SharedBasisLinear":
            _check_group(name, manifest["modules"])
    _check_trees(manifest["modules"])
    return manifest


def _check_weights(directory: Path, manifest: dict[str, Any]) -> Path:
    info = manifest["weights"]
    path = directory / str(info.get("file", WEIGHTS))
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the folder is incomplete")
    if path.stat().st_size != info.get("bytes") or _sha256(path) != info.get("sha256"):
        raise CheckpointError(
            f"{path} does not match its manifest (size or SHA-256): truncated or replaced"
        )
    return path


def _layer_builder(specs: dict[str, dict[str, Any]]):
    """``build(module, name)`` for replace_modules: the manifest's layers, the members of a
    group all given the one basis parameter built for its first member, the layers of a
    tree the one parameter built for each node key."""
    bases: dict[tuple[str, ...], nn.Parameter] = {}
    nodes: dict[str, nn.Parameter] = {}

    def tree_layer(module: nn.Module, name: str, spec: dict[str, Any]) -> nn.Module:
        w = linear_weight(module)
        cols = [int(spec["in_features"]), *map(int, spec["ranks"][:-1])]
        for key, rows, c in zip(spec["nodes"], spec["ranks"], cols, strict=True):
            if key not in nodes:
                nodes[key] = TreeSharedLinear.new_node(rows, c, device=w.device, dtype=w.dtype)
        return build_layer(name, spec, module, chain=[nodes[key] for key in spec["nodes"]])

    def build(module: nn.Module, name: str) -> nn.Module:
        spec = specs[name]
        if spec["type"] == "TreeSharedLinear":
            return tree_layer(module, name, spec)
        if spec["type"] != "SharedBasisLinear":
            return build_layer(name, spec, module)
        group = tuple(spec["group"])
        if group not in bases:
            w = linear_weight(module)
            bases[group] = SharedBasisLinear.new_basis(
                int(spec["in_features"]), int(spec["rank"]), device=w.device, dtype=w.dtype
            )
        return build_layer(name, spec, module, bases[group])

    return build


def load_compressed(directory: str | Path, base_model: nn.Module) -> nn.Module:
    """Turn ``base_model`` (built with the uncompressed architecture, e.g. from the
    manifest's ``base_config``) into the saved compressed model, in place, and return it."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    weights = _check_weights(directory, manifest)
    saved_class = manifest.get("model_class")
    if saved_class and saved_class != type(base_model).__name__:
        raise CheckpointError(
            f"the folder holds a compressed {saved_class}, but the base model is a "
            f"{type(base_model).__name__}"
        )
    specs = manifest["modules"]
    present = {n for n, m in base_model.named_modules() if n in specs and is_compressible(m)}
    if present != set(specs):
        raise CheckpointError(
            f"the base model lacks the linears {sorted(set(specs) - present)} of the manifest: "
            "wrong base model?"
        )
    replace_modules(base_model, _layer_builder(specs), lambda m, n: n in specs)
    try:
        load_model(base_model, str(weights), strict=True)
    except (RuntimeError, ValueError, OSError) as err:
        raise CheckpointError(f"cannot load {weights} into the model: {err}") from None
    return base_model
