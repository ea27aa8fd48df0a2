"""API keys: a YAML file ``keys: [{key: K, tenants: [T, ...]} | {key: K, admin: true}]``.

A request names its key in ``Authorization: Bearer K`` (or ``X-API-Key: K``). Without a keys
file every request is an admin's (the server then only binds a loopback address).

A browser's ``EventSource`` cannot send a header, so the stream also takes a stream token in its
query string: short-lived, signed by the server, carrying the scope of the key that asked for it
(or a narrower one), and accepted by ``/api/v1/stream`` only. The key itself never appears in
a URL (URLs end up in logs and histories); a leaked token reads one tenant's live changes for at
most its lifetime, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from processor.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: an admin (every tenant) or a key scoped to ``tenants``."""

    admin: bool
    tenants: frozenset[str] = frozenset()

    def sees(self, tenant_id: str | None) -> bool:
        """Whether a row of ``tenant_id`` (``None``: a row of no tenant) is visible."""
        return self.admin or (tenant_id is not None and tenant_id in self.tenants)


ADMIN = Principal(admin=True)


class ApiError(Exception):
    """An error answered as JSON ``{message, code}`` (and ``field`` for a bad parameter)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def tenant_scope(principal: Principal, requested: str | None) -> str | None:
    """The tenant a query keeps to: ``requested`` when visible; for a scoped key with no
    ``requested``, its only tenant. ``None`` (all tenants) only for an admin."""
    if principal.admin:
        return requested
    if requested is None:
        if len(principal.tenants) == 1:
            return next(iter(principal.tenants))
        raise ApiError(422, "invalid_parameter", "this key is scoped to several tenants: give ?tenant=", "tenant")
    if requested not in principal.tenants:
        raise ApiError(403, "forbidden_tenant", f"this key may not read tenant {requested!r}")
    return requested


@dataclass(frozen=True, slots=True)
class KeyRing:
    keys: tuple[tuple[str, Principal], ...]

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the keys file {path}: {exc}") from exc
        entries = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path}: expected 'keys:' with a list of {{key, tenants}} or {{key, admin: true}}")
        out: list[tuple[str, Principal]] = []
        for n, entry in enumerate(entries, 1):
            key = entry.get("key") if isinstance(entry, dict) else None
            if not isinstance(key, str) or len(key) < 16:
                raise ConfigError(f"{path}: key {n} must be a string of at least 16 characters")
            tenants = entry.get("tenants", [])
            if entry.get("admin") is True:
                out.append((key, ADMIN))
            elif isinstance(tenants, list) and tenants and all(isinstance(t, str) and t for t in tenants):
                out.append((key, Principal(admin=False, tenants=frozenset(tenants))))
            else:
                raise ConfigError(f"{path}: key {n} needs 'tenants: [..]' (non-empty names) or 'admin: true'")
        if len({k for k, _ in out}) != len(out):
            raise ConfigError(f"{path}: a key is listed twice")
        return cls(tuple(out))

    def principal(self, presented: str | None) -> Principal:
        if not presented:
            raise ApiError(401, "unauthorized", "an API key is required (Authorization: Bearer KEY)")
        found = None
        for key, principal in self.keys:  # compare every key in constant time
            if hmac.compare_digest(key.encode(), presented.encode()):
                found = principal
        if found is None:
            raise ApiError(401, "unauthorized", "unknown API key")
        return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


STREAM_TOKEN_TTL_MS = 60_000
"""How long a stream token may be used to connect (a connection outlives it)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class StreamTokens:
    """Issues and checks stream tokens ``<scope>.<expiry ms>.<hmac-sha256>``. The secret is
    random per server process, so a restart invalidates every token (a page asks again)."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    ttl_ms: int = STREAM_TOKEN_TTL_MS

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.secret, body.encode(), hashlib.sha256).digest())

    def issue(self, principal: Principal, now_ms: int) -> tuple[str, int]:
        """A token for ``principal`` and the time it expires (epoch ms)."""
        scope = "*" if principal.admin else ",".join(_b64(t.encode()) for t in sorted(principal.tenants))
        expires = now_ms + self.ttl_ms
        body = f"{scope}.{expires}"
        return f"{body}.{self._sign(body)}", expires

    def verify(self, token: str, now_ms: int) -> Principal:
        """The principal a token was issued for; 401 when forged, malformed or expired."""
        scope, _, rest = token.partition(".")
        expires, _, signature = rest.partition(".")
        if not signature or not hmac.compare_digest(self._sign(f"{scope}.{expires}"), signature):
            raise ApiError(401, "unauthorized", "not a stream token of this server (ask for a new one)")
        if not expires.isdigit() or int(expires) <= now_ms:
            raise ApiError(401, "token_expired", "the stream token has expired (ask for a new one)")
        if scope == "*":
            return ADMIN
        return Principal(admin=False, tenants=frozenset(_unb64(t).decode() for t in scope.split(",") if t))


def narrowed(principal: Principal, tenant: str | None) -> Principal:
    """``principal`` kept to ``tenant`` (403 when it may not read it); all it may read when ``None``."""
    if tenant is None:
        return principal
    tenant_scope(principal, tenant)
    return Principal(admin=False, tenants=frozenset({tenant}))
