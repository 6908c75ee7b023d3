"""The one exception tree of Grove.

Every error Grove raises on purpose derives from :class:`GroveError`. Callers
branch on the two big families, the way kopf separates temporary from
permanent errors: a temporary error is worth retrying with backoff (the network,
the database or a lock will come back), a permanent error needs a human
(the input is wrong and retrying will not change it).

    GroveError
    ├── PermanentError                     needs a human; never retried
    │   ├── UsageError                     a flag, path or argument the operator gave is wrong
    │   │   └── planning.listings.BadCursor
    │   │                                  a list cursor Grove did not make, or one altered
    │   ├── ConfigError                    settings from flags or the environment are invalid
    │   ├── ManifestsInvalid               manifests failed validation (carries the diagnostics)
    │   ├── SchemaDrift                    schemas/ differs from the manifest classes
    │   ├── SourceError                    a repository, URL or ref that can never work
    │   ├── DatabaseNotReady               the schema is missing or newer: run a migration
    │   │   └── DatabaseUnreadable         the database file is damaged or unreadable: restore it
    │   ├── PlanRefused                    safety checks refused the plan (carries violations)
    │   ├── StalePlan                      a saved plan no longer matches the registry
    │   ├── base.serial.Invalid            JSON data that does not fit its type (a ValueError too)
    │   ├── gitops.authoring.Invalid       a write would leave invalid manifests (carries them)
    │   ├── gitops.authoring.Refused       safety checks refused a write (carries the plan)
    │   ├── gitops.authoring.Conflict      the object exists already, or the request contradicts git
    │   ├── gitops.authoring.NotFound      no manifest defines the object a write names
    │   ├── gitops.authoring.Suspended     a change freeze holds (carries who and since when)
    │   ├── gitops.rollouts.NotFound       no rollout for the model named
    │   ├── gitops.rollouts.NotOpen        the rollout is over or rolling back: nothing to do
    │   ├── gitops.delivery.NotQuarantined a quarantine lift names a version not quarantined
    │   ├── gitops.delivery.Ambiguous      a lift matches a model and a rule: name the type
    │   ├── planning.rollbacks.NoEarlierVersion
    │   │                                  a rollback has no version to return to
    │   ├── routing.ranking.NoRoute        a request names no rule or capability (a LookupError too)
    │   ├── routing.engine.NoEligibleModel no model may serve a request (carries the decision)
    │   ├── routing.engine.RoutingFailed   every model of the chain failed (carries the attempts)
    │   ├── manifests.yamlsafe.YamlRefused a YAML text breaks the safe-YAML rules (carries where)
    │   ├── manifests.addresses.EndpointRejected
    │   │                                  an endpoint breaks the address policy (a ValueError
    │   │                                  too: pydantic makes it a field error)
    │   └── providers.transport.AddressRefused
    │                                      a connection to an address the endpoint policy forbids
    │                                      (an OSError too: aiohttp hands only those on)
    ├── TemporaryError                     retry with backoff
    │   ├── SourceUnavailable              git fetch failed or timed out
    │   ├── DatabaseUnavailable            the database cannot be reached now
    │   ├── LockBusy                       another reconciler holds the apply lock
    │   ├── LeaseLost                      this loop is no longer the leader; stand down
    │   ├── api.hub.TooManyStreams         no event-stream slot free; one frees when a stream ends
    │   └── routing.streaming.StreamBroken a streamed answer's model failed after its first
    │                                      delta: too late to fail over (the stream ends with it)
    └── providers.base.ProviderError       one failed model call: its kind says whether the next
                                           model is worth a try; the router decides, never a caller

A class named with its module lives there, beside what it carries; the others live
here. The HTTP answer of each (status, code, title) is one table,
``api.problems.ANSWERS``, looked up along the error's class tree.

Outside the tree, on purpose (``tests/unit/test_error_tree.py`` lists them):
``api.problems.ApiError`` is an HTTP answer a route raises, not an error, and so are the
console's page answers ``web.sessions.SignInNeeded``, ``Forbidden`` and ``BadForm`` and
``web.pages.NotFound`` (``web.pages.PageRoute`` turns each into its page), and the
gateway's ``gateway.Refused`` and ``gateway.common.GatewayError``, answers in its callers'
formats;
``gitops.authoring._NothingToRollBack`` and ``store.integrity._Failed`` are private control
flow, caught where they are raised.

Third-party errors are wrapped with ``raise ... from exc`` so the cause survives
for debugging while the message shown to the operator stays one line. No error
message ever contains a credential or a manifest value that could be one, nor a
database's URL, host, port, user or name (`store.engine` builds the database
errors from a fixed list of reasons, never from the driver's text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.base.diagnostics import Diagnostic


class GroveError(Exception):
    """Root of every error Grove raises on purpose."""


class PermanentError(GroveError):
    """The input or configuration is wrong; retrying will not help."""


class TemporaryError(GroveError):
    """Something outside Grove is unavailable for now; retry with backoff."""


class UsageError(PermanentError):
    """A command-line argument, flag or path is wrong."""


class ConfigError(PermanentError):
    """Settings from flags or the environment are invalid."""


class ManifestsInvalid(PermanentError):
    """Manifests failed validation; ``diagnostics`` holds every problem found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        errors = sum(1 for d in self.diagnostics if d.is_error)
        super().__init__(f"{errors} manifest error(s)")


class SchemaDrift(PermanentError):
    """The committed JSON Schemas differ from what the manifest classes generate."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(paths)
        super().__init__(
            "schemas are out of date: "
            + ", ".join(self.paths)
            + "; run `grove schema export` and commit the result"
        )


class SourceError(PermanentError):
    """The repository, URL or ref is wrong and will stay wrong."""


class SourceUnavailable(TemporaryError):
    """The repository could not be fetched now (network, timeout)."""


class DatabaseNotReady(PermanentError):
    """The database schema is missing or newer than this Grove; the message says what to run."""


class DatabaseUnreadable(DatabaseNotReady):
    """The database cannot be read: a damaged file, not a database, or no permission.

    Permanent (restore the file from a backup; ``grove db check`` says what is wrong),
    but a server keeps polling and recovers by itself once the file is good again.
    """


class DatabaseUnavailable(TemporaryError):
    """The database cannot be reached now."""


class LockBusy(TemporaryError):
    """Another reconciler holds the apply lock."""


class PlanRefused(PermanentError):
    """Safety checks refused the plan; ``plan`` holds the violations and the way out."""

    def __init__(self, message: str, plan: object) -> None:
        super().__init__(message)
        self.plan = plan


class StalePlan(PermanentError):
    """The registry moved since the plan was made; plan again."""


class LeaseLost(TemporaryError):
    """The loop's lease expired or was taken over; it must not apply."""
