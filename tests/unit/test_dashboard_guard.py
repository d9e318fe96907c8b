"""The dashboard's door (runtime/services/dashboard/guard.py), in process: its login token
new with each start, the Host it answers to, sessions, and what an action needs. Against
the real process: tests/e2e/test_dashboard.py."""

from __future__ import annotations

import pytest

from msshop.contracts.credentials import dashboard_login, service_credential
from msshop.runtime.services.dashboard.guard import MAX_SESSIONS, Guard, Refused

TOKEN = dashboard_login(service_credential("sandbox-token", "ui"), 4242)


def test_the_login_token_is_new_for_each_start_and_each_sandbox() -> None:
    credential = service_credential("sandbox-token", "ui")
    assert dashboard_login(credential, 4242) == TOKEN
    assert dashboard_login(credential, 4243) != TOKEN  # the dashboard started again
    assert dashboard_login(service_credential("another", "ui"), 4242) != TOKEN
    # a service's own credential (what a program of your own is given) makes another one
    assert dashboard_login(service_credential("sandbox-token", "query"), 4242) != TOKEN


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000"])
def test_a_loopback_name_with_its_port_is_let_in(host: str) -> None:
    Guard(8000, TOKEN).host(host)


@pytest.mark.parametrize("host", [None, "", "127.0.0.1", "127.0.0.1:8001", "evil.example:8000",
                                  "127.0.0.1.nip.io:8000", "LOCALHOST:8000x"])
def test_any_other_host_is_refused(host: str | None) -> None:
    with pytest.raises(Refused) as refused:
        Guard(8000, TOKEN).host(host)
    assert refused.value.status == 403
    assert "open http://127.0.0.1:8000/" in refused.value.message


def test_a_session_needs_the_right_token_and_its_cookie() -> None:
    guard = Guard(8000, TOKEN)
    for wrong in ("", "x", TOKEN[:-1], TOKEN + "0"):
        with pytest.raises(Refused):
            guard.log_in(wrong)
    sid, session = guard.log_in(TOKEN)
    assert guard.session({guard.cookie: sid}) is session
    assert guard.cookie == "msshop-ui-8000"
    with pytest.raises(Refused) as refused:
        guard.session({"msshop-ui-8001": sid})  # another dashboard's cookie name
    assert refused.value.status == 401
    guard.log_out({guard.cookie: sid})
    with pytest.raises(Refused):
        guard.session({guard.cookie: sid})


def test_an_action_needs_the_csrf_token_and_the_same_origin() -> None:
    guard = Guard(8000, TOKEN)
    _, session = guard.log_in(TOKEN)
    host = "127.0.0.1:8000"
    guard.action(session, session.csrf, f"http://{host}", host)
    for csrf, origin in ((None, f"http://{host}"), ("guess", f"http://{host}"),
                         (session.csrf, None), (session.csrf, "http://evil.example"),
                         (session.csrf, f"https://{host}")):
        with pytest.raises(Refused) as refused:
            guard.action(session, csrf, origin, host)
        assert refused.value.status == 403


def test_sessions_are_bounded_the_oldest_going_first() -> None:
    guard = Guard(8000, TOKEN)
    first, _ = guard.log_in(TOKEN)
    for _ in range(MAX_SESSIONS):
        last, _ = guard.log_in(TOKEN)
    with pytest.raises(Refused):
        guard.session({guard.cookie: first})
    guard.session({guard.cookie: last})
