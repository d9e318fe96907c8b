"""Issue 9, findings 6 and 7: inputs that used to end in a 500 or a traceback, and the
smaller leaks. Each is tried against real services, or the real command; each must get a
clear answer (a 4xx naming the problem, or one line and a non-zero exit)."""

from __future__ import annotations

import http.client
import json
import os
import stat
from pathlib import Path

import pytest

from msshop.contracts.credentials import bearer
from msshop.contracts.limits import MAX_BODY, MAX_ID
from tests.cli_in_process import msshop_in_process
from tests.conftest import Sandbox, msshop, sandbox_env

TOO_BIG = MAX_ID + 1  # 2**63: SQLite cannot bind it


def call(sandbox: Sandbox, service: str, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> tuple[int, dict[str, object]]:
    info = sandbox.state.services[service]
    conn = http.client.HTTPConnection("127.0.0.1", info.port, timeout=30)
    headers = {"content-type": content_type} if body is not None else {}
    if service == "bus":  # past the door, to what the test is about
        headers.update(sandbox.as_service("users") if method == "POST"
                       else bearer(sandbox.state.token))
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    answer = json.loads(response.read() or b"null")
    return response.status, answer


@pytest.mark.parametrize(("service", "method", "path", "body"), [
    ("users", "GET", f"/users/{TOO_BIG}", None),
    ("users", "GET", f"/users?ids=1,{TOO_BIG}", None),
    ("products", "GET", f"/products/{TOO_BIG}", None),
    ("products", "PATCH", f"/products/{TOO_BIG}", {"title": "x"}),
    ("products", "POST", "/products", {"title": "x", "price": 1, "stock": TOO_BIG}),
    ("orders", "GET", f"/orders/{TOO_BIG}", None),
    ("orders", "GET", f"/orders?user_id={TOO_BIG}", None),
    ("orders", "POST", "/orders", {"user_id": TOO_BIG, "product_id": 1}),
    ("orders", "POST", "/orders/batch", {"orders": [{"user_id": 1, "product_id": TOO_BIG}]}),
    ("query", "GET", f"/user-orders/{TOO_BIG}", None),
    ("query", "GET", f"/user-orders/{TOO_BIG}?strategy=direct-call", None),
    ("query", "GET", f"/bench/floor/{TOO_BIG}", None),
    ("query", "GET", f"/user-orders/1?after={TOO_BIG}", None),
    ("bus", "GET", f"/events?after={TOO_BIG}", None),
    ("bus", "POST", "/events", [{"id": "e1", "type": "UserSignedUp", "source": "users",
                                 "aggregate_type": "user", "aggregate_id": TOO_BIG,
                                 "aggregate_version": 1, "occurred_at": 1.0, "data": {}}]),
])
def test_numbers_beyond_sqlite_are_a_422_that_says_so(shared_sandbox: Sandbox, service: str,
                                                      method: str, path: str,
                                                      body: object) -> None:
    status, answer = call(shared_sandbox, service, method, path,
                          None if body is None else json.dumps(body).encode())
    assert status == 422, answer
    error = str(answer["error"])
    assert str(TOO_BIG) in error or str(MAX_ID) in error, answer


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", ""])
def test_writes_take_json_only(shared_sandbox: Sandbox, content_type: str) -> None:
    """A web page can make a browser send these to 127.0.0.1 without asking first."""
    body = json.dumps({"email": "form@example.com", "name": "Form"}).encode()
    for service, path in (("users", "/users"), ("bus", "/events"), ("orders", "/orders")):
        status, answer = call(shared_sandbox, service, "POST", path, body, content_type)
        assert status == 415, (service, answer)
        assert "send JSON with content-type application/json" in str(answer["error"])
    status, _ = call(shared_sandbox, "users", "GET", "/users?ids=1")
    assert status == 200


def test_a_body_over_the_limit_is_a_413_and_stores_nothing(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    before = client.health("products")["rows"]
    huge = json.dumps({"title": "x", "price": 1, "sku": "s" * (MAX_BODY + 1)}).encode()
    status, answer = call(shared_sandbox, "products", "POST", "/products", huge)
    assert status == 413 and f"{MAX_BODY:,} bytes" in str(answer["error"])
    assert client.health("products")["rows"] == before


@pytest.mark.parametrize(("service", "path", "body", "says"), [
    ("products", "/products", {"title": "Hat", "price": 1, "sku": "s" * 65},
     "sku must be at most 64 characters"),
    ("products", "/products", {"title": "H" * 201, "price": 1}, "title must be 1 to 200"),
    ("users", "/users", {"email": "a" * 250 + "@example.com", "name": "A"},
     "email must be at most 254 characters"),
    ("orders", "/orders", {"user_id": 1, "product_id": 1, "request_id": "r" * 101},
     "request_id must be 1 to 100 characters"),
])
def test_fields_have_limits_that_the_answer_names(shared_sandbox: Sandbox, service: str,
                                                  path: str, body: object, says: str) -> None:
    status, answer = call(shared_sandbox, service, "POST", path, json.dumps(body).encode())
    assert status == 422 and says in str(answer["error"]), answer


@pytest.mark.parametrize("args", [
    ["query", "--user", str(TOO_BIG), "--strategy", "monolith"],
    ["compare", "--user", str(TOO_BIG)],
    ["buy", "--user", "1", "--product", str(TOO_BIG)],
    ["events", "--after", str(TOO_BIG)],
])
def test_the_cli_refuses_numbers_beyond_sqlite_as_a_usage_error(shared_sandbox: Sandbox,
                                                           args: list[str]) -> None:
    result = msshop_in_process(*args, env=shared_sandbox.env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Invalid value for" in result.stderr and str(MAX_ID) in result.stderr


def test_a_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "msshop.toml"
    config.write_bytes(b'[sandbox]\ndir = "\xff\xfe"\n')
    result = msshop_in_process("--config", str(config), "status", env=sandbox_env(tmp_path / "sb"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: config file {config} is not UTF-8 text (byte 0xff "
                                     "at offset 17); save it as UTF-8")


def test_a_sandbox_path_that_is_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    for command in (["status"], ["down"], ["trace"], ["query", "--user", "1"], ["up", "-d"]):
        result = msshop_in_process(*command, env=sandbox_env(a_file))
        assert result.returncode == 2, command
        assert "Traceback" not in result.stderr
        assert f"sandbox.dir = '{a_file}' (from environment variable MSSHOP_SANDBOX) is not " \
               "allowed: use a directory path" in result.stderr, command


def test_a_damaged_database_file_is_named_with_its_cause_at_up(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    (root / "data" / "users").mkdir(parents=True)
    (root / "data" / "users" / "users.db").write_bytes(b"this is not a database, " * 200)
    result = msshop("up", "--detach", env=sandbox_env(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "users failed to start" in result.stderr
    users_db = root / "data" / "users" / "users.db"
    assert f"users cannot open its database {users_db}: file is not a " \
           "database; if the file is damaged, move it away" in result.stderr
    assert not (root / "state.json").exists(), "nothing is left running"


def test_names_with_control_characters_are_shown_escaped(shared_sandbox: Sandbox) -> None:
    client = shared_sandbox.client()
    user = client.signup("esc@example.com", "Eve \x1b[2J\x1b]0;owned\x07 Smith")
    product = client.request("products", "POST", "/products",
                             {"title": "Hat\x1b[31m red", "price": 5, "stock": 1})
    client.buy(user["id"], product["id"])
    for args in (["query", "--user", str(user["id"]), "--strategy", "direct-call"],
                 ["products", "--after", str(product["id"] - 1), "--limit", "1"],
                 ["signup", "--email", "esc@example.com", "--name", "\x1b[2Jagain"]):
        result = shared_sandbox.run(*args)
        shown = result.stdout + result.stderr
        assert "\x1b" not in shown and "\x07" not in shown, args
    query = shared_sandbox.run("query", "--user", str(user["id"]), "--strategy",
                               "direct-call").stdout
    assert "Eve \\x1b[2J\\x1b]0;owned\\x07 Smith" in query
    assert "Hat\\x1b[31m red" in query


def test_the_sandbox_is_its_owners_alone(shared_sandbox: Sandbox) -> None:
    root = shared_sandbox.root
    for folder in (root, root / "data", root / "logs"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for log in (root / "logs").iterdir():
        assert stat.S_IMODE(log.stat().st_mode) & 0o077 == 0, log
    assert os.access(root / "data" / "users" / "users.db", os.R_OK)
