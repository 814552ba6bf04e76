"""Who may use the HTTP server: the bearer token of the POST endpoints, and the host names.

Every POST needs ``Authorization: Bearer <token>``, compared in constant time (through SHA-256
digests, so the lengths do not leak either); a server without a token refuses POSTs with 403, a
missing or wrong token gets 401. When listening on a loopback address, requests must name a
loopback host (:func:`allowed_hosts`), so a web page cannot reach the server through DNS
rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from pydantic import SecretStr

__all__ = ["BearerToken", "Refusal", "allowed_hosts", "is_loopback"]

_LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1", "[::1]"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(hosts: list[str] | None, listen_host: str) -> list[str]:
    """The host names requests may name: ``hosts`` when given; otherwise the loopback names
    when listening on the loopback address ``listen_host``, any (``*``) when not."""
    if hosts is not None:
        return hosts
    return _LOOPBACK_NAMES if is_loopback(listen_host) else ["*"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not go on: the HTTP status, the error to show and headers to add."""

    status: int
    error: str
    headers: dict[str, str] | None = None


class BearerToken:
    """The check of the token a POST carries against ``token`` (``None``: every POST refused)."""

    def __init__(self, token: SecretStr | None) -> None:
        self._digest = (
            hashlib.sha256(token.get_secret_value().encode()).digest()
            if token is not None
            else None
        )

    def refusal(self, authorization: str) -> Refusal | None:
        """The refusal of a request whose ``Authorization`` header is ``authorization``, or
        ``None`` when it carries the token."""
        if self._digest is None:
            return Refusal(
                403,
                "POST endpoints are off: the server has no token "
                "(give one with --token or DUCTWORK_TOKEN)",
            )
        scheme, _, given = authorization.partition(" ")
        digest = hashlib.sha256(given.strip().encode()).digest()
        if scheme.lower() == "bearer" and hmac.compare_digest(digest, self._digest):
            return None
        return Refusal(
            401,
            "a valid bearer token is needed (Authorization: Bearer <token>)",
            {"WWW-Authenticate": 'Bearer realm="ductwork"'},
        )
