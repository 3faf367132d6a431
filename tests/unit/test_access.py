"""Access rules (services/access.py): accounts, scoped tokens, bound tokens, model lists and budgets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mock_server.config import Settings
from mock_server.errors import Forbidden, TooMany
from mock_server.services.access import (
    SessionBudgets,
    check_creation,
    check_session_access,
    owner_for,
    session_duration_limit,
)
from mock_server.services.tokens import Principal, Scope, TokenService, account_for_api_key

SETTINGS = replace(Settings(), jwt_secret="k" * 40)
NOW = 1_800_000_000.0


def _token(api_key: str, detail: dict[str, Any] | None = None, **mint: Any) -> Principal:
    """Mint with the real service and authenticate, as a route would."""
    service = TokenService(SETTINGS)
    body = {"authorization_details": [detail]} if detail else None
    account = account_for_api_key(api_key)
    token = service.mint(api_key, body, open_session_account=lambda _sid: account, now=NOW, **mint)["jwt"]
    return service.authenticate(f"Bearer {token}", now=NOW)


def _detail(models: list[str] | None = None, bind: list[str] | None = None, **constraints: Any) -> dict:
    resources: dict[str, Any] = {"models": {"match": models} if models else {"all": True}}
    if bind:
        resources["sessions"] = {"bind": bind}
    return {"type": "session", "resources": resources, "constraints": constraints}


def test_two_accounts_cannot_act_on_each_others_sessions() -> None:
    a, b = _token("rk_a"), _token("rk_b")
    session_of_a = owner_for(a, "sess_a")
    check_session_access(a, session_of_a)
    with pytest.raises(Forbidden, match="belongs to another account"):
        check_session_access(b, session_of_a)
    opaque_a = TokenService(SETTINGS).authenticate("Bearer token-a")
    opaque_b = TokenService(SETTINGS).authenticate("Bearer token-b")
    with pytest.raises(Forbidden, match="another account"):
        check_session_access(opaque_b, owner_for(opaque_a, "sess_x"))
    check_session_access(opaque_a, owner_for(opaque_a, "sess_x"))


def test_a_bound_scope_does_not_cross_accounts() -> None:
    intruder = Principal(
        account="acct_other",
        token_id="tok_1",
        kind="jwt",
        scope=Scope(models=None, bound=frozenset({"sess_a"}), max_sessions=None, max_session_duration=None),
    )
    with pytest.raises(Forbidden, match="another account"):
        check_session_access(intruder, owner_for(_token("rk_a"), "sess_a"))


def test_unscoped_token_acts_for_its_whole_account() -> None:
    creator = _token("rk_a", _detail(["helios"]))
    session = owner_for(creator, "sess_1")
    check_session_access(_token("rk_a"), session)  # another, unscoped token of the same key


def test_scoped_token_acts_only_on_sessions_it_created_or_is_bound_to() -> None:
    creator = _token("rk_a", _detail(["helios"]))
    session = owner_for(creator, "sess_1")
    check_session_access(creator, session)
    sibling = _token("rk_a", _detail(["helios"]))  # same key, same scope, different token
    with pytest.raises(Forbidden, match=r"scoped and did not create .*sessions.bind"):
        check_session_access(sibling, session)
    bound = _token("rk_a", _detail(bind=["sess_1"]))
    check_session_access(bound, session)
    with pytest.raises(Forbidden):
        check_session_access(bound, owner_for(creator, "sess_2"))


def test_model_list_is_enforced_at_creation() -> None:
    scoped = _token("rk", _detail(["reactor/helios"]))
    check_creation(scoped, "helios")
    check_creation(scoped, "reactor/helios")
    other = _token("rk", _detail(["reactor/lingbot"]))
    with pytest.raises(Forbidden, match="only for model"):
        check_creation(other, "helios")
    check_creation(_token("rk"), "helios")  # unscoped: any model
    check_creation(_token("rk", _detail()), "helios")  # {"all": true}


def test_a_bind_alone_cannot_create_sessions() -> None:
    with pytest.raises(Forbidden, match="cannot create sessions"):
        check_creation(_token("rk", _detail(bind=["sess_1"])), "helios")
    with pytest.raises(Forbidden, match="at most 1 sessions and is bound to 1"):
        check_creation(_token("rk", _detail(bind=["sess_1"], max_sessions=1)), "helios")
    check_creation(_token("rk", _detail(bind=["sess_1"], max_sessions=2)), "helios")


def test_max_sessions_budget_counts_every_creation() -> None:
    budgets = SessionBudgets()
    token = _token("rk", _detail(["helios"], max_sessions=2))
    budgets.charge(token, NOW)
    budgets.charge(token, NOW)
    with pytest.raises(Forbidden, match="at most 2 sessions and has created 2"):
        budgets.charge(token, NOW)
    assert budgets.used(token.token_id) == 2
    fresh = _token("rk", _detail(["helios"], max_sessions=2))  # a new token of the same key: a new budget
    budgets.charge(fresh, NOW)


def test_bound_sessions_count_against_max_sessions() -> None:
    budgets = SessionBudgets()
    token = _token("rk", _detail(bind=["sess_1", "sess_2"], max_sessions=3))
    budgets.charge(token, NOW)
    with pytest.raises(Forbidden, match="at most 1 sessions"):
        budgets.charge(token, NOW)


def test_unlimited_tokens_are_not_tracked() -> None:
    budgets = SessionBudgets()
    for principal in (_token("rk"), _token("rk", _detail(["helios"]))):
        for _ in range(3):
            budgets.charge(principal, NOW)
    assert len(budgets) == 0


def test_budgets_are_pruned_at_expiry_and_bounded() -> None:
    budgets = SessionBudgets(capacity=2)
    first = _token("rk", _detail(["helios"], max_sessions=5))  # expires at NOW + 3600 (default ttl)
    budgets.charge(first, NOW)
    budgets.charge(_token("rk", _detail(["helios"], max_sessions=5)), NOW)
    with pytest.raises(TooMany, match="at most 2 live token budgets"):
        budgets.charge(_token("rk", _detail(["helios"], max_sessions=5)), NOW)
    budgets.charge(first, NOW)  # an already tracked token keeps working at capacity
    assert first.expires_at is not None
    budgets.prune(first.expires_at)
    assert len(budgets) == 0
    budgets.charge(_token("rk", _detail(["helios"], max_sessions=5)), first.expires_at)
    assert len(budgets) == 1


def test_session_duration_limit() -> None:
    settings = replace(SETTINGS, max_session_duration=1200.0)
    assert session_duration_limit(_token("rk"), settings) == 1200.0
    assert (
        session_duration_limit(_token("rk", _detail(["helios"], max_session_duration_seconds=90)), settings)
        == 90
    )
    long = _token("rk", _detail(["helios"], max_session_duration_seconds=86_400))
    assert session_duration_limit(long, settings) == 1200.0
