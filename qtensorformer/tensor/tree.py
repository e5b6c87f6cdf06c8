"""TreeSharedLinear: a linear layer whose input basis is the product of the nodes on its
path down a tree shared between layers (the layer form of a cross-layer tree tensor network,
:mod:`qtensorformer.compress.ttns`).

Index legend: B tokens (flattened batch), m in_features, n out_features, d+1 nodes on the
path, k_0 … k_d their ranks (k_0 the root's, k_d the layer's own), L layers of a tree.

``chain[0]`` is the root's basis B_0 (k_0 × m) and ``chain[i]`` the transfer C_i
(k_i × k_{i−1}) of the i-th node below it; the layer's own coefficients A (n × k_d) and bias
complete it: W = A · C_d ⋯ C_1 · B_0, run as a chain of small GEMMs from the root,
y = A (C_d (⋯ (C_1 (B_0 x)))) + b. Every node is one ``nn.Parameter`` held by all the layers
below it (``model.parameters()`` yields it once), as a SharedBasisLinear's basis.

Per token the chain costs k_0·m + Σ_i k_i·k_{i−1} multiply-adds before the coefficients; the
product basis C_d ⋯ B_0 (k_d × m) costs k_d·m. Since k_0 ≥ k_d the product is never dearer,
so in eval mode without autograd (and ``cache=True``) a layer with a path longer than one
node runs from its product basis, computed once and kept until a node changes (its version
counter, storage, dtype or device) or the layer goes back to training. The cache holds k_d·m
numbers per layer outside the parameters (it is not saved): set ``cache=False`` to keep the
memory at the parameter count.

Example:
    >>> import torch
    >>> B0, C = torch.randn(6, 16), torch.linalg.qr(torch.randn(6, 6))[0][:4]
    >>> a, b = TreeSharedLinear.tree([B0, C], [None, 0], [1, 0],
    ...                              [torch.randn(24, 4), torch.randn(8, 6)], [None, None])
    >>> a.chain[0] is b.chain[0], a.ranks, b.ranks
    (True, (6, 4), (6,))
    >>> x = torch.randn(3, 16)
    >>> bool(torch.allclose(a(x), x @ a.dense_weight().T, atol=1e-5))
    True
    >>> sum(p.numel() for p in torch.nn.ModuleList([a, b]).parameters()), 6*16 + 4*6 + 24*4 + 8*6
    (264, 264)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TreeSharedLinear"]


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _check_chain(chain: Sequence[nn.Parameter]) -> None:
    if not chain or not all(isinstance(p, nn.Parameter) and p.ndim == 2 for p in chain):
        raise ValueError("chain must be a non-empty sequence of 2-D nn.Parameters (root first)")
    for i in range(1, len(chain)):
        if chain[i].shape[1] != chain[i - 1].shape[0]:
            raise ValueError(
                f"chain[{i}] is {tuple(chain[i].shape)} but chain[{i - 1}] has "
                f"{chain[i - 1].shape[0]} rows: node i must be (k_i, k_(i-1))"
            )


class TreeSharedLinear(nn.Module):
    """Linear layer W = A · C_d ⋯ C_1 · B_0 whose path ``chain`` [B_0, C_1, …, C_d] is
    shared (the same ``nn.Parameter`` objects) with the other layers of its tree; A
    (out × k_d) and the bias are its own. See the module docstring for the eval cache."""

    def __init__(
        self,
        chain: Sequence[nn.Parameter],
        out_features: int,
        *,
        bias: bool = True,
        cache: bool = True,
    ) -> None:
        super().__init__()
        _check_chain(chain)
        self.out_features = _check_size("out_features", out_features)
        self.in_features = int(chain[0].shape[1])
        self.chain = nn.ParameterList(chain)  # the same objects as in the other layers
        self.ranks = tuple(int(p.shape[0]) for p in chain)
        self.rank = self.ranks[-1]
        self.cache = cache
        kw = {"device": chain[0].device, "dtype": chain[0].dtype}
        self.coefficient = nn.Parameter(torch.empty(out_features, self.rank, **kw))  # (n, k_d)
        nn.init.kaiming_uniform_(self.coefficient, a=math.sqrt(5))
        self.bias = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None
        self._cached: tuple[tuple, torch.Tensor] | None = None

    # ------------------------------------------------------------------ building
    @staticmethod
    def new_node(
        rows: int,
        cols: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> nn.Parameter:
        """A fresh node parameter (rows × cols), initialised as ``nn.Linear``'s weight, to hand
        to every layer below it (a root: rank × in_features; else rank × parent rank)."""
        weight = torch.empty(
            _check_size("rows", rows), _check_size("cols", cols), device=device, dtype=dtype
        )
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        return nn.Parameter(weight)

    @classmethod
    def tree(
        cls,
        nodes: Sequence[torch.Tensor],
        parents: Sequence[int | None],
        leaves: Sequence[int],
        coefficients: Sequence[torch.Tensor],
        biases: Sequence[torch.Tensor | None],
    ) -> list[TreeSharedLinear]:
        """The layers of one tree: ``nodes[v]`` is a root's basis (k_v × in) when
        ``parents[v]`` is None, else a transfer (k_v × k_parent); parents come before their
        children. Layer l runs down to node ``leaves[l]`` with ``coefficients[l]``
        (out_l × k_leaf) and ``biases[l]`` (out_l,) or None. One new parameter per node (of
        the first node's dtype and device; the other tensors are cast to it)."""
        if len(nodes) != len(parents) or not (len(leaves) == len(coefficients) == len(biases)):
            raise ValueError("need one parent per node and one coefficient and bias per layer")
        kw = {"dtype": nodes[0].dtype, "device": nodes[0].device}
        params: list[nn.Parameter] = []
        for v, (node, parent) in enumerate(zip(nodes, parents, strict=True)):
            if parent is not None and not 0 <= parent < v:
                raise ValueError(f"node {v}'s parent {parent} must be an earlier node")
            params.append(nn.Parameter(node.detach().to(**kw).clone().contiguous()))
        return [
            cls._layer(params, parents, leaf, A.to(**kw), None if b is None else b.to(**kw))
            for leaf, A, b in zip(leaves, coefficients, biases, strict=True)
        ]

    @classmethod
    def _layer(cls, params, parents, leaf: int, A: torch.Tensor, bias) -> TreeSharedLinear:
        path = [leaf]
        while parents[path[-1]] is not None:
            path.append(parents[path[-1]])
        chain = [params[v] for v in reversed(path)]
        if A.ndim != 2 or A.shape[1] != chain[-1].shape[0]:
            raise ValueError(
                f"coefficients must be (out, {chain[-1].shape[0]}), got {tuple(A.shape)}"
            )
        if bias is not None and bias.shape != (A.shape[0],):
            raise ValueError(f"bias must have shape ({A.shape[0]},), got {tuple(bias.shape)}")
        layer = cls(chain, A.shape[0], bias=bias is not None)
        with torch.no_grad():
            layer.coefficient.copy_(A)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    # ------------------------------------------------------------------ computing
    def basis(self) -> torch.Tensor:
        """The product basis C_d ⋯ C_1 · B_0 (k_d × in_features), multiplied from the leaf."""
        nodes = list(self.chain)
        product = nodes[-1]
        for node in reversed(nodes[:-1]):
            product = product @ node
        return product

    def dense_weight(self) -> torch.Tensor:
        """The weight W = A · C_d ⋯ B_0, (out_features, in_features) (for tests and export)."""
        return self.coefficient @ self.basis()

    to_dense = dense_weight

    def _chain_macs(self) -> int:
        return sum(r * c for r, c in (p.shape for p in self.chain))

    def _use_cache(self) -> bool:
        if not self.cache or self.training or len(self.chain) == 1:
            return False
        if self._chain_macs() <= self.rank * self.in_features:
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self.chain))

    def _cached_basis(self) -> torch.Tensor:
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self.chain)
        if self._cached is None or self._cached[0] != key:
            with torch.no_grad():
                self._cached = (key, self.basis().detach())
        return self._cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input has last dimension {x.shape[-1]}, expected in_features={self.in_features}"
            )
        if self._use_cache():
            h = F.linear(x, self._cached_basis())
        else:
            h = x
            for node in self.chain:
                h = F.linear(h, node)
        return F.linear(h, self.coefficient, self.bias)

    def train(self, mode: bool = True) -> TreeSharedLinear:
        self._cached = None
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._cached = None
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------------ accounting
    def num_params(self) -> int:
        """Parameters this layer reaches: its whole path (counted here in full, though the
        tree stores each node once), its coefficients and bias."""
        return sum(p.numel() for p in self.parameters())

    def decayed_parameters(self) -> list[nn.Parameter]:
        """The parameters that take weight decay: the path's nodes and the coefficients."""
        return [*self.chain, self.coefficient]

    def flops(self, tokens: int, rank: int | None = None) -> int:
        """Forward FLOPs on ``tokens`` rows as eval mode runs them: 2·B·(k_d·m + n·k_d) from
        the cached product basis, else 2·B·(k_0·m + Σ k_i·k_(i−1) + n·k_d); plus the bias.
        ``rank`` as in LowRankLinear.flops (None or at least the layer's rank)."""
        if rank is not None and rank < self.rank:
            raise ValueError(
                f"TreeSharedLinear runs at its rank {self.rank} only; got rank={rank} (no "
                "nested truncation)"
            )
        macs = self._chain_macs()
        if self.cache and len(self.chain) > 1:
            macs = min(macs, self.rank * self.in_features)
        bias = tokens * self.out_features if self.bias is not None else 0
        return 2 * tokens * (macs + self.out_features * self.rank) + bias

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"ranks={self.ranks} (shared tree path), bias={self.bias is not None}"
        )
