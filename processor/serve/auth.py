"""API keys: a YAML file ``keys: [{key: K, tenants: [T, ...]} | {key: K, admin: true}]``.

A request names its key in ``Authorization: Bearer K`` (or ``X-API-Key: K``). Without a keys
file every request is an admin's (the server then only binds a loopback address)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
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
