"""Capability matching and price arithmetic: the pure core of routing decisions.

Called by `checking` (can any model serve this rule?) and by the router. Pure
and allocation-light: it compares numbers and never does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from reconciler.manifests import kinds as manifests

CapabilityType = manifests.CapabilityType

# Blended price: three input tokens for every output token, the usual chat mix.
INPUT_SHARE = 0.75


@dataclasses.dataclass(frozen=True, slots=True)
class MatchScore:
    """How well a model's capabilities cover a set of required ones.

    ``score`` is the mean of the model's scores over the required capabilities
    (a missing capability counts as 0), so it ranks models; ``weakest`` is the
    lowest of them, which decides whether a rule's ``minScore`` is met.
    """

    score: float
    weakest: float
    scores: Mapping[CapabilityType, float]
    missing: tuple[CapabilityType, ...]

    @property
    def complete(self) -> bool:
        return not self.missing

    def meets(self, min_score: float) -> bool:
        """Every required capability present and at least ``min_score``."""
        return not self.missing and self.weakest >= min_score


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..1); 0 when empty.

    The one definition: the router's observed p95 and the metrics endpoint agree.
    """
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1))))
    return sorted_values[rank]


def match_capabilities(
    required: Iterable[CapabilityType | str],
    available: Mapping[CapabilityType, float] | Mapping[str, float],
) -> MatchScore:
    """Score ``available`` capabilities against ``required`` ones (DESIGN section 9)."""
    wanted = tuple(dict.fromkeys(CapabilityType(item) for item in required))
    have = {CapabilityType(key): float(value) for key, value in available.items()}
    if not wanted:
        return MatchScore(score=1.0, weakest=1.0, scores={}, missing=())
    scores = {cap: have.get(cap, 0.0) for cap in wanted}
    missing = tuple(cap for cap in wanted if cap not in have)
    values = list(scores.values())
    return MatchScore(
        score=sum(values) / len(values), weakest=min(values), scores=scores, missing=missing
    )


def blended_price(pricing: manifests.Pricing | None) -> float | None:
    """USD per million tokens at a 3:1 input:output mix; None when pricing is unknown."""
    if pricing is None:
        return None
    return INPUT_SHARE * pricing.input_per_m_tok + (1 - INPUT_SHARE) * pricing.output_per_m_tok


def static_exclusion(
    spec: manifests.ModelSpec,
    *,
    min_context_window: int | None,
    max_cost_per_m_tok: float | None,
) -> str | None:
    """Why a rule's static constraints exclude a model, or None when they do not."""
    if min_context_window is not None:
        if spec.context_window is None:
            return "contextWindow unknown"
        if spec.context_window < min_context_window:
            return f"contextWindow {spec.context_window} < {min_context_window}"
    if max_cost_per_m_tok is not None:
        price = blended_price(spec.pricing)
        if price is not None and price > max_cost_per_m_tok:
            return f"blended price {price:g} > maxCostPerMTok {max_cost_per_m_tok:g}"
    return None


def shortfall(match: MatchScore, min_score: float) -> str:
    """What a model lacks for a capability match: ``lacks speed``, or
    ``reasoning 0.6 below minScore 0.7``."""
    if match.missing:
        return "lacks " + ", ".join(c.value for c in match.missing)
    weak = ", ".join(f"{c.value} {s:g}" for c, s in match.scores.items() if s < min_score)
    return f"{weak} below minScore {min_score:g}"


def rule_exclusion(spec: manifests.ModelSpec, rule: manifests.RuleSpec) -> str | None:
    """Why ``spec`` cannot serve ``rule`` on static grounds (its state, the required
    capabilities at ``minScore``, the rule's constraints), or None when it can. The
    router excludes with this reason; validation and safety ask whether it is None."""
    if spec.state is not manifests.ModelState.ENABLED:
        return f"state {spec.state.value}"
    match = match_capabilities(rule.requires, spec.capabilities)
    if not match.meets(rule.min_score):
        return shortfall(match, rule.min_score)
    if rule.constraints is not None:
        return static_exclusion(
            spec,
            min_context_window=rule.constraints.min_context_window,
            max_cost_per_m_tok=rule.constraints.max_cost_per_m_tok,
        )
    return None
