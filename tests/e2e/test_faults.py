"""Faults a viewer triggers on purpose, to see what msshop does about them: a service made to
open another's database (the isolation guard refuses, says so, opens nothing), and a poison
event on the bus (the query service dead-letters it and goes on). Both need the sandbox's
token, like chaos."""

from __future__ import annotations

import json
import time

from tests.conftest import Sandbox


def test_a_trespass_is_refused_by_the_guard_and_nothing_is_opened(shared_sandbox: Sandbox
                                                                  ) -> None:
    sandbox = shared_sandbox
    result = sandbox.run("trespass", "users", "--into", "orders", check=True,
                         env_extra={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in result.splitlines() if "/" not in line) <= 80, \
        "all but the guard's words, which quote paths as they are"
    answer = json.loads(sandbox.run("trespass", "products", "--into", "query", "--json",
                                    check=True).stdout)
    assert answer["service"] == "products" and answer["into"] == "query"
    assert answer["tried"] == str(sandbox.root / "data" / "query" / "query.db")
    assert answer["refused"].startswith("isolation guard: service 'products' may open only")
    orders_db = sandbox.root / "data" / "orders" / "orders.db"
    assert result.startswith("users tried to open orders.db, the orders service's file;\n"
                             "the isolation guard refused:")
    assert f"refused to open {orders_db}" in result
    log = (sandbox.root / "logs" / "users.log").read_text()
    assert "trespass, on purpose: isolation guard: service 'users' may open only its own " \
           "database" in log
    assert sandbox.status()["services"][1]["health"] == "ok", "users goes on"
    client = sandbox.client()
    status, answer = client.exchange("users", "POST", "/chaos/trespass", {"into": "orders"})
    assert status == 401 and "needs the sandbox's token" in answer["error"]
    for args, says in [
        (("trespass", "users", "--into", "users"), "--into 'users': name another service"),
        (("trespass", "users", "--into", "nope"), "--into 'nope': name another service"),
        (("trespass", "nope", "--into", "orders"), "unknown service 'nope'"),
    ]:
        bad = sandbox.run(*args)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)


def test_a_poison_event_is_dead_lettered_and_the_read_model_goes_on(any_sandbox: Sandbox
                                                                    ) -> None:
    sandbox = any_sandbox
    said = sandbox.run("poison", check=True, env_extra={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in said.splitlines()) <= 80
    position = int(said.split("bus position ")[1].split(";")[0].replace(",", ""))
    again = json.loads(sandbox.run("poison", "--json", check=True).stdout)
    assert again == {"type": "Poison", "source": "users", "position": position + 1}
    deadline = time.monotonic() + 10
    while True:
        listed = sandbox.run("deadletters", check=True).stdout
        if f"{position:>7} Poison" in listed or f" {position} Poison" in listed:
            break
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    assert "unknown event type 'Poison'" in listed
    sandbox.run("signup", "--email", "after-poison@example.com", "--name", "P", check=True)
    verified = sandbox.run("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
