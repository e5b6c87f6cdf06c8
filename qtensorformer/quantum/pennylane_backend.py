"""The same feature circuits run through PennyLane (optional dependency).

Used as the ``backend="pennylane"`` of :class:`~qtensorformer.quantum.QuantumFeatureEncoder`
and as the reference the torch simulator is tested against.
"""

from __future__ import annotations

from typing import Any

__all__ = ["make_qnode", "make_torch_layer", "require_pennylane"]


def require_pennylane() -> Any:
    """Import PennyLane or raise an ImportError that says how to install it."""
    try:
        import pennylane as qml
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "the 'pennylane' backend needs PennyLane, which is not installed; install it with "
            "`pip install 'qtensorformer[pennylane]'` or use backend='torch'"
        ) from err
    return qml


def _encode(qml, x, n_qubits: int, scheme: str) -> None:
    if scheme == "ry":
        for i in range(n_qubits):
            qml.RY(x[..., i], wires=i)
    else:
        xc = qml.math.clip(x, -1.0, 1.0)
        a, phi = qml.math.arcsin(xc), qml.math.arccos(xc * xc)
        for i in range(n_qubits):
            qml.RY(a[..., i], wires=i)
            qml.RZ(phi[..., i], wires=i)


def _layers(qml, weights, n_qubits: int, ansatz: str, ranges=None) -> None:
    wires = list(range(n_qubits))
    if ansatz == "strong":
        qml.StronglyEntanglingLayers(weights, wires=wires, ranges=ranges)
    else:
        qml.BasicEntanglerLayers(weights, wires=wires, rotation=qml.RY)


def make_qnode(
    n_qubits: int,
    n_layers: int,
    ansatz: str = "real",
    scheme: str = "ry",
    reupload: bool = False,
    measure: str = "expval",
    entropy: str | None = "von_neumann",
    subsystem=None,
    device: str = "default.qubit",
    diff_method: str = "backprop",
):
    """A QNode ``f(inputs, weights)`` of the feature circuit.

    ``measure="expval"`` returns ``[⟨Z_0⟩, ..., ⟨Z_{q-1}⟩]`` plus the entropy of ``subsystem``
    (``qml.vn_entropy``, or −log ``qml.purity`` for ``"renyi2"``) unless ``entropy`` is None;
    ``measure="state"`` returns the state vector.
    """
    qml = require_pennylane()
    from .ansatz import strong_ranges

    dev = qml.device(device, wires=n_qubits)
    sub = list(subsystem) if subsystem is not None else list(range(n_qubits // 2))
    ranges = strong_ranges(n_layers, n_qubits)

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def circuit(inputs, weights):
        if reupload:
            for layer in range(n_layers):
                _encode(qml, inputs, n_qubits, scheme)
                r = [ranges[layer]] if ansatz == "strong" and n_qubits > 1 else None
                _layers(qml, weights[layer : layer + 1], n_qubits, ansatz, ranges=r)
        else:
            _encode(qml, inputs, n_qubits, scheme)
            _layers(qml, weights, n_qubits, ansatz)
        if measure == "state":
            return qml.state()
        out = [qml.expval(qml.PauliZ(i)) for i in range(n_qubits)]
        if entropy == "von_neumann":
            out.append(qml.vn_entropy(wires=sub))
        elif entropy == "renyi2":
            out.append(qml.purity(wires=sub))
        return out

    return circuit


def make_torch_layer(
    n_qubits: int,
    n_layers: int,
    ansatz: str = "real",
    scheme: str = "ry",
    reupload: bool = False,
    entropy: str | None = "von_neumann",
    subsystem=None,
    device: str = "default.qubit",
):
    """``qml.qnn.TorchLayer`` with one parameter ``weights`` (same shape as the torch backend's).

    Its output is ``(..., q)`` ⟨Z⟩ values, plus one column of the entropy (von Neumann) or
    the purity (``"renyi2"``: the caller takes −log) when ``entropy`` is set.
    """
    qml = require_pennylane()
    from .ansatz import ansatz_weight_shape

    qnode = make_qnode(
        n_qubits, n_layers, ansatz, scheme, reupload, "expval", entropy, subsystem, device
    )
    shape = ansatz_weight_shape(ansatz, n_layers, n_qubits)
    return qml.qnn.TorchLayer(qnode, {"weights": shape})
