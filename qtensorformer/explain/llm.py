"""Optional explanations by a language model behind any OpenAI-compatible chat endpoint.

Never required: on any error (no server, timeout, bad reply, missing key) the explainer falls
back to the template explanations and says why. Only the standard library is used.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .audit import AuditTrail
from .templates import explain_budget, explain_trail

__all__ = ["Explanation", "LLMExplainer"]

SYSTEM_PROMPT = (
    "You explain the decisions of a tensor-network language model to an engineer. Each layer "
    "scores every token with an entropy; tokens whose hardness exceeds a threshold take a "
    "quantum-kernel attention path, and a token's tensor-train rank grows with its entropy. "
    "Explain briefly and concretely, using only the numbers given."
)


@dataclass
class Explanation:
    """``text``; ``source``: ``"llm"`` or ``"templates"``; ``error``: why the LLM was not used."""

    text: str
    source: str
    error: str | None = None


class LLMExplainer:
    """Explanations from ``POST {url}/chat/completions`` (OpenAI-compatible).

    Args:
        url: base URL, e.g. ``http://localhost:8000/v1``.
        model: model name sent to the endpoint.
        api_key_env: environment variable holding the API key (sent as a bearer token when
            set; the key is never read from anywhere else).
        timeout: seconds before giving up and falling back to templates.

    Example:
        >>> ex = LLMExplainer("http://127.0.0.1:9", timeout=0.5)  # nothing listens there
        >>> ex.explain(AuditTrail([], {})).source
        'templates'
    """

    def __init__(
        self,
        url: str,
        model: str = "default",
        api_key_env: str = "QTF_EXPLAINER_API_KEY",
        timeout: float = 30.0,
        max_records: int = 64,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"explainer url must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env = model, api_key_env
        self.timeout, self.max_records = timeout, max_records

    def _prompt(self, trail: AuditTrail, budget_events: list[dict] | None) -> str:
        recs = [
            {
                k: v
                for k, v in r.__dict__.items()
                if k in ("layer", "position", "token", "entropy", "hardness", "threshold")
                or k in ("path", "rank", "r_max", "flops")
            }
            for r in trail.records[: self.max_records]
        ]
        payload = {
            "settings": trail.settings,
            "decisions": recs,
            "template_summary": explain_trail(trail),
            "budget_adjustments": explain_budget(budget_events or []),
        }
        return "Explain these decisions:\n" + json.dumps(payload, default=str)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read().decode())

    def explain(self, trail: AuditTrail, budget_events: list[dict] | None = None) -> Explanation:
        """The endpoint's explanation, or the templates' when anything goes wrong."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": self._prompt(trail, budget_events)},
            ],
            "temperature": 0,
        }
        try:
            reply = self._post(body)
            text = reply["choices"][0]["message"]["content"]
            if not isinstance(text, str) or not text.strip():
                raise ValueError("empty reply")
            return Explanation(text.strip(), "llm")
        except (
            urllib.error.URLError,
            TimeoutError,
            OSError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
        ) as e:
            fallback = "\n".join(explain_trail(trail) + explain_budget(budget_events or []))
            return Explanation(fallback, "templates", f"{type(e).__name__}: {e}")
