"""TTNS: one matrix type of every block as one tree tensor network across the layers.

Index legend: L layers of the type, l a layer, n out_features, m in_features, v a node of
the tree and p its parent, k_v a node's rank, r_l the rows of F_l (min(n, m)).

The weights W_l (n × m) of one matrix type (e.g. every ``mlp.gate_proj``) with input Gram
matrices G_l share one whitening S, S Sᵀ = Σ_l G_l + λI (as Basis Sharing), and are fitted
in whitened coordinates Z_l = W_l S. The tree (:class:`TreeShape`) has the layers as leaves
in block order, adjacent layers paired first (a balanced binary tree by halving the index
range), simplified where a node is a square rotation of its parent or only spans its
children (see :class:`~qtensorformer.compress.config.TTNSConfig` for the rank rule). A root holds Q
(k × m) with orthonormal rows, every other node a transfer C_v (k_v × k_p) with orthonormal
rows, so layer l's basis U_l = C_(its node) ⋯ C_(child of the root) · Q (k_l × m) has
orthonormal rows, its coefficients are A_l = Z_l U_lᵀ (n × k_l) and Ŵ_l = A_l U_l S⁻¹. The
objective is the whitened error E = Σ_l ‖(W_l − Ŵ_l) S‖_F² = Σ_l ‖Z_l‖² − ‖Z_l U_lᵀ‖².

:func:`fit_ttns` starts top-down: a root takes the top right singular vectors of the stack
of the Z_l below it; a child v of p the top right singular vectors of the stack of
Z_l U_pᵀ below v (in p's coordinates). Then each sweep visits every node down the tree and
back up. With every other node fixed, node v's part of the objective is
f(C) = Σ_(l below v) ‖D_l C Y_lᵀ‖², Y_l = Z_l U_pᵀ (Z_l at a root) and D_l the transfers
between v and layer l's node (the identity when the layer sits at v):
- when every layer below v sits at v (D_l = I), the exact maximiser: the top-k_v
  eigenvectors of Σ_l Y_lᵀ Y_l;
- otherwise f is a convex quadratic in C, and ``inner`` generalised power iterations
  C ← polar(Σ_l D_lᵀ D_l C Y_lᵀ Y_l) (the maximiser of its linearisation over matrices
  with orthonormal rows) never decrease it: a monotone step, not the exact local optimum.
Either way the update is kept only if E, recomputed from the new captured energies
‖Z_l U_lᵀ‖² of the layers below v, does not increase, so ``objective_history`` (after the
start and after every node visit) never increases. A forest of roots alone (every layer at
a root: growth 1 or 2) is optimal at the start, and its sweeps are skipped.

:func:`fit_type` fits every growth of the config and, by default, refits each layer's
coefficients under the layer's own Gram matrix (:func:`layer_coefficients`: the shared
whitening above weighs layers by the scale of their inputs), keeping the growth of lowest
mean squared relative activation error over the layers. :func:`compress_tree` replaces the
modules of one type by :class:`~qtensorformer.tensor.tree.TreeSharedLinear` layers (the
root stores B = Q S⁻¹).
Everything runs in float64.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> Zs = [torch.randn(6, 12, dtype=torch.float64, generator=g) for _ in range(4)]
    >>> shape = tree_shape(4, 6, 12, [3] * 4, growth=1.5)
    >>> shape.parents, shape.ranks, shape.leaves
    ((None, 0, 1, 1, 0, 4, 4), (8, 5, 3, 3, 5, 3, 3), (2, 3, 5, 6))
    >>> shape.params(6, 12), 8 * 12 + 2 * 5 * 8 + 4 * 3 * 5 + 4 * 6 * 3
    (308, 308)
    >>> fit = fit_ttns(Zs, shape, sweeps=2)
    >>> h = fit.objective_history
    >>> all(b <= a for a, b in zip(h, h[1:])), h[-1] < h[0]
    (True, True)
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..nn.replace import register_handler, replace_modules
from ..tensor.tree import TreeSharedLinear
from .budget import param_budget
from .calibrate import InputStats, linear_weight
from .config import TTNSConfig
from .linalg import Whitening, activation_error, damped_gram, thin_svd, weight_error, whitening
from .methods import target_from_module
from .sharing import default_shared, matrix_type, shared_types
from .summary import ModuleReport

__all__ = [
    "TTNSFit",
    "TreeShape",
    "TypeFit",
    "balance_roots",
    "budget_shape",
    "compress_tree",
    "fit_ttns",
    "fit_type",
    "layer_coefficients",
    "tree_sets",
    "tree_shape",
    "ttns_types",
]

F64 = torch.float64


# ---------------------------------------------------------------------------- tree shapes
@dataclass(frozen=True)
class TreeShape:
    """A forest of nodes in topological order: ``parents[v]`` (None for a root),
    ``ranks[v]``, and ``leaves[l]``: the node whose basis layer l uses."""

    parents: tuple[int | None, ...]
    ranks: tuple[int, ...]
    leaves: tuple[int, ...]

    def params(self, n: int, m: int) -> int:
        """Weight parameters: Σ_roots k·m + Σ_others k_v·k_p + Σ_l n·k_l."""
        nodes = sum(
            k * (m if p is None else self.ranks[p])
            for k, p in zip(self.ranks, self.parents, strict=True)
        )
        return nodes + n * sum(self.ranks[v] for v in self.leaves)

    def node_params(self, m: int) -> int:
        """The shared part of :meth:`params`: the nodes' parameters."""
        return self.params(0, m)

    def path(self, v: int) -> list[int]:
        """The nodes from a root down to ``v``."""
        out = [v]
        while self.parents[out[-1]] is not None:
            out.append(self.parents[out[-1]])
        return out[::-1]

    def below(self, v: int) -> list[int]:
        """The layers whose node is ``v`` or under it."""
        return [i for i, node in enumerate(self.leaves) if v in self.path(node)]


@dataclass
class _Node:
    rank: int
    layers: list[int] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)


def _grow(lo: int, hi: int, leaf: Sequence[int], growth: float, m: int) -> _Node:
    """The binary tree over layers lo … hi−1 (halving the range), ranks bottom-up."""
    if hi - lo == 1:
        return _Node(leaf[lo], [lo])
    mid = lo + (hi - lo + 1) // 2
    kids = [_grow(lo, mid, leaf, growth, m), _grow(mid, hi, leaf, growth, m)]
    top = max(c.rank for c in kids)
    rank = min(math.ceil(growth * top - 1e-9), sum(c.rank for c in kids), m)
    return _Node(rank, [], kids)


def _simplify(node: _Node, parent_rank: int, top: bool) -> tuple[list[_Node], list[int]]:
    """Bottom-up: the nodes that take ``node``'s place under its parent, and the layers that
    move up to the parent. A node of its parent's rank (a square rotation) is merged into
    the parent; a node without layers whose rank is the sum of its children's (it only
    spans them) is dropped, its children attached to the parent. Neither changes what the
    tree can represent; both save parameters."""
    kids: list[_Node] = []
    layers = list(node.layers)
    for child in node.children:
        sub, up = _simplify(child, node.rank, False)
        kids += sub
        layers += up
    node.children, node.layers = kids, layers
    if node.rank == parent_rank and not (top and layers):
        return kids, layers
    if not layers and node.rank == sum(c.rank for c in kids):
        return kids, []
    return [node], []


def tree_shape(
    n_layers: int, n: int, m: int, leaf_ranks: Sequence[int], growth: float
) -> TreeShape:
    """The tree of ``n_layers`` layers n × m with leaf ranks ``leaf_ranks`` (capped at
    min(n, m)) and internal ranks min(⌈growth·largest child⌉, Σ children, m), simplified:
    a node of its parent's rank merged into the parent (a root of rank m has the input
    space as parent), a node spanning just its children dropped (see :func:`_simplify`)."""
    if len(leaf_ranks) != n_layers or n_layers < 1:
        raise ValueError(f"need one leaf rank per layer ({n_layers}), got {len(leaf_ranks)}")
    leaf = [max(1, min(int(k), n, m)) for k in leaf_ranks]
    roots, _ = _simplify(_grow(0, n_layers, leaf, growth, m), m, True)
    parents: list[int | None] = []
    ranks: list[int] = []
    leaves = [0] * n_layers

    def emit(node: _Node, parent: int | None) -> None:
        parents.append(parent)
        ranks.append(node.rank)
        here = len(ranks) - 1
        for layer in node.layers:
            leaves[layer] = here
        for child in node.children:
            emit(child, here)

    for root in roots:
        emit(root, None)
    return TreeShape(tuple(parents), tuple(ranks), tuple(leaves))


def budget_shape(n_layers: int, n: int, m: int, ratio: float, growth: float) -> TreeShape:
    """The tree of the largest uniform leaf rank whose parameters fit (1 − ratio)·L·n·m (leaf
    rank 1 when none does)."""
    budget = param_budget(n_layers * n, m, ratio)
    best = tree_shape(n_layers, n, m, [1] * n_layers, growth)
    for k in range(2, min(n, m) + 1):
        if n_layers * n * k > budget:
            break
        shape = tree_shape(n_layers, n, m, [k] * n_layers, growth)
        if shape.params(n, m) <= budget:
            best = shape
    return best


# ---------------------------------------------------------------------------- fitting
@dataclass
class TTNSFit:
    """A fitted tree: its ``shape``, ``nodes`` (a root's Q (k × m) in whitened coordinates,
    else C_v (k_v × k_p)), the objective E after the start and after every node visit
    (``objective_history``) and after the start and every sweep (``sweep_history``), the
    targets' energy Σ‖Z_l‖², ``objective`` (E recomputed from scratch at the end),
    the ``growth`` of the shape, and how many node updates were kept."""

    shape: TreeShape
    nodes: list[torch.Tensor]
    objective_history: list[float]
    sweep_history: list[float]
    energy: float
    objective: float
    growth: float | None = None
    accepted: int = 0
    rejected: int = 0

    def bases(self) -> list[torch.Tensor]:
        """Every node's basis in whitened coordinates (k_v × m), orthonormal rows."""
        out: list[torch.Tensor] = []
        for node, parent in zip(self.nodes, self.shape.parents, strict=True):
            out.append(node if parent is None else node @ out[parent])
        return out

    def layer_bases(self) -> list[torch.Tensor]:
        """U_l (k_l × m) of every layer."""
        bases = self.bases()
        return [bases[v] for v in self.shape.leaves]

    @property
    def relative_error(self) -> float:
        """√(E / Σ‖Z_l‖²)."""
        return math.sqrt(max(self.objective, 0.0) / self.energy) if self.energy > 0 else 0.0


def _row_factor(Z: torch.Tensor) -> torch.Tensor:
    """F (r × m) with FᵀF = ZᵀZ and r = min(n, m): Z itself, or R of Z = QR."""
    return Z if Z.shape[0] <= Z.shape[1] else torch.linalg.qr(Z, mode="r")[1]


def _top_rows(sym: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k eigenvectors of a symmetric matrix, as rows (k × size)."""
    _, vecs = torch.linalg.eigh(0.5 * (sym + sym.T))
    return vecs[:, -k:].flip(-1).T.contiguous()


def _polar(G: torch.Tensor) -> torch.Tensor:
    """The matrix with orthonormal rows nearest G (k × size, k ≤ size): U Vᵀ of its SVD."""
    U, _, Vh = thin_svd(G)
    return U @ Vh


def _half_gradient(C: torch.Tensor, Ns: list[torch.Tensor], Ds: list) -> torch.Tensor:
    """Σ_l D_lᵀ D_l C N_l (D_l = I where None): half the gradient of f at C."""
    return sum(C @ N if D is None else D.T @ (D @ C @ N) for N, D in zip(Ns, Ds, strict=True))


def _captured(C: torch.Tensor, N: torch.Tensor, D: torch.Tensor | None) -> float:
    """‖D C Yᵀ‖² = tr(X N Xᵀ) with X = D C and N = YᵀY."""
    X = C if D is None else D @ C
    return float(((X @ N) * X).sum())


class _Sweeper:
    """The state of a fit: the nodes and each layer's captured energy ‖Z_l U_lᵀ‖²."""

    def __init__(self, Zs: Sequence[torch.Tensor], shape: TreeShape) -> None:
        self.shape = shape
        self.F = [_row_factor(Z) for Z in Zs]
        self.energy = math.fsum(float(Z.square().sum()) for Z in Zs)
        self.nodes: list[torch.Tensor] = []
        self.captured = [0.0] * len(Zs)
        self.below = [shape.below(v) for v in range(len(shape.ranks))]
        self.accepted = self.rejected = 0

    def objective(self) -> float:
        return self.energy - math.fsum(self.captured)

    def _above(self, v: int) -> torch.Tensor | None:
        """U_p of v's parent (k_p × m), None at a root."""
        path = self.shape.path(v)[:-1]
        if not path:
            return None
        U = self.nodes[path[0]]
        for u in path[1:]:
            U = self.nodes[u] @ U
        return U

    def _transfers(self, v: int, layer: int) -> torch.Tensor | None:
        """D (k_l × k_v): the transfers from the layer's node up to v's child, None at v."""
        path = self.shape.path(self.shape.leaves[layer])
        inner = path[path.index(v) + 1 :]
        if not inner:
            return None
        D = self.nodes[inner[-1]]
        for u in reversed(inner[:-1]):
            D = D @ self.nodes[u]
        return D

    def _grams(self, v: int) -> list[torch.Tensor]:
        """N_l = Y_lᵀ Y_l (k_p × k_p, or m × m at a root) of the layers below v."""
        E = self._above(v)
        out = []
        for layer in self.below[v]:
            Y = self.F[layer] if E is None else self.F[layer] @ E.T
            out.append(Y.T @ Y)
        return out

    def start(self) -> None:
        """Top-down: each node the top singular vectors of the stack below it."""
        for v, k in enumerate(self.shape.ranks):
            self.nodes.append(_top_rows(sum(self._grams(v)), k))
        self.captured = self._layer_captures()

    def _layer_captures(self) -> list[float]:
        """‖Z_l U_lᵀ‖² of every layer, from the layers' whole bases."""
        bases = TTNSFit(self.shape, self.nodes, [], [], 0.0, 0.0).layer_bases()
        return [float((F @ U.T).square().sum()) for F, U in zip(self.F, bases, strict=True)]

    def update(self, v: int, inner: int) -> None:
        """One node visit: the exact or monotone candidate, kept if E does not increase."""
        layers = self.below[v]
        Ns = self._grams(v)
        Ds = [self._transfers(v, layer) for layer in layers]
        if all(D is None for D in Ds):
            C = _top_rows(sum(Ns), self.shape.ranks[v])
        else:
            C = self.nodes[v]
            for _ in range(inner):
                C = _polar(_half_gradient(C, Ns, Ds))
        captured = list(self.captured)
        for layer, N, D in zip(layers, Ns, Ds, strict=True):
            captured[layer] = _captured(C, N, D)
        new = self.energy - math.fsum(captured)
        if new <= self.objective():
            self.nodes[v], self.captured = C, captured
            self.accepted += 1
        else:
            self.rejected += 1

    def exact_objective(self) -> float:
        """E recomputed from scratch (every layer's whole basis)."""
        return self.energy - math.fsum(self._layer_captures())


def _check_targets(Zs: Sequence[torch.Tensor], shape: TreeShape | None = None) -> None:
    if len(Zs) < 2:
        raise ValueError(
            f"ttns needs at least 2 layers of a matrix type; got {len(Zs)}: give two or more "
            "weights of one shape (or compress a lone matrix by svd-llm)"
        )
    shapes = sorted({tuple(Z.shape) for Z in Zs})
    if len(shapes) != 1 or len(shapes[0]) != 2:
        raise ValueError(
            f"one ttns tree holds matrices of one shape (n, m), got shapes {shapes}: put each "
            "matrix type in its own tree"
        )
    if shape is not None and len(shape.leaves) != len(Zs):
        raise ValueError(f"the tree has {len(shape.leaves)} leaves for {len(Zs)} layers")


def fit_ttns(
    targets: Sequence[torch.Tensor], shape: TreeShape, sweeps: int = 2, inner: int = 4
) -> TTNSFit:
    """Fit the tree ``shape`` to the whitened ``targets`` Z_l (n × m, L ≥ 2 of one shape):
    the top-down start, then ``sweeps`` sweeps down the nodes and back up (see the module
    docstring), each non-exact node update taking ``inner`` power iterations."""
    Zs = [Z.detach().to(F64) for Z in targets]
    _check_targets(Zs, shape)
    state = _Sweeper(Zs, shape)
    state.start()
    history = [state.objective()]
    per_sweep = [history[0]]
    order = list(range(len(shape.ranks)))
    if all(p is None for p in shape.parents):
        sweeps = 0  # every node's start is its exact optimum
    for _ in range(sweeps):
        for v in order + order[::-1]:
            state.update(v, inner)
            history.append(state.objective())
        per_sweep.append(history[-1])
    return TTNSFit(
        shape,
        state.nodes,
        history,
        per_sweep,
        state.energy,
        state.exact_objective(),
        accepted=state.accepted,
        rejected=state.rejected,
    )


@dataclass
class TypeFit:
    """One matrix type's tree: the ``fit``, the shared whitening ``pre``, and each layer's
    coefficients A_l (n × k_l) and basis B_l = U_l S⁻¹ (k_l × m) in input coordinates, so
    Ŵ_l = A_l B_l; ``layer_error`` the mean over layers of the squared relative activation
    error under each layer's own Gram matrix (what chose the growth)."""

    fit: TTNSFit
    pre: Whitening
    coefficients: list[torch.Tensor]
    bases: list[torch.Tensor]
    layer_error: float

    def weights(self) -> list[torch.Tensor]:
        """Ŵ_l of every layer (float64)."""
        return [A @ B for A, B in zip(self.coefficients, self.bases, strict=True)]


def layer_coefficients(
    weights: Sequence[torch.Tensor],
    grams: Sequence[torch.Tensor],
    bases: Sequence[torch.Tensor],
    damp: float = 1e-6,
) -> list[torch.Tensor]:
    """A_l = argmin_A ‖(W_l − A B_l) S_l‖_F with layer l's own Gram G_l = S_l S_lᵀ (damped
    as in :func:`~qtensorformer.compress.linalg.damped_gram`): A_l = W_l G_l B_lᵀ (B_l G_l
    B_lᵀ)⁻¹. Given the bases, no coefficients have a lower activation error on any layer,
    in particular not the shared-whitening ones A_l = W_l S U_lᵀ."""
    out = []
    for W, G, B in zip(weights, grams, bases, strict=True):
        Gd = damped_gram(G, damp)
        GB = Gd @ B.T  # (m, k)
        M = B @ GB  # (k, k)
        M = 0.5 * (M + M.T)
        chol, info = torch.linalg.cholesky_ex(M)
        rhs = (W.to(F64) @ GB).T  # (k, n)
        if int(info) == 0:
            out.append(torch.cholesky_solve(rhs, chol).T)
        else:  # a rank-deficient basis under G_l: the least-norm solution
            out.append(torch.linalg.lstsq(M, rhs).solution.T)
    return out


def _mean_layer_error(Ws, grams, W_hats) -> float:
    """Mean over layers of the squared relative activation error, each under its own Gram."""
    errors = [activation_error(W, Wh, G) ** 2 for W, Wh, G in zip(Ws, W_hats, grams, strict=True)]
    return math.fsum(errors) / len(errors)


#: Weight of the type's pooled Gram matrix in each layer's refit Gram (see :func:`_pooled`).
POOL = 0.05


def _pooled(grams: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """G_l + POOL·(tr G_l / tr ΣG)·ΣG: each layer's Gram shrunk a little toward the type's
    pooled Gram at the layer's scale, so that directions few calibration tokens reach in
    layer l (a rank-deficient G_l) keep a cost and the refit cannot blow up along them."""
    total = sum(grams)
    scale = float(total.diagonal().sum())
    return [G + POOL * float(G.diagonal().sum()) / scale * total for G in grams]


def _type_fit(Ws, grams, fit: TTNSFit, pre: Whitening, config: TTNSConfig) -> TypeFit:
    U = fit.layer_bases()
    bases = [pre.unapply(u) for u in U]  # (k_l, m) each
    if config.refit:
        coefficients = layer_coefficients(Ws, _pooled(grams), bases, config.damp)
    else:  # as Basis Sharing: A_l = Z_l U_lᵀ in the shared whitened coordinates
        coefficients = [pre.apply(W) @ u.T for W, u in zip(Ws, U, strict=True)]
    W_hats = [A @ B for A, B in zip(coefficients, bases, strict=True)]
    return TypeFit(fit, pre, coefficients, bases, _mean_layer_error(Ws, grams, W_hats))


def fit_type(
    weights: Sequence[torch.Tensor],
    grams: Sequence[torch.Tensor],
    config: TTNSConfig,
    leaf_ranks: Sequence[int] | None = None,
) -> TypeFit:
    """The fitted tree of one matrix type: whitening by Σ_l G_l (``config.damp``), the
    tree of each of ``config.growths`` at the ratio's budget (or the largest growth at
    explicit ``leaf_ranks``), each layer's coefficients (refitted under its own Gram with
    ``config.refit``), and of the growths the one of lowest mean squared relative
    activation error over the layers, each under its own Gram (every layer counts alike,
    whatever the scale of its inputs)."""
    Ws = [W.detach().to(F64) for W in weights]
    _check_targets(Ws)
    L, (n, m) = len(Ws), Ws[0].shape
    grams = [G.to(F64) for G in grams]
    pre = whitening(sum(grams), config.damp)
    Zs = [pre.apply(W) for W in Ws]
    if leaf_ranks is not None:
        growths = [max(config.growths)]
        shapes = [tree_shape(L, n, m, leaf_ranks, growths[0])]
    elif config.ratio is None:
        raise ValueError("ttns needs a ratio or explicit ranks for every layer of a tree")
    else:
        growths = list(config.growths)
        shapes = [budget_shape(L, n, m, config.ratio, g) for g in growths]
    fits = []
    for growth, shape in zip(growths, shapes, strict=True):
        fit = dataclasses.replace(fit_ttns(Zs, shape, config.sweeps), growth=growth)
        fits.append(_type_fit(Ws, grams, fit, pre, config))
    return min(fits, key=lambda f: f.layer_error)


# ---------------------------------------------------------------------------- model level
def ttns_types(
    config: TTNSConfig, model: nn.Module, selected: dict[str, nn.Module], path: str
) -> set[str]:
    """The matrix types put in trees: ``config.shared`` (each must match), else Basis
    Sharing's default for the model."""
    if config.shared is None:
        shapes = {
            matrix_type(n, path)[1]: tuple(linear_weight(m).shape) for n, m in selected.items()
        }
        if not default_shared(model, shapes):
            raise ValueError(
                f"ttns has no default shared matrix types for {type(model).__name__}: give "
                f"shared=(…) from the blocks' types {sorted(shapes)}"
            )
    return shared_types(config, model, selected, path)


def tree_sets(
    names: Sequence[str], path: str, shared: set[str]
) -> tuple[list[list[str]], list[str]]:
    """The names of each shared type (in block order), and the rest; a shared type selected
    in one block only is an error."""
    by_type: dict[str, list[str]] = {}
    for name in names:
        kind = matrix_type(name, path)[1]
        if kind in shared:
            by_type.setdefault(kind, []).append(name)
    lone = {kind: members[0] for kind, members in by_type.items() if len(members) < 2}
    if lone:
        kinds = sorted(lone)
        raise ValueError(
            f"ttns needs at least 2 layers of a matrix type; {kinds} are selected in one block "
            f"only ({sorted(lone.values())}): select them in two or more blocks, or leave them "
            f"out of shared=(…) (they are then compressed per layer by SVD-LLM)"
        )
    in_trees = {n for members in by_type.values() for n in members}
    return list(by_type.values()), [n for n in names if n not in in_trees]


def _leaf_ranks(config: TTNSConfig, names: Sequence[str]) -> list[int] | None:
    """Explicit leaf ranks of a tree's members (all or none must have one)."""
    ranks = [config.rank_for(name) for name in names]
    if all(r is None for r in ranks):
        if config.ratio is None:
            raise ValueError(f"{list(names)} have no rank in the config and there is no ratio")
        return None
    if any(r is None for r in ranks):
        missing = [n for n, r in zip(names, ranks, strict=True) if r is None]
        raise ValueError(
            f"the config ranks some members of a ttns tree but not {missing}: give every "
            "member of a tree a rank, or none (then the ratio decides)"
        )
    return ranks


def _node_shares(total: int, members: int) -> list[int]:
    q, r = divmod(total, members)
    return [q + (i < r) for i in range(members)]


@register_handler(TTNSConfig)
def _ttns_handler(module: nn.Module, name: str, config: TTNSConfig) -> nn.Module:
    raise ValueError(
        "method 'ttns' is activation-aware and needs calibration data: use "
        "qtensorformer.compress.compress_(model, config, calibration=token_ids)"
    )


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


def balance_roots(
    shape: TreeShape, nodes: list[torch.Tensor], coefficients: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Scale each root basis by s and the coefficients of the layers under it by 1/s, with s
    chosen so that both have the same root-mean-square entry; every layer's weight is
    unchanged. The root carries S⁻¹ of a Gram matrix summed over every calibration token, so
    unbalanced its entries are orders of magnitude smaller than the coefficients', and a
    fine-tune (whose Adam steps have about the same size for every entry) wrecks it: healing
    the small checkpoint's ttns model at 20% raised its test perplexity from 255.70 to 264.86
    before this (docs/RESULTS.md, small-checkpoint table).

    Example:
        >>> shape = TreeShape(parents=(None,), ranks=(2,), leaves=(0, 0))
        >>> nodes, A = balance_roots(shape, [torch.full((2, 3), 0.01)],
        ...                          [torch.full((4, 2), 1.0), torch.full((4, 2), 1.0)])
        >>> round(float(nodes[0][0, 0]), 4), round(float(A[0][0, 0]), 4)
        (0.1, 0.1)
    """
    nodes, coefficients = list(nodes), list(coefficients)
    for v, parent in enumerate(shape.parents):
        if parent is not None:
            continue
        layers = shape.below(v)
        coef_rms = math.sqrt(sum(_rms(coefficients[i]) ** 2 for i in layers) / len(layers))
        node_rms = _rms(nodes[v])
        if node_rms == 0 or coef_rms == 0:
            continue
        s = math.sqrt(coef_rms / node_rms)
        nodes[v] = nodes[v] * s
        for i in layers:
            coefficients[i] = coefficients[i] / s
    return nodes, coefficients


def compress_tree(
    model: nn.Module,
    modules: dict[str, nn.Module],
    config: TTNSConfig,
    stats: dict[str, InputStats],
    held: dict[str, InputStats],
    records: dict[str, ModuleReport],
) -> TTNSFit:
    """Replace ``modules`` (full dotted names in ``model``: one matrix type of two or more
    blocks, in block order) by the TreeSharedLinear layers of one fitted tree; add their
    records and return the fit."""
    t0 = time.perf_counter()
    names = list(modules)
    targets = [target_from_module(modules[x], x, config, stats[x], rank=1) for x in names]
    shapes = sorted({t.shape for t in targets})
    if len(shapes) != 1:
        raise ValueError(
            f"{names} cannot share one ttns tree: their shapes differ {shapes}; a tree holds "
            "one matrix type of one shape (give shared= types of equal shape in every block)"
        )
    Ws = [t.weight for t in targets]
    typed = fit_type(Ws, [stats[x].gram for x in names], config, _leaf_ranks(config, names))
    fit, pre, coefficients = typed.fit, typed.pre, typed.coefficients
    nodes = [
        pre.unapply(Q) if p is None else Q
        for Q, p in zip(fit.nodes, fit.shape.parents, strict=True)
    ]
    nodes, coefficients = balance_roots(fit.shape, nodes, coefficients)
    kw = {"dtype": targets[0].dtype, "device": targets[0].device}
    layers = TreeSharedLinear.tree(
        [v.to(**kw) for v in nodes],
        fit.shape.parents,
        fit.shape.leaves,
        [A.to(**kw) for A in coefficients],
        [t.bias for t in targets],
    )
    new = dict(zip(names, layers, strict=True))
    replace_modules(model, lambda module, name: new[name], lambda module, name: name in new)
    seconds = (time.perf_counter() - t0) / len(names)
    _add_records(records, names, targets, typed, stats, held, seconds)
    return fit


def _add_records(records, names, targets, typed: TypeFit, stats, held, seconds):
    fit = typed.fit
    n, m = targets[0].shape
    shares = _node_shares(fit.shape.node_params(m), len(names))
    for i, (name, t, W_hat) in enumerate(zip(names, targets, typed.weights(), strict=True)):
        path = fit.shape.path(fit.shape.leaves[i])
        records[name] = ModuleReport(
            name,
            "ttns",
            f"ttns(tree of {len(names)}, growth {fit.growth:g})",
            tuple(fit.shape.ranks[v] for v in path),
            n * m,
            shares[i] + n * typed.coefficients[i].shape[1],
            0 if t.bias is None else t.bias.numel(),
            weight_error(t.weight, W_hat),
            activation_error(t.weight, W_hat, stats[name].gram),
            seconds,
            typed.pre.kind,
            None if name not in held else activation_error(t.weight, W_hat, held[name].gram),
        )
