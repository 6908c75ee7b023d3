"""The token cache in front of the database: one check per token at a time, refreshed
before it expires under steady traffic, and never serving an identity whose last
successful check is older than its time to live (revocation takes effect in time)."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from reconciler.api.deps import IdentityCache
from reconciler.store import tokens
from reconciler.store.engine import Database

TTL = 0.4


class CountedChecks:
    """The real check (tokens.verify on a real registry), counting how often it runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, token: str) -> tokens.Identity | None:
        with self._lock:
            self.calls += 1
        with self.db.transaction() as connection:
            return tokens.verify(connection, token)


@pytest.fixture
def db(database: Database) -> Database:
    return database


def _token(db: Database, name: str = "ci") -> str:
    with db.transaction(write=True) as connection:
        return tokens.create(connection, name=name, role="operator", created_by="test")


def test_fifty_callers_on_a_cold_cache_share_one_check(db: Database) -> None:
    token = _token(db)
    checks = CountedChecks(db)
    cache = IdentityCache(ttl_s=TTL)

    async def main() -> list[tokens.Identity | None]:
        return await asyncio.gather(*(cache.identity(token, checks) for _ in range(50)))

    found = asyncio.run(main())
    assert checks.calls == 1
    assert {identity.name if identity else None for identity in found} == {"ci"}


@pytest.mark.slow
def test_steady_traffic_refreshes_in_the_background_and_never_waits(db: Database) -> None:
    token = _token(db)
    checks = CountedChecks(db)
    cache = IdentityCache(ttl_s=TTL)

    async def main() -> tuple[int, int]:
        await cache.identity(token, checks)
        waited = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + TTL * 4
        while loop.time() < end:  # a request every 10 ms for four times the TTL
            started = loop.time()
            assert await cache.identity(token, checks) is not None
            # answered from the cache: no await on the database read
            if loop.time() - started > 0.005:
                waited += 1
            await asyncio.sleep(0.01)
        return waited, checks.calls

    waited, calls = asyncio.run(main())
    assert waited == 0, "a request waited for a check although an entry was fresh"
    # one check per half TTL, give or take the one in flight
    assert 4 <= calls <= 10, calls


def test_a_revoked_token_is_refused_within_the_ttl(db: Database) -> None:
    token = _token(db, "leaving")
    checks = CountedChecks(db)
    cache = IdentityCache(ttl_s=TTL)

    async def main() -> float:
        assert await cache.identity(token, checks) is not None
        loop = asyncio.get_running_loop()
        with db.transaction(write=True) as connection:
            assert tokens.revoke(connection, "leaving")
        revoked_at = loop.time()
        while await cache.identity(token, checks) is not None:
            assert loop.time() - revoked_at < TTL + 0.1, "served past its time to live"
            await asyncio.sleep(0.01)
        return loop.time() - revoked_at

    refused_after = asyncio.run(main())
    print(f"revoked token refused after {refused_after * 1000:.0f} ms (ttl {TTL * 1000:.0f} ms)")


def test_failures_are_not_cached_and_a_new_token_works_at_once(db: Database) -> None:
    checks = CountedChecks(db)
    cache = IdentityCache(ttl_s=TTL)

    async def main() -> None:
        assert await cache.identity("grove_0123456789abcdef_" + "x" * 43, checks) is None
        assert await cache.identity("grove_0123456789abcdef_" + "x" * 43, checks) is None
        assert checks.calls == 2
        token = _token(db, "new")
        assert await cache.identity(token, checks) is not None

    asyncio.run(main())


def test_a_check_that_fails_reaches_its_callers_and_leaves_nothing_unretrieved(
    db: Database,
) -> None:
    token = _token(db)
    cache = IdentityCache(ttl_s=TTL)

    def unreachable(_: str) -> tokens.Identity | None:
        raise ConnectionError("registry unreachable")

    reported: list[dict[str, object]] = []

    async def main() -> list[object]:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reported.append(context)
        )
        outcomes = await asyncio.gather(
            *(cache.identity(token, unreachable) for _ in range(5)), return_exceptions=True
        )
        gc.collect()  # an unretrieved task exception is reported when the task is collected
        return outcomes

    outcomes = asyncio.run(main())
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert reported == []
    # the database is back: the next call checks again and succeeds
    assert asyncio.run(cache.identity(token, CountedChecks(db))) is not None
