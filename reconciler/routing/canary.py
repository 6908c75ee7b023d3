"""Which version of a model a call goes to while a rollout splits its calls.

An open rollout (`store.rollouts`) keeps the previous version of a model live as
*stable* beside the new *canary*. A call's version is chosen by a hash of its
request id (CRC-32, seeded by the model id): the same request id always lands on
the same version, so a retried request sticks, and every replica chooses alike.
The other version of the same model is the call's next attempt when the chosen
one fails or its circuit is open; a canary at weight 0 (failed, aborted) gets
nothing.
"""

from __future__ import annotations

import dataclasses
import zlib

from reconciler.manifests import kinds as manifests
from reconciler.routing import circuits

BUCKETS = 10_000  # a weight in percent is weight * 100 buckets


@dataclasses.dataclass(frozen=True, slots=True)
class Split:
    model_id: str
    weight: int  # percent of the model's calls to the canary, 0..99
    canary: tuple[manifests.AIModel, circuits.ModelVersion]
    stable: tuple[manifests.AIModel, circuits.ModelVersion]
    seed: int
    threshold: int

    @classmethod
    def of(cls, canary: manifests.AIModel, stable: manifests.AIModel, weight: int) -> Split:
        model_id = canary.id
        weight = max(0, min(99, weight))
        return cls(
            model_id,
            weight,
            (canary, circuits.ModelVersion(model_id, canary.meta.version)),
            (stable, circuits.ModelVersion(model_id, stable.meta.version)),
            zlib.crc32(model_id.encode()),
            weight * (BUCKETS // 100),
        )

    def bucket(self, request_id: str) -> int:
        return zlib.crc32(request_id.encode(), self.seed) % BUCKETS

    def order(self, request_id: str) -> tuple[tuple[manifests.AIModel, circuits.ModelVersion], ...]:
        """The versions to try for this request, the chosen one first."""
        if self.threshold == 0:
            return (self.stable,)
        if zlib.crc32(request_id.encode(), self.seed) % BUCKETS < self.threshold:
            return (self.canary, self.stable)
        return (self.stable, self.canary)
