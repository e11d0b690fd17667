"""Bearer tokens for the write endpoints: ``RLREG_SERVE_TOKENS="alice:TOKEN,ci:sha256:HEX"``.

Each entry names who holds the token (the actor of the events its writes record) and either the
token itself or its SHA-256 (``sha256:`` and 64 hex digits), so the secret need not sit in the
environment of the server. Only digests are kept in memory; a presented token is hashed and compared
with every digest in constant time (``hmac.compare_digest``, no early exit), so neither the
comparison nor the order of the entries tells how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from rlreg.web.errors import BadParameterError, UnauthorizedError

_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,100}")
_HEX = re.compile(r"[0-9a-f]{64}")
MIN_TOKEN_LENGTH = 16


class TokenSettingError(BadParameterError):
    """``RLREG_SERVE_TOKENS`` that cannot be parsed."""


def digest(token: str) -> bytes:
    """The SHA-256 of a token's UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class Tokens:
    """``(name, sha256 digest)`` pairs: who may write, and how to recognise them."""

    entries: tuple[tuple[str, bytes], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    @property
    def names(self) -> list[str]:
        """The names of the token holders."""
        return [name for name, _ in self.entries]

    def holder(self, token: str) -> str | None:
        """The name whose token this is, or ``None``; every entry is compared, in constant time each."""
        presented = digest(token)
        found = None
        for name, expected in self.entries:
            if hmac.compare_digest(presented, expected) and found is None:
                found = name
        return found

    def authorize(self, header: str | None) -> str:
        """The actor named by an ``Authorization: Bearer <token>`` header, else ``UnauthorizedError``."""
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("writes need an 'Authorization: Bearer <token>' header")
        name = self.holder(token.strip())
        if name is None:
            raise UnauthorizedError("the bearer token matches none of RLREG_SERVE_TOKENS")
        return name


def parse_tokens(text: str | None) -> Tokens:
    """Parse ``name:token`` / ``name:sha256:HEX`` entries separated by commas."""
    entries: list[tuple[str, bytes]] = []
    for number, raw in enumerate((text or "").split(","), start=1):
        item = raw.strip()
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep or not _NAME.fullmatch(name):
            raise TokenSettingError(
                f"RLREG_SERVE_TOKENS entry {number}: expected NAME:TOKEN or NAME:sha256:HEX with NAME of "
                "letters, digits and ._@+- (1-100 characters)"
            )
        if name in {n for n, _ in entries}:
            raise TokenSettingError(f"RLREG_SERVE_TOKENS: the name {name!r} appears twice")
        entries.append((name, _secret_digest(name, secret)))
    return Tokens(tuple(entries))


def _secret_digest(name: str, secret: str) -> bytes:
    if secret.startswith("sha256:"):
        hexdigest = secret[len("sha256:"):].lower()
        if not _HEX.fullmatch(hexdigest):
            raise TokenSettingError(f"RLREG_SERVE_TOKENS entry {name!r}: sha256: needs 64 hex digits")
        return bytes.fromhex(hexdigest)
    if len(secret) < MIN_TOKEN_LENGTH:
        raise TokenSettingError(
            f"RLREG_SERVE_TOKENS entry {name!r}: the token has {len(secret)} characters, at least "
            f"{MIN_TOKEN_LENGTH} are needed (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return digest(secret)
