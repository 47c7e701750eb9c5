"""JWT issued by the platform's auth service: decoding (pinned algorithm, `exp` required) and,
for operators and development, issuing.

Roles are compared exactly: `CLIENT`, `STAFF`, `ADMIN` as the contract spells them; any other
string (`admin`, `Admin`, the dotless `adm\u0131n` that `str.upper()` would turn into `ADMIN`) is an
unknown role (403). The user id is validated here, not by PyJWT: its `sub` check wants a string,
while the platform puts a number beside `user_id`. `aud` and `iss` are checked only when
`JWT_AUDIENCE` / `JWT_ISSUER` are set (then required); unset, a token carrying them is accepted.

A token that decoded is remembered (at most `ACCEPTED_CACHE_SIZE`, oldest forgotten first) with
the moment it expires: the same client sends the same token on every request, and verifying it
again costs about 80 µs of CPU (PyJWT's parsing and HMAC) against well under 1 µs for the lookup.
Only `exp` can change a verified token's answer over time (`nbf` and `iat` were already in the
past), so a remembered token is answered while `exp` + leeway is ahead and decoded again, and
refused, after. Refused tokens are never remembered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from jwt.types import Options

from llm_service.settings import ROLES, Settings

# The id columns are BIGINT; 19 digits bound the string before int() parses it (a 5,000-digit
# string would otherwise hit Python's int-parsing limit, a 500).
_MAX_USER_ID = 2**63 - 1
_MAX_USER_ID_DIGITS = len(str(_MAX_USER_ID))
ACCEPTED_CACHE_SIZE = 4096


class InvalidToken(Exception):
    """Any reason a token is not accepted; the reason is for logs, never for the client."""


class UnknownRole(Exception):
    """A valid token whose role this service does not know."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "ADMIN"


def _user_id(value: object) -> int:
    if isinstance(value, bool):
        raise InvalidToken("user id is a boolean")
    if isinstance(value, int):
        user_id = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value.lstrip("0")) > _MAX_USER_ID_DIGITS:
            raise InvalidToken("user id out of range")
        user_id = int(value)
    else:
        raise InvalidToken("user id is not an integer")
    if not 0 < user_id <= _MAX_USER_ID:
        raise InvalidToken("user id out of range")
    return user_id


class TokenDecoder:
    def __init__(self, settings: Settings) -> None:
        assert settings.jwt_secret
        self._secret = settings.jwt_secret
        self._algorithms = [settings.jwt_algorithm]
        self._leeway = settings.jwt_leeway_s
        self._id_claims = (settings.jwt_user_id_claim, settings.jwt_subject_claim)
        self._role_claim = settings.jwt_role_claim
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        required = ["exp"]
        if self._audience:
            required.append("aud")
        if self._issuer:
            required.append("iss")
        self._options: Options = {
            "require": required,
            "verify_aud": bool(self._audience),
            "verify_iss": bool(self._issuer),
            # Our own id check below; PyJWT's refuses the numeric `sub` the platform may send.
            "verify_sub": False,
            "verify_jti": False,
        }
        self._accepted: dict[str, tuple[Principal, float]] = {}

    def decode(self, token: str) -> Principal:
        remembered = self._accepted.get(token)
        if remembered is not None:
            principal, valid_until = remembered
            if time.time() < valid_until:
                return principal
            del self._accepted[token]
        principal, expires = self._decode(token)
        if len(self._accepted) >= ACCEPTED_CACHE_SIZE:
            del self._accepted[next(iter(self._accepted))]
        self._accepted[token] = (principal, expires + self._leeway)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        """The token verified by PyJWT: its principal and its `exp`."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=self._algorithms,
                options=self._options,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        raw_id = next((claims[c] for c in self._id_claims if claims.get(c) is not None), None)
        if raw_id is None:
            raise InvalidToken("no user id claim")
        role = claims.get(self._role_claim)
        if role is None or role == "":
            role = "CLIENT"
        if role not in ROLES:
            raise UnknownRole()
        return Principal(user_id=_user_id(raw_id), role=role), float(claims["exp"])


def issue_token(settings: Settings, *, user_id: int, role: str, ttl_s: int = 86_400) -> str:
    """A token the way the platform's auth service makes them (for curl, operators and tests)."""
    assert settings.jwt_secret
    now = int(time.time())
    claims = {
        settings.jwt_user_id_claim: user_id,
        settings.jwt_subject_claim: str(user_id),
        settings.jwt_role_claim: role,
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
