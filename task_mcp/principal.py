"""The verified caller: `Principal`, and the organizations its token lists (DESIGN §2, §8).

`auth.JwtVerifier` builds a `Principal` from a token it has verified; this module only reads
claims that are already trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from task_mcp.errors import UnauthenticatedError

log = logging.getLogger("task_mcp.auth")

MAX_ORGANIZATIONS = 100
MAX_ORG_FIELD = 255


@dataclass(frozen=True)
class Organization:
    """A Better Auth organization the token lists, with the caller's role string in it."""

    id: str
    slug: str
    role: str
    name: str | None = None


@dataclass(frozen=True)
class Principal:
    """The verified caller: `user_id` (the token's `sub`), its scopes (None: a plain JWT, which holds
    both), and the organizations its token lists. Every read and write is scoped by a workspace."""

    user_id: str
    scopes: frozenset[str] | None
    claims: Mapping[str, Any] = field(repr=False)
    expires_at: int | None = None
    organizations: tuple[Organization, ...] = ()

    def has_scope(self, scope: str) -> bool:
        """A token without a `scope` claim (plain Better Auth JWT) may do everything."""
        return self.scopes is None or scope in self.scopes


def _short_string(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ORG_FIELD and "\x00" not in value


def parse_organizations(claims: Mapping[str, Any], claim: str) -> tuple[Organization, ...]:
    """The organizations listed in `claims[claim]`; an absent (or null) claim lists none.

    Raises:
        UnauthenticatedError: not a list, more than `MAX_ORGANIZATIONS` entries, or an entry
            without string `id`, `slug` and `role`.
    """
    value = claims.get(claim)
    if value is None:
        return ()
    bad = UnauthenticatedError(
        f"The token's '{claim}' claim (the caller's organizations) is malformed: it must be a list of at most "
        f"{MAX_ORGANIZATIONS} entries, each with string 'id', 'slug' and 'role' (1-{MAX_ORG_FIELD} characters). "
        "Fix the Better Auth payload that builds it (definePayload or customAccessTokenClaims), or set "
        "TASK_MCP_ORGANIZATIONS_CLAIM to the claim that holds them; then get a fresh JWT."
    )
    if not isinstance(value, list) or len(value) > MAX_ORGANIZATIONS:
        log.debug("token rejected: bad_organizations")
        raise bad
    found: dict[str, Organization] = {}
    for entry in value:
        if not isinstance(entry, dict) or not all(_short_string(entry.get(k)) for k in ("id", "slug", "role")):
            log.debug("token rejected: bad_organizations")
            raise bad
        name = entry.get("name")
        if name is not None and not isinstance(name, str):
            log.debug("token rejected: bad_organizations")
            raise bad
        org = Organization(entry["id"], entry["slug"], entry["role"], name[:MAX_ORG_FIELD] if name else None)
        found.setdefault(org.id, org)  # the same organization twice: the first entry counts
    return tuple(found.values())
