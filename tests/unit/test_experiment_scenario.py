"""Experiments are data: every shipped scenario reads, and a wrong field is one line that
names it (and what it takes)."""

from __future__ import annotations

import pytest

from msshop.cli.app import as_flag
from msshop.contracts.errors import InvalidArgument, UsageError
from msshop.instruments.experiments import scenario
from msshop.instruments.experiments.scenario import Fault, available, load, parse

SHIPPED = ["bus-outage", "bus-pause", "duplicates", "partition", "products-outage",
           "query-crash", "slow-users", "writes-crashes", "writes-credit-runs-out",
           "writes-duplicates", "writes-last-items", "writes-products-outage",
           "writes-slow-users"]
GOOD = """
name = "mine"
title = "A scenario of my own"
seconds = 20
[[faults]]
kind = "kill"
target = "products"
start = 5
end = 15
"""


def test_every_shipped_scenario_reads_and_says_what_it_shows() -> None:
    assert sorted(available()) == SHIPPED
    for name in SHIPPED:
        read = load(name)
        assert read.name == name and read.title and len(read.shows) > 40
        # a purchases scenario may have no fault: its point is the race, or the credit
        assert read.faults or read.workload == "purchases"
        assert all(0 <= f.start < f.end <= read.seconds for f in read.faults)
        assert (read.workload == "purchases") == name.startswith("writes-")


def test_products_outage_is_products_killed_at_5_s_and_started_at_15_s() -> None:
    assert load("products-outage").faults == (Fault("kill", "products", 5, 15),)
    assert load("partition").faults[0].link == ("query", "bus")
    assert load("slow-users").faults[0].label == "users +200 ms"


def test_seconds_squeeze_the_schedule_and_rate_keeps_the_proportion() -> None:
    squeezed = load("products-outage").squeezed(4, 40)
    assert squeezed.seconds == 4 and squeezed.faults[0].start == 1
    assert squeezed.faults[0].end == 3
    assert (squeezed.read_rate, squeezed.purchase_rate) == (40, 20)
    with pytest.raises(InvalidArgument) as refused:
        load("products-outage").squeezed(0, None)
    assert refused.value.worded(as_flag) == "--seconds is 0; it must be from 1 to 600"
    with pytest.raises(InvalidArgument) as refused:
        load("products-outage").squeezed(None, 5000)
    assert refused.value.worded(as_flag).startswith("--rate is 5000")


@pytest.mark.parametrize(("change", "says"), [
    (("kind = \"kill\"", "kind = \"explode\""),
     "faults[1].kind 'explode' is not a fault; choose one of: kill, stop, pause"),
    (("target = \"products\"", "target = \"prodcts\""),
     "faults[1].target 'prodcts' is not a service; choose from: bus, users"),
    (("target = \"products\"", "target = \"query->bus\""),
     "faults[1].target 'query->bus': kill acts on a service, not a link"),
    (("kind = \"kill\"", "kind = \"partition\""),
     "faults[1].target 'products': partition acts on a link; give caller->callee"),
    (("start = 5", "strat = 5"),
     "faults[1].strat is not a field; the fields are: kind, target, start, end, ms, rate"),
    (("end = 15", "end = 25"), "faults[1].end is 25; it must be from 0 to 20"),
    (("end = 15", "end = 4"), "faults[1]: end (4) must come after start (5)"),
    (("end = 15", "end = \"15\""), "faults[1].end must be a number, not '15'"),
    (("seconds = 20", "seconds = 20\nspeed = 2"), "speed is not a field; the fields are:"),
    (("name = \"mine\"", ""), "the field 'name' is missing"),
    (("seconds = 20", "seconds = 20\n["), "is not valid TOML"),
    (("kind = \"kill\"", "kind = \"latency\""), "faults[1].ms is missing"),
    (("target = \"products\"", "target = \"query->users\"\nrate = 0.5\n"
      "kind = \"duplicates\"\n"), "duplicates come from the bus; give caller->bus"),
])
def test_a_bad_field_is_one_line_naming_it(change: tuple[str, str], says: str) -> None:
    text = GOOD.replace(*change)
    if change[1].startswith("target = \"query->users\""):
        text = text.replace("kind = \"kill\"\n", "")
    with pytest.raises(UsageError) as raised:
        parse(text, "mine.toml")
    assert says in raised.value.message and "\n" not in raised.value.message
    assert raised.value.message.startswith("mine.toml")


def test_an_unknown_name_lists_the_scenarios_and_a_file_can_be_given() -> None:
    with pytest.raises(UsageError, match="no experiment named 'nope'; choose one of: "
                                         "bus-outage, bus-pause"):
        load("nope")
    with pytest.raises(UsageError, match=r"cannot read the scenario file /nope/x\.toml"):
        load("/nope/x.toml")
    assert scenario.parse(GOOD, "x").faults[0].label == "products killed"


@pytest.mark.parametrize("name", ["a/b", "../up", "/abs", "", "-dash-first", "sp ace",
                                  "dot.ted", "x" * 65, "new\nline", "é"])
def test_a_name_that_is_not_a_plain_name_is_one_line(name: str) -> None:
    """Issue 23: a name with "/" ran, then failed making its folder with a traceback."""
    with pytest.raises(UsageError) as raised:
        parse(GOOD.replace('name = "mine"', f"name = {name!r}".replace("'", '"')
                           if "\n" not in name else 'name = "new\\nline"'), "mine.toml")
    message = raised.value.message
    assert message.startswith("mine.toml: name ") and "\n" not in message
    assert "is not a plain name; use letters, digits, - and _" in message


@pytest.mark.parametrize("name", ["mine", "Products_outage-2", "x" * 64, "9lives"])
def test_a_plain_name_reads(name: str) -> None:
    assert parse(GOOD.replace('"mine"', f'"{name}"'), "mine.toml").name == name


def test_the_delivery_faults_and_crash_applying_are_kinds_with_their_rules() -> None:
    """Issue 25: reorder and redelivery come from the bus, each one idea; crash-applying
    kills the service that applies the bus's events."""
    def one(kind: str, target: str) -> str:
        return (f'name = "x"\ntitle = "x"\nseconds = 10\n[[faults]]\nkind = "{kind}"\n'
                f'target = "{target}"\nstart = 1\nend = 5\nrate = 0.5\n')

    for kind, label in (("reorder", "reordered"), ("redelivery", "redelivered late")):
        fault = parse(one(kind, "query->bus"), "mine.toml").faults[0]
        assert (fault.link, fault.rate, fault.label) == (("query", "bus"), 0.5,
                                                         f"query->bus {label}")
        with pytest.raises(UsageError, match=f"{kind} come from the bus; give caller->bus"):
            parse(one(kind, "query->users"), "mine.toml")
        with pytest.raises(UsageError, match=f"{kind} acts on a link"):
            parse(one(kind, "query"), "mine.toml")
    crash = parse(one("crash-applying", "query"), "mine.toml").faults[0]
    assert crash.label == "query killed while applying"
    with pytest.raises(UsageError, match="crash-applying kills the service that applies"):
        parse(one("crash-applying", "users"), "mine.toml")


def test_a_purchases_workload_takes_its_stock_credit_and_quantity() -> None:
    scenario = parse('name = "w"\ntitle = "t"\nseconds = 10\nworkload = "purchases"\n'
                     'purchase_rate = 20\nstock = 10\ncredit = 20\nquantity = 2\n'
                     'faults = []\n', "file")
    assert (scenario.workload, scenario.stock, scenario.credit, scenario.quantity) == (
        "purchases", 10, 20.0, 2)
    squeezed = scenario.squeezed(4, 30)
    assert (squeezed.seconds, squeezed.purchase_rate, squeezed.stock) == (4, 30, 10)


@pytest.mark.parametrize(("extra", "words"), [
    ('workload = "writes"', "workload 'writes' is not one; choose one of: reads, purchases"),
    ("stock = 10", "stock is for a purchases workload"),
    ('workload = "purchases"\nread_rate = 5', "read_rate is for a reads workload"),
    ('workload = "purchases"\nquantity = 1.5', "quantity is 1.5; it must be a whole number"),
    ('workload = "purchases"\nstock = -1', "stock is -1; it must be from 0"),
])
def test_a_purchases_field_in_the_wrong_place_is_one_line(extra: str, words: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse(f'name = "w"\ntitle = "t"\nseconds = 10\nfaults = []\n{extra}\n', "file")
    assert words in raised.value.message
