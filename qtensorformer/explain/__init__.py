"""Audit trail of every routing and rank decision, plain-language explanations from fixed
templates, and an optional LLM explainer behind any OpenAI-compatible endpoint.

Example:
    >>> import torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.explain import audit, explain_trail
    >>> m = QTensorFormer(ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1,
    ...                               use_adaptive_rank=True, tt_rank=4))
    >>> trail = audit(m, torch.randint(0, 50, (8,)))
    >>> explain_trail(trail)[0].startswith("Layer 0: 8 tokens")
    True
"""

from .audit import AuditTrail, TokenDecision, audit, visible_token
from .llm import Explanation, LLMExplainer
from .templates import explain_budget, explain_token, explain_trail

__all__ = [
    "AuditTrail",
    "Explanation",
    "LLMExplainer",
    "TokenDecision",
    "audit",
    "explain_budget",
    "explain_token",
    "explain_trail",
    "visible_token",
]
