"""Access rules: who may create and operate a production session (docs/HELIOS.md §10 "Token scope").

* An unscoped token (minted without `authorization_details`, an opaque bearer string, the static test
  token) acts for its whole account: it may operate every session of that account.
* A scoped token operates only the sessions it created or is bound to (`sessions.bind`), may create
  sessions only on its models, at most `max_sessions` in its lifetime (the bound ones count), and the
  sessions it creates end after `max_session_duration_seconds`.
* A token of another account gets 403, whatever its scope.

Local mode is unauthenticated and never reaches these rules.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from mock_server.config import Settings
from mock_server.errors import Forbidden, TooMany
from mock_server.services.tokens import Principal, normalise_model

MAX_TRACKED_BUDGETS = 10_000  # live scoped tokens with a `max_sessions` budget the server remembers


@dataclass(frozen=True)
class SessionOwner:
    """Recorded on a production session when it is created."""

    session_id: str
    account: str
    creator_token_id: str


def owner_for(principal: Principal, session_id: str) -> SessionOwner:
    """The owner record of a session `principal` has just created."""
    return SessionOwner(session_id=session_id, account=principal.account, creator_token_id=principal.token_id)


def check_session_access(principal: Principal, owner: SessionOwner) -> None:
    """Raise `Forbidden` unless `principal` may read or operate the session `owner` describes."""
    if principal.account != owner.account:
        raise Forbidden(
            f"session {owner.session_id!r} belongs to another account; "
            "only tokens of the account that created it may use it"
        )
    scope = principal.scope
    if scope is None or principal.token_id == owner.creator_token_id or owner.session_id in scope.bound:
        return
    raise Forbidden(
        f"this token is scoped and did not create session {owner.session_id!r}; mint a token bound to it "
        f'(authorization_details[0].resources.sessions.bind = ["{owner.session_id}"])'
    )


def check_creation(principal: Principal, model_name: str) -> None:
    """Raise `Forbidden` if `principal`'s scope does not allow creating a session of `model_name`."""
    scope = principal.scope
    if scope is None:
        return
    if scope.models is not None and normalise_model(model_name) not in scope.models:
        allowed = ", ".join(sorted(scope.models))
        raise Forbidden(f"this token may create sessions only for model(s) {allowed}, not {model_name!r}")
    if scope.creation_allowance == 0:
        if scope.max_sessions is None:
            raise Forbidden(
                "this token is bound to existing sessions and has no max_sessions: it cannot create sessions"
            )
        raise Forbidden(
            f"this token may hold at most {scope.max_sessions} sessions and is bound to "
            f"{len(scope.bound)}; it cannot create more"
        )


def session_duration_limit(principal: Principal, settings: Settings) -> float:
    """Seconds a session created by `principal` may run: the server's maximum, or less if the token says."""
    limit = principal.scope.max_session_duration if principal.scope else None
    if limit is None:
        return settings.max_session_duration
    return min(float(limit), settings.max_session_duration)


class SessionBudgets:
    """How many sessions each scoped token has created, forgotten when the token expires.

    Bounded: at most `capacity` live budgets; beyond that creation is refused (429) until some expire.
    """

    def __init__(self, capacity: int = MAX_TRACKED_BUDGETS) -> None:
        self.capacity = capacity
        self._used: dict[str, int] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (expires_at, token_id)

    def used(self, token_id: str) -> int:
        return self._used.get(token_id, 0)

    def __len__(self) -> int:
        return len(self._used)

    def charge(self, principal: Principal, now: float) -> None:
        """Count one more session against `principal`'s budget; raise `Forbidden` when it is spent.

        Call after every other check passed, right before the session is created.
        """
        scope = principal.scope
        allowance = scope.creation_allowance if scope else None
        if allowance is None:
            return  # unscoped, or scoped without max_sessions: no token budget
        self.prune(now)
        used = self._used.get(principal.token_id, 0)
        if used >= allowance:
            raise Forbidden(f"this token may create at most {allowance} sessions and has created {used}")
        if used == 0:
            if len(self._used) >= self.capacity:
                raise TooMany(
                    f"the mock tracks at most {self.capacity} live token budgets; retry when some expire",
                    {"Retry-After": "60"},
                )
            heapq.heappush(self._expiry, (principal.expires_at or now, principal.token_id))
        self._used[principal.token_id] = used + 1

    def prune(self, now: float) -> None:
        """Forget the budgets of tokens that have expired (they can create nothing any more)."""
        while self._expiry and self._expiry[0][0] <= now:
            _, token_id = heapq.heappop(self._expiry)
            self._used.pop(token_id, None)

    def clear(self) -> None:
        self._used.clear()
        self._expiry.clear()
