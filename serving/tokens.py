"""Bearer tokens: one per instance (its agent), administrator tokens, and collector
tokens (telemetry collectors, which may post readings and nothing else).

A token is 32 random bytes from :mod:`secrets`, shown once when issued; the store
keeps only its SHA-256 digest. Revoking a token takes effect on the next request in
this process and within ``cache_seconds`` in any other (each token is trusted for 75 to
100 % of it, so that tokens first seen together are not read again together).
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market.clock import from_micros, to_micros
from market.ledger import read_connection
from serving.tables import api_tokens

TOKEN_PREFIX = "cx_"


class TokenKind(StrEnum):
    """Who a token speaks for: one instance's agent, an administrator, or a telemetry
    collector (posts readings, nothing else)."""

    AGENT = "agent"
    ADMIN = "admin"
    COLLECTOR = "collector"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a valid token stands for.

    ``subject`` is the instance id of an agent, the administrator's name (the actor
    the CEM audits), or the collector's name.
    """

    token_id: str
    kind: TokenKind
    subject: str

    @property
    def is_admin(self) -> bool:
        """Return whether the caller is an administrator."""
        return self.kind is TokenKind.ADMIN

    @property
    def is_agent(self) -> bool:
        """Return whether the caller is an instance's agent."""
        return self.kind is TokenKind.AGENT

    @property
    def is_collector(self) -> bool:
        """Return whether the caller is a telemetry collector."""
        return self.kind is TokenKind.COLLECTOR


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token, without its secret."""

    token_id: str
    kind: TokenKind
    subject: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly issued token: the secret appears here and nowhere else."""

    record: TokenRecord
    token: str


def token_digest(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenStore:
    """Issue, revoke and check bearer tokens kept as SHA-256 digests in SQL.

    Parameters
    ----------
    engine
        The creditx store holding the ``api_tokens`` table.
    clock
        Stamps issue and revocation times.
    cache_seconds
        How long a valid token is trusted without reading the store again.
    """

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        *,
        cache_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._monotonic = monotonic
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def issue(self, kind: TokenKind, subject: str) -> IssuedToken:
        """Create a token for an agent, an administrator or a collector; return it once."""
        if not subject or len(subject) > 200:
            raise ValueError(f"a token subject must hold 1 to 200 characters, got {subject!r}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        record = TokenRecord(uuid.uuid4().hex[:16], TokenKind(kind), subject, now, None)
        with self._engine.begin() as conn:
            conn.execute(
                api_tokens.insert().values(
                    token_id=record.token_id,
                    token_hash=token_digest(token),
                    kind=record.kind.value,
                    subject=subject,
                    created_at_us=to_micros(now),
                    revoked_at_us=None,
                )
            )
        return IssuedToken(record, token)

    def revoke(self, token_id: str) -> TokenRecord | None:
        """Revoke a token by its id; return its record, or ``None`` if there is none."""
        now = to_micros(self._clock())
        with self._engine.begin() as conn:
            conn.execute(
                api_tokens.update()
                .where(api_tokens.c.token_id == token_id, api_tokens.c.revoked_at_us.is_(None))
                .values(revoked_at_us=now)
            )
            row = conn.execute(
                sa.select(api_tokens).where(api_tokens.c.token_id == token_id)
            ).first()
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[0].token_id != token_id}
        return None if row is None else _record(row)

    def get(self, token_id: str) -> TokenRecord | None:
        """Return a token's record by id, or ``None``."""
        with read_connection(self._engine) as conn:
            row = conn.execute(
                sa.select(api_tokens).where(api_tokens.c.token_id == token_id)
            ).first()
        return None if row is None else _record(row)

    def list(self, *, subject: str | None = None) -> list[TokenRecord]:
        """Return every token record (of one subject if given), oldest first."""
        query = sa.select(api_tokens).order_by(api_tokens.c.created_at_us, api_tokens.c.token_id)
        if subject is not None:
            query = query.where(api_tokens.c.subject == subject)
        with read_connection(self._engine) as conn:
            return [_record(r) for r in conn.execute(query)]

    def cached(self, token: str) -> Principal | None:
        """Return the principal of a token trusted from the cache, reading no store."""
        cached = self._cache.get(token_digest(token))
        if cached is not None and cached[1] > self._monotonic():
            return cached[0]
        return None

    def authenticate(self, token: str) -> Principal | None:
        """Return the principal of a valid token, or ``None`` if it is unknown or revoked."""
        digest = token_digest(token)
        now = self._monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        with read_connection(self._engine) as conn:
            row = conn.execute(
                sa.select(api_tokens).where(api_tokens.c.token_hash == digest)
            ).first()
        if row is None or row.revoked_at_us is not None:
            with self._lock:
                self._cache.pop(digest, None)
            return None
        principal = Principal(row.token_id, TokenKind(row.kind), row.subject)
        # spread the expiries, so tokens first seen together are not read again together
        trusted = self._cache_seconds * (1.0 - 0.25 * random.random())
        with self._lock:
            self._cache[digest] = (principal, now + trusted)
        return principal


def _record(row: sa.Row) -> TokenRecord:
    return TokenRecord(
        row.token_id,
        TokenKind(row.kind),
        row.subject,
        from_micros(row.created_at_us),
        None if row.revoked_at_us is None else from_micros(row.revoked_at_us),
    )
