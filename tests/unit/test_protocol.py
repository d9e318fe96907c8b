"""The service protocol as msshop ships it: each event type's JSON Schema holds for the
events the services really make, docs/protocol.md's table of them is the one the types
make, `msshop protocol` prints the page and the typed document, and `msshop new service`
writes a starting point or refuses in one line.

Run as `python -m tests.unit.test_protocol` to regenerate docs/protocol.md's table."""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import msgspec
import pytest
from rich.console import Console

from msshop.contracts import events, protocol
from msshop.contracts.shop import OrderStatus
from msshop.render.protocol import protocol_page
from msshop.runtime.services import orders, products, users
from tests.cli_in_process import msshop_in_process
from tests.conftest import ROOT, sandbox_env

PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
TABLE = re.compile(r"(<!-- events-table:[^\n]*-->\n)(.*?)(\n<!-- /events-table -->)", re.S)


def made_by_the_services() -> list[events.Event]:
    """One event of each type, made by the functions the services make them with."""
    product = {"id": 3, "sku": "SKU-3", "title": "Rust duffel", "price": 60.49,
               "updated_at": 1796421258.5, "version": 2}
    return [
        users.signed_up({"id": 1, "email": "ana@example.com", "name": "Ana",
                         "created_at": 1796421258.5}),
        products.product_event(events.PRODUCT_CREATED, {**product, "version": 1}),
        products.product_event(events.PRODUCT_UPDATED, product),
        orders.order_placed((7, 1, 3, 2, 6049, "request", 1796421258.5), "a" * 32, None),
        *made_by_the_saga(),
    ]


def made_by_the_saga() -> list[events.Event]:
    """One event of each of the saga's types (issue 26)."""
    key = "request"
    return [
        events.saga_step(events.STOCK_TAKEN, events.StockTakenData(7, key, 1, 3, 2, 60.49)),
        events.saga_step(events.STOCK_REFUSED, events.StockRefusedData(
            7, key, "product 3 has 1 left, not 2", 409)),
        events.saga_step(events.CREDIT_TAKEN, events.CreditTakenData(7, key, 1, 120.98,
                                                                     60.49)),
        events.saga_step(events.CREDIT_REFUSED, events.CreditRefusedData(
            7, key, "user 1 has 5.00 of credit, not 120.98", 409, 60.49)),
        events.saga_step(events.STOCK_GIVEN_BACK, events.StockGivenBackData(
            7, key, 3, 2, "user 1 has 5.00 of credit, not 120.98")),
        events.order_ended(7, 1, 3, 2, 6049, key, OrderStatus.CONFIRMED, None),
        events.order_ended(7, 1, 3, 2, 6049, key, OrderStatus.REJECTED, "out of stock"),
        # issue 27's orchestrated saga: orders' commands, and users' reply to a give-back
        events.order_placed(8, 1, 3, 2, 0, 1.0, purchase="k-8", status=OrderStatus.PENDING,
                            write="saga-orchestrated"),
        events.saga_step(events.TAKE_STOCK, events.TakeStockData(8, "k-8", 1, 3, 2)),
        events.saga_step(events.TAKE_CREDIT, events.TakeCreditData(8, "k-8", 1, 120.98,
                                                                    60.49)),
        events.saga_step(events.GIVE_CREDIT_BACK, events.GiveBackData(
            8, "k-8", "users did not answer within 10 s")),
        events.saga_step(events.GIVE_STOCK_BACK, events.GiveBackData(
            8, "k-8", "users did not answer within 10 s")),
        events.saga_step(events.CREDIT_GIVEN_BACK, events.CreditGivenBackData(
            8, "k-8", 1, 120.98, "users did not answer within 10 s", "0001")),
        events.saga_step(events.STOCK_TAKEN, events.StockTakenData(
            8, "k-8", 1, 3, 2, 60.49, "0001")),
    ]


def valid(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> bool:
    """A JSON Schema check, of the keywords msgspec's schemas use."""
    if "$ref" in schema:
        return valid(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root)
    if "anyOf" in schema:
        return any(valid(value, option, root) for option in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kinds: dict[str, type | tuple[type, ...]] = {
        "object": dict, "string": str, "integer": int, "number": (int, float),
        "null": type(None), "array": list}
    if "type" in schema and (not isinstance(value, kinds[schema["type"]])
                             or (isinstance(value, bool) and schema["type"] != "boolean")):
        return False
    if isinstance(value, str) and not (schema.get("minLength", 0) <= len(value)
                                       <= schema.get("maxLength", len(value))):
        return False
    if isinstance(value, int | float) and not (schema.get("minimum", value) <= value
                                               <= schema.get("maximum", value)):
        return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return (all(name in value for name in schema.get("required", ()))
                and all(valid(item, properties[name], root)
                        for name, item in value.items() if name in properties))
    return True


def test_every_event_the_services_make_holds_to_its_types_schema() -> None:
    schemas = protocol.event_schemas()
    made = made_by_the_services()
    assert {event.type for event in made} == set(schemas) == set(events.CATALOGUE)
    for event in made:
        sent = json.loads(events.encode(event))
        assert valid(sent, schemas[event.type], schemas[event.type]), sent
        msgspec.json.decode(events.encode(event), type=protocol.typed_event(event.type))


@pytest.mark.parametrize(("change", "where"), [
    ({"source": "orders"}, "source"),  # not its owner
    ({"aggregate_type": "order"}, "aggregate_type"),
    ({"data": {"id": 1, "email": "a@x"}}, "data"),  # no name
    ({"data": {"id": "1", "email": "a@x", "name": "A"}}, "data"),
    ({"aggregate_id": -1}, "aggregate_id"),
])
def test_a_schema_refuses_an_event_its_type_does_not_allow(change: dict[str, Any],
                                                          where: str) -> None:
    sent = {**json.loads(events.encode(made_by_the_services()[0])), **change}
    schema = protocol.event_schemas()[events.USER_SIGNED_UP]
    assert not valid(sent, schema, schema)
    with pytest.raises(msgspec.ValidationError, match=where):
        msgspec.json.decode(json.dumps(sent),
                            type=protocol.typed_event(events.USER_SIGNED_UP))


def test_the_docs_table_of_event_types_is_the_one_the_types_make() -> None:
    found = TABLE.search(PROTOCOL_DOC.read_text())
    assert found, "docs/protocol.md lost its events-table markers"
    assert found.group(2) == protocol.events_table(), \
        "docs/protocol.md's events table is stale: run python -m tests.unit.test_protocol"


def test_the_docs_environment_is_the_contracts() -> None:
    documented = re.findall(r"^\| `(MSSHOP_\w+)`", PROTOCOL_DOC.read_text(), flags=re.M)
    assert documented == list(protocol.ENVIRONMENT)


def test_protocol_prints_the_page_piped_and_the_typed_document_as_json(tmp_path: Path
                                                                        ) -> None:
    env = sandbox_env(tmp_path / "sandbox")
    page = msshop_in_process("protocol", env=env, check=True)
    assert page.stdout == PROTOCOL_DOC.read_text()
    document = json.loads(msshop_in_process("protocol", "--json", env=env,
                                            check=True).stdout)
    assert document["protocol"] == 1
    assert [v["name"] for v in document["environment"]] == list(protocol.ENVIRONMENT)
    assert document["events"] == protocol.event_schemas()
    assert set(document["service_file"]["$defs"]["ServiceFile"]["required"]) == set(
        protocol.ServiceFile.__annotations__)


def test_protocol_on_a_terminal_is_rendered_within_80_columns() -> None:
    written = io.StringIO()
    protocol_page(Console(file=written, width=80, force_terminal=True, no_color=True),
                  PROTOCOL_DOC.read_text())
    lines = re.sub(r"\x1b\[[0-9;]*m", "", written.getvalue()).splitlines()
    assert any("The service protocol, version 1" in line for line in lines)
    assert "```" not in written.getvalue()
    assert max(len(line) for line in lines) <= 80


@pytest.mark.parametrize("lang", ["python", "node"])
def test_new_service_writes_the_reference_program_and_says_how_to_run_it(
        tmp_path: Path, lang: str) -> None:
    target = tmp_path / "mine"
    made = json.loads(msshop_in_process("new", "service", "query", "--lang", lang,
                                        str(target), "--json", env=sandbox_env(tmp_path),
                                        check=True).stdout)
    program = {"python": "service.py", "node": "service.js"}[lang]
    assert sorted(p.name for p in target.iterdir()) == sorted(["README.md", program])
    example = ROOT / "examples" / f"service-d-{lang}"
    assert (target / program).read_bytes() == (example / program).read_bytes()
    assert made["files"] == [program, "README.md"]
    assert made["command"].endswith(str(target / program))
    said = msshop_in_process("new", "service", "query", "--lang", lang, "mine-too",
                             env=sandbox_env(tmp_path), cwd=tmp_path, check=True).stdout
    interpreter = {"python": "python3", "node": "node"}[lang]
    assert f"msshop up --service query='{interpreter} mine-too/{program}'" in said
    assert max(len(line) for line in said.splitlines()) <= 80


def test_new_service_quotes_a_path_a_shell_would_split(tmp_path: Path) -> None:
    target = tmp_path / "it's mine"
    made = json.loads(msshop_in_process("new", "service", "query", str(target), "--json",
                                        env=sandbox_env(tmp_path), check=True).stdout)
    assert shlex.split(made["command"]) == ["python3", str(target / "service.py")]
    *_, assignment = shlex.split(made["run"])
    assert assignment == f"query={made['command']}"


@pytest.mark.parametrize(("args", "said"), [
    (("service", "bus"), "a program of your own as the bus is not supported yet"),
    (("service", "users"), "no starting point for users yet, only for query"),
    (("service", "quarry"), "unknown service 'quarry'; choose one of"),
    (("service", "query", "--lang", "rust"), "--lang 'rust' is not one of: python, node"),
    (("thing", "query"), "msshop new makes a service only"),
])
def test_new_refuses_what_it_cannot_make_in_one_line(tmp_path: Path, args: tuple[str, ...],
                                                     said: str) -> None:
    result = msshop_in_process("new", *args[:2], str(tmp_path / "mine"), *args[2:],
                               env=sandbox_env(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and said in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mine").exists()


def test_new_refuses_a_directory_with_something_in_it_and_leaves_it_alone(tmp_path: Path
                                                                           ) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = msshop_in_process("new", "service", "query", str(target),
                               env=sandbox_env(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == \
        f"error: {target} exists and is not an empty directory; name a new one"
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no staging left behind


def regenerate() -> None:
    text = PROTOCOL_DOC.read_text()
    PROTOCOL_DOC.write_text(TABLE.sub(lambda m: m.group(1) + protocol.events_table()
                                      + m.group(3), text))


if __name__ == "__main__":
    regenerate()
