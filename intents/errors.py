"""The one error tree of symphainy. Only these errors cross the bus, each with a stable wire code.

    SymphainyError                      internal
    ├── InvalidIntent                   invalid_intent
    ├── AuthenticationFailed            invalid_credentials
    ├── TokenInvalid                    token_invalid
    ├── TokenExpired                    token_expired
    ├── NotFound                        not_found
    │   ├── SessionNotFound             session_not_found
    │   ├── UserNotFound                user_not_found
    │   └── AgentNotFound               agent_not_found
    ├── SessionInactive                 session_inactive
    │   ├── SessionRevoked              session_revoked
    │   └── SessionExpired              session_expired
    ├── Conflict                        conflict
    │   ├── UserExists                  user_exists
    │   └── WriteConflict               write_conflict      (retryable)
    ├── ExternalLoginFailed             login_failed
    │   ├── LoginCancelled              login_cancelled
    │   ├── LoginStateInvalid           login_state_invalid
    │   ├── AuthorizationCodeInvalid    authorization_code_invalid
    │   ├── IdTokenInvalid              id_token_invalid
    │   └── HandoverInvalid             handover_invalid
    ├── ProviderUnavailable             provider_unavailable (retryable)
    ├── RateLimited                     rate_limited        (retryable)
    ├── RuntimeUnavailable              runtime_unavailable (retryable)
    ├── DeadlineExceeded                deadline_exceeded   (retryable)
    └── RunLimitExceeded                run_limit_exceeded

An error reply on the wire is ``{"ok": false, "error": {"code", "message", "retryable"}}``, plus
``retry_after_s`` where the error knows when to try again; ``error_from_wire`` turns it back into
the matching class.
"""

from __future__ import annotations

from typing import ClassVar


class SymphainyError(Exception):
    """Base of every error that symphainy raises on purpose."""

    code: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, retry_after: int | None = None) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after  # seconds, when the error knows when to try again
        super().__init__(self.message)


class InvalidIntent(SymphainyError):
    """The intent or its payload failed validation."""

    code = "invalid_intent"
    default_message = "invalid intent"


class AuthenticationFailed(SymphainyError):
    """Unknown user or wrong password; deliberately indistinguishable."""

    code = "invalid_credentials"
    default_message = "invalid username or password"


class TokenInvalid(SymphainyError):
    """The session token is missing, malformed, badly signed or lacks a claim."""

    code = "token_invalid"
    default_message = "invalid session token"


class TokenExpired(SymphainyError):
    """The session token's ``exp`` has passed."""

    code = "token_expired"
    default_message = "session token expired"


class NotFound(SymphainyError):
    """Something named by the caller does not exist (or is not the caller's)."""

    code = "not_found"
    default_message = "not found"


class SessionNotFound(NotFound):
    """No such session, or it belongs to someone else."""

    code = "session_not_found"
    default_message = "session not found"


class UserNotFound(NotFound):
    """No such user."""

    code = "user_not_found"
    default_message = "user not found"


class AgentNotFound(NotFound):
    """No agent of that name runs here."""

    code = "agent_not_found"
    default_message = "no such agent"


class SessionInactive(SymphainyError):
    """The session exists but can no longer be used."""

    code = "session_inactive"
    default_message = "session is not active"


class SessionRevoked(SessionInactive):
    """The session was revoked (logout, admin, user removal)."""

    code = "session_revoked"
    default_message = "session revoked"


class SessionExpired(SessionInactive):
    """The session passed its idle timeout or absolute lifetime."""

    code = "session_expired"
    default_message = "session expired"


class Conflict(SymphainyError):
    """The write conflicts with the current state."""

    code = "conflict"
    default_message = "conflict"


class UserExists(Conflict):
    """A user of that name already exists."""

    code = "user_exists"
    default_message = "user already exists"


class WriteConflict(Conflict):
    """A compare-and-set write kept losing to concurrent writers."""

    code = "write_conflict"
    retryable = True
    default_message = "concurrent update, retry"


class ExternalLoginFailed(SymphainyError):
    """A login through an OpenID provider did not succeed (the provider said no, or sent junk)."""

    code = "login_failed"
    default_message = "the login through the identity provider failed"


class LoginCancelled(ExternalLoginFailed):
    """The user cancelled at the provider (``error=access_denied``)."""

    code = "login_cancelled"
    default_message = "the login was cancelled at the identity provider"


class LoginStateInvalid(ExternalLoginFailed):
    """The callback's ``state`` is missing, expired, or not the one this browser started with."""

    code = "login_state_invalid"
    default_message = "this login was not started here, or took too long; start again"


class AuthorizationCodeInvalid(ExternalLoginFailed):
    """The provider refused the authorization code (made up, used already, or expired)."""

    code = "authorization_code_invalid"
    default_message = "the identity provider refused the authorization code; start again"


class IdTokenInvalid(ExternalLoginFailed):
    """The ID token failed a check: signature, issuer, audience, nonce, expiry or a claim."""

    code = "id_token_invalid"
    default_message = "the identity provider's ID token is not valid"


class HandoverInvalid(ExternalLoginFailed):
    """The one-time handover code is unknown, used already, or expired."""

    code = "handover_invalid"
    default_message = "the login code is unknown, used or expired; log in again"


class ProviderUnavailable(SymphainyError):
    """The identity provider did not answer, or not with what OpenID Connect requires."""

    code = "provider_unavailable"
    retryable = True
    default_message = "the identity provider is unavailable"


class RateLimited(SymphainyError):
    """Too many attempts; back off for ``retry_after`` seconds (on the wire: ``retry_after_s``)."""

    code = "rate_limited"
    retryable = True
    default_message = "too many requests"


class RuntimeUnavailable(SymphainyError):
    """No runtime worker answered (none running, NATS down, or no reply in time)."""

    code = "runtime_unavailable"
    retryable = True
    default_message = "runtime unavailable"


class DeadlineExceeded(SymphainyError):
    """The intent's deadline passed before it could be executed."""

    code = "deadline_exceeded"
    retryable = True
    default_message = "deadline exceeded"


class RunLimitExceeded(SymphainyError):
    """An agent run sent more events or bytes than one run may (``agent_max_*_per_run``)."""

    code = "run_limit_exceeded"
    default_message = "the run sent more than it may"


def _all_subclasses(cls: type[SymphainyError]) -> list[type[SymphainyError]]:
    found: list[type[SymphainyError]] = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[SymphainyError]] = {
    cls.code: cls for cls in _all_subclasses(SymphainyError)
}


def error_from_wire(code: str, message: str, retry_after: int | None = None) -> SymphainyError:
    """Rebuild the error class named by a wire code; unknown codes become the base class."""
    return ERRORS_BY_CODE.get(code, SymphainyError)(message, retry_after)
