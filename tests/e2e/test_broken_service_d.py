"""The deliberately broken Service D (tests/programs/broken_service_d.py), run by msshop as
the query service, shows each defect against msshop's own tools and the log bus's delivery
faults (issue 25): without --break it passes `msshop verify` under every delivery fault;
each --break fails where it should, and the bus's delivery journal says what it handed
out of the ordinary. The crash-while-applying fault (chaos.crash_while_applying, the
nemesis's crash-applying) is survived by msshop's own query service and the correct
program, and shows position-outside applying a page twice. On NATS (the program reads
JetStream through the Python reference's reader) what needs no delivery fault: verify,
crash-applying, position-outside and ignores-after; rung 9 (rebuild) failed by
starts-at-head and one-at-a-time, naming the cause (on the log bus every variant climbs
the whole ladder in tests/e2e/test_challenges.py). Real processes
throughout: a sandbox, the program, the bus (the log or a nats-server)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from msshop.contracts.config import load
from msshop.contracts.status import CrashedWhileApplying
from msshop.instruments import checking
from msshop.instruments.chaos import crash_while_applying
from msshop.instruments.client import Refused, ShopClient
from msshop.runtime.orchestrator import lifecycle
from msshop.runtime.platform import landlock
from tests.conftest import ROOT, Sandbox, msshop, running_sandbox, sandbox_env

PROGRAM = ROOT / "tests" / "programs" / "broken_service_d.py"
#: on NATS the program loads the Python reference's reader: the kernel's rule must let it
REFERENCE_DIR = ROOT / "examples" / "service-d-python"
READS_REFERENCE = {"MSSHOP_ISOLATION_READ": str(REFERENCE_DIR)}


@contextmanager
def broken(tmp_path: Path, defect: str | None, backend: str = "log") -> Iterator[Sandbox]:
    """A sandbox whose query service is the broken program (`defect` None: correct), on
    the log bus or NATS JetStream (a real nats-server the sandbox starts)."""
    command = f"{sys.executable} {PROGRAM}" + (f" --break {defect}" if defect else "")
    reads = READS_REFERENCE if backend == "nats" else {}
    with running_sandbox(tmp_path / "sandbox", MSSHOP_QUERY_COMMAND=command,
                         MSSHOP_BUS_BACKEND=backend, **reads) as sandbox:
        yield sandbox


def until(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout:g} s: {what}")


def shop(client: ShopClient, orders: int = 3, more: int = 0) -> None:
    """Two users, two products, `orders` orders of user 1 and one of user 2 (`more`: a
    further call, whose two new users have emails of their own)."""
    for n in (1, 2):
        client.request("users", "POST", "/users", {"email": f"u{n}-{more}@example.com",
                                                   "name": f"User {n}"})
        client.request("products", "POST", "/products", {"title": f"P{n}", "price": 10 * n,
                                                        "stock": 1000})
    for n in range(orders):
        client.request("orders", "POST", "/orders", {"user_id": 1, "product_id": 1 + n % 2})
    client.request("orders", "POST", "/orders", {"user_id": 2, "product_id": 1})


def verify(sandbox: Sandbox) -> tuple[int, dict[str, Any]]:
    result = sandbox.run("verify", "--json")
    return result.returncode, json.loads(result.stdout)


def bus_fault(sandbox: Sandbox, *flags: str) -> None:
    sandbox.run("chaos", "query", "--to", "bus", *flags, check=True)


def caught_up(client: ShopClient) -> None:
    """Outboxes empty and the bus's head applied, as msshop's wait sees it (the bus asked
    for its head: a program's own caught_up is stale while a page is on its way)."""
    checking.caught_up(client, timeout=10)


def cut_off(sandbox: Sandbox, client: ShopClient) -> None:
    """A partition between the query service and the bus, once it holds: the consumer's
    long-poll, open since before the fault, answered (by a write) and the next refused."""
    bus_fault(sandbox, "--error-rate", "1")
    client.request("users", "POST", "/users", {"email": "wake@example.com", "name": "Wake"})
    until(lambda: client.health("query")["consumer"]["bus_error"], "cut off")


def head_after(client: ShopClient, before: int) -> int:
    return int(until(lambda: (head := client.bus_head()) > before and head,
                     "the write reached the bus"))


def test_the_correct_one_passes_verify_under_every_delivery_fault(tmp_path: Path) -> None:
    with broken(tmp_path, None) as sandbox:
        bus_fault(sandbox, "--duplicate-rate", "0.5", "--reorder-rate", "1",
                  "--redeliver-rate", "0.5")
        client = sandbox.client()
        shop(client, orders=6)
        for title in ("P1 b", "P1 c", "P1 d"):
            client.request("products", "PATCH", "/products/1", {"title": title})
        shop(client, orders=6, more=1)  # more pages: held events are handed over in them
        code, report = verify(sandbox)
        assert code == 0, report
        journal = client.deliveries("query")
        assert journal["reader"] == "query" and journal["kept"] > 0, journal
        assert {e["fault"] for e in journal["entries"]} <= {"duplicate", "redelivered",
                                                            "reordered"}


@pytest.mark.parametrize(("flag", "fault"), [("--duplicate-rate", "duplicate"),
                                             ("--redeliver-rate", "redelivered")])
def test_not_idempotent_applies_a_duplicate_again_and_the_journal_names_it(
        tmp_path: Path, flag: str, fault: str) -> None:
    with broken(tmp_path, "not-idempotent") as sandbox:
        client = sandbox.client()
        bus_fault(sandbox, flag, "1")
        shop(client, orders=4)
        shop(client, orders=4, more=1)  # a later page: what was held is handed over again
        code, report = verify(sandbox)
        said = json.dumps(report)
        assert code == 1 and "appears twice" in said, report
        journal = client.deliveries("query")
        placed = [e for e in journal["entries"]
                  if e["fault"] == fault and e["type"] == "OrderPlaced"]
        assert placed, journal
        first = placed[0]
        assert first["aggregate_type"] == "order" and first["position"] > 0
        assert first["at"] <= time.time()


@pytest.mark.parametrize(("defect", "waits"), [(None, True), ("ignores-after", False)])
def test_ignores_after_answers_without_the_write_it_was_asked_to_wait_for(
        tmp_path: Path, defect: str | None, waits: bool) -> None:
    with broken(tmp_path, defect) as sandbox:
        client = sandbox.client()
        shop(client, orders=1)
        caught_up(client)
        cut_off(sandbox, client)
        before = client.bus_head()
        client.request("orders", "POST", "/orders", {"user_id": 1, "product_id": 2})
        after = head_after(client, before)
        answer = client.exchange("query", "GET", f"/user-orders/1?after={after}&wait_ms=300")
        if not waits:
            assert answer[0] == 200 and len(answer[1]["orders"]) == 1, \
                "answered at once, without the order it was asked to wait for"
            return
        assert answer[0] == 503 and "not applied" in answer[1]["error"], answer
        bus_fault(sandbox, "--clear")
        status, body = client.exchange("query", "GET",
                                       f"/user-orders/1?after={after}&wait_ms=5000")
        assert status == 200 and len(body["orders"]) == 2, body


@pytest.mark.parametrize("defect", [None, "ignores-versions"])
def test_ignores_versions_keeps_a_stale_product_under_reordering(tmp_path: Path,
                                                                 defect: str | None) -> None:
    with broken(tmp_path, defect) as sandbox:
        client = sandbox.client()
        shop(client, orders=1)
        caught_up(client)
        cut_off(sandbox, client)  # so that what follows waits, and comes in one page:
        before = client.bus_head()
        for title in ("P1 v2", "P1 v3", "P1 v4"):  # updates of product 1, then another
            client.request("products", "PATCH", "/products/1", {"title": title})
        client.request("users", "POST", "/users", {"email": "u3@example.com",
                                                   "name": "User 3"})  # (not the last)
        until(lambda: client.bus_head() >= before + 4, "all four on the bus")
        bus_fault(sandbox, "--reorder-rate", "1")  # in place of the partition
        code, report = verify(sandbox)
        reordered = [e for e in client.deliveries("query")["entries"]
                     if e["fault"] == "reordered"]
        assert reordered and {e["aggregate_id"] for e in reordered} == {1}, reordered
        if defect is None:
            assert code == 0, report
        else:
            assert code == 1 and "'P1 v4'" in json.dumps(report), report


@pytest.mark.parametrize(("defect", "calls"), [(None, 1), ("n-plus-one", 4)])
def test_n_plus_one_asks_products_once_per_order(tmp_path: Path, defect: str | None,
                                                 calls: int) -> None:
    with broken(tmp_path, defect) as sandbox:
        client = sandbox.client()
        shop(client, orders=4)
        trace = "ab" * 16
        status, answer = client.exchange(
            "query", "GET", "/user-orders/1?strategy=direct-call",
            headers={"traceparent": f"00-{trace}-{'cd' * 8}-01"})
        assert status == 200 and len(answer["orders"]) == 4, answer
        spans = [s for s in client.spans("products", trace) if s["kind"] == "server"]
        assert len(spans) == calls, spans


def test_slow_takes_50_ms_more_per_answer(tmp_path: Path) -> None:
    with broken(tmp_path, "slow") as sandbox:
        client = sandbox.client()
        shop(client, orders=1)
        caught_up(client)
        started = time.monotonic()
        for _ in range(5):
            answer = client.user_orders(1, "replicated")
            assert not isinstance(answer, Refused), answer
        assert (time.monotonic() - started) / 5 >= 0.05


def test_the_journal_is_the_owners_and_names_a_reader(tmp_path: Path) -> None:
    with broken(tmp_path, None) as sandbox:
        client = sandbox.client()
        status, answer = client.exchange("bus", "GET", "/chaos/deliveries?reader=query")
        assert status == 401, answer
        refused = sandbox.run("chaos", "query", "--to", "users", "--reorder-rate", "0.3")
        assert refused.returncode == 2
        assert "--reorder-rate is the bus handing out events out of order: give it with " \
               "--to bus" in refused.stderr
        status, answer = client.exchange("bus", "GET", "/chaos/deliveries?reader=nobody",
                                         headers={"authorization": "Bearer "
                                                  + sandbox.state.token})
        assert status == 422 and "name a program of your own" in answer["error"], answer
        assert client.deliveries("query") == {"reader": "query", "entries": [], "kept": 0,
                                              "dropped": 0}
        said = sandbox.run("chaos", "query", "--to", "bus", "--reorder-rate", "0.3",
                           "--redeliver-rate", "0.2", check=True,
                           env_extra={"COLUMNS": "80"}).stdout
        assert "30% of the updates read together handed newest first" in said, said
        assert "20% of the events read handed over again, late" in said, said
        assert all(len(line) <= 80 for line in said.splitlines()), said
        shown = sandbox.run("status", "--json", check=True).stdout
        bus = next(s for s in json.loads(shown)["services"] if s["name"] == "bus")
        assert bus["chaos"]["doors"]["query"] == {
            "latency_ms": 0, "jitter_ms": 0, "error_rate": 0, "duplicate_rate": 0,
            "reorder_rate": 0.3, "redeliver_rate": 0.2}


def crash_and_start(sandbox: Sandbox) -> CrashedWhileApplying:
    """The nemesis's crash-applying, then the start that heals it."""
    settings = load(env=sandbox.env)
    crashed = crash_while_applying(settings, backlog=1500)
    assert sandbox.state.services["query"].status != "running"
    lifecycle.start(settings, "query")
    return crashed


@pytest.mark.parametrize(("own", "backend"), [(True, "log"), (True, "nats"), (False, "log"),
                                             (False, "nats")],
                         ids=["msshop's", "msshop's on nats", "broken without --break",
                              "broken without --break on nats"])
def test_a_crash_while_applying_leaves_nothing_applied_twice_or_skipped(
        tmp_path: Path, own: bool, backend: str) -> None:
    """On NATS a program of your own has no door to slow its reads: the nemesis catches
    its backlog mid-way by looking often (the correct program's pages are 100 events)."""
    with running_sandbox(tmp_path / "sandbox", MSSHOP_BUS_BACKEND=backend) if own \
            else broken(tmp_path, None, backend) as sandbox:
        shop(sandbox.client(), orders=2)
        crashed = crash_and_start(sandbox)
        assert crashed["while_applying"], crashed
        assert crashed["start"] < crashed["position"] < crashed["head"], crashed
        code, report = verify(sandbox)
        assert code == 0 and report["orders"] >= 1500 + 3, report


@pytest.mark.parametrize("backend", ["log", "nats"])
def test_position_outside_the_transaction_applies_a_page_twice_after_a_crash(
        tmp_path: Path, backend: str) -> None:
    with broken(tmp_path, "position-outside", backend) as sandbox:
        shop(sandbox.client(), orders=2)
        for _ in range(3):  # each crash lands in the pause with near certainty; bounded
            crashed = crash_and_start(sandbox)
            assert crashed["while_applying"], crashed
            code, report = verify(sandbox)
            if code == 1:
                break
        said = json.dumps(report)
        assert code == 1 and "appears twice" in said, report


@pytest.mark.parametrize("program", [None, "broken"])
def test_an_experiment_with_the_new_kinds_stays_valid_for_a_correct_consumer(
        tmp_path: Path, program: str | None) -> None:
    """The scenario kinds reorder, redelivery and crash-applying, run by the nemesis on
    msshop's own query service and on the broken one without --break: valid."""
    mine = tmp_path / "mine.toml"
    mine.write_text('name = "mine"\ntitle = "One idea at a time"\nseconds = 20\n'
                    '[[faults]]\nkind = "reorder"\ntarget = "query->bus"\nrate = 1\n'
                    'start = 2\nend = 8\n'
                    '[[faults]]\nkind = "redelivery"\ntarget = "query->bus"\nrate = 0.5\n'
                    'start = 2\nend = 8\n'
                    '[[faults]]\nkind = "crash-applying"\ntarget = "query"\n'
                    'start = 10\nend = 14\n')
    env = {"MSSHOP_QUERY_COMMAND": f"{sys.executable} {PROGRAM}"} if program else {}
    environment = sandbox_env(tmp_path / "unused", TMPDIR=str(tmp_path), **env)
    result = msshop("experiment", str(mine), "--seconds", "6", "--json", env=environment,
                    timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 0, (report["outcome"], result.stderr)
    assert [f["label"] for f in report["faults"]] == [
        "query->bus reordered", "query->bus redelivered late", "query killed while applying"]


def test_not_idempotent_makes_the_duplicates_experiment_invalid(tmp_path: Path) -> None:
    environment = sandbox_env(
        tmp_path / "unused", TMPDIR=str(tmp_path),
        MSSHOP_QUERY_COMMAND=f"{sys.executable} {PROGRAM} --break not-idempotent")
    result = msshop("experiment", "duplicates", "--seconds", "4", "--json", env=environment,
                    timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 1, (report["outcome"], result.stderr)
    assert report["outcome"]["verdict"] == "invalid"
    assert "is in the read model 2 times" in json.dumps(report["outcome"]), report["outcome"]


def test_a_live_readers_page_is_gathered_so_that_updates_made_one_by_one_are_reordered(
        tmp_path: Path) -> None:
    """With a reorder rate the log bus holds a woken long-poll 100 ms, so updates made one
    after another reach a caught-up program together: reordered (bounded rounds, as a
    loaded machine may be slower than 100 ms between two of them)."""
    with broken(tmp_path, None) as sandbox:
        client = sandbox.client()
        shop(client, orders=1)
        caught_up(client)
        bus_fault(sandbox, "--reorder-rate", "1")
        for round_ in range(5):
            for n in (1, 2):
                client.request("products", "PATCH", "/products/1",
                               {"title": f"P1 r{round_}-{n}"})
            client.request("users", "POST", "/users", {"email": f"r{round_}@example.com",
                                                       "name": "R"})
            caught_up(client)
            if client.deliveries("query")["kept"]:
                break
        (first, second) = client.deliveries("query")["entries"][:2]
        assert first["fault"] == second["fault"] == "reordered"
        assert first["aggregate_version"] > second["aggregate_version"], "newest first"
        assert verify(sandbox)[0] == 0


# --- On NATS: the same program reads JetStream through the Python reference's reader --


def test_on_nats_the_correct_one_reads_the_stream_and_passes_verify(tmp_path: Path) -> None:
    with broken(tmp_path, None, "nats") as sandbox:
        client = sandbox.client()
        shop(client, orders=4)
        for title in ("P1 b", "P1 c"):
            client.request("products", "PATCH", "/products/1", {"title": title})
        code, report = verify(sandbox)
        assert code == 0, report
        consumer = client.health("query")["consumer"]
        assert consumer["bus_error"] is None and consumer["applied"] >= 10, consumer


@pytest.mark.parametrize(("defect", "waits"), [(None, True), ("ignores-after", False)])
def test_on_nats_ignores_after_answers_before_the_position_it_was_asked_for(
        tmp_path: Path, defect: str | None, waits: bool) -> None:
    """No door holds a program's NATS reads off, so the position asked for is the next one,
    not yet written: the correct program waits for it (503 after wait_ms, then the write's
    answer), ignores-after answers at once without it."""
    with broken(tmp_path, defect, "nats") as sandbox:
        client = sandbox.client()
        shop(client, orders=1)
        caught_up(client)
        after = client.bus_head() + 1
        answer = client.exchange("query", "GET", f"/user-orders/1?after={after}&wait_ms=300")
        if not waits:
            assert answer[0] == 200 and len(answer[1]["orders"]) == 1, \
                "answered at once, before the position it was asked to wait for"
            return
        assert answer[0] == 503 and "not applied" in answer[1]["error"], answer
        client.request("orders", "POST", "/orders", {"user_id": 1, "product_id": 2})
        status, body = client.exchange("query", "GET",
                                       f"/user-orders/1?after={after}&wait_ms=5000")
        assert status == 200 and len(body["orders"]) == 2, body


# --- Rung 9, rebuild: the variants that fail it, and only it --------------------------

SLOW_LINE = (r"the rebuild: took \d+\.\d s \([\d,]+ events/s\), expected [\d,]+ events "
             r"applied within 3 s — ask the bus for a page of events and apply each page in "
             r"one transaction, not one event per request and a commit per event")
NOT_THERE_LINE = (r"user \d+: no answer \(HTTP 404: no user with id \d+\), expected an answer "
                  r"from your read model — does it start from position 0 when its read model "
                  r"is empty, not at the head\?")


def challenge(tmp_path: Path, name: str, defect: str | None, bus: str = "log"
              ) -> tuple[int, dict[str, Any], str]:
    """`msshop challenge run NAME --service BROKEN --bus BUS --json` in tmp_path."""
    command = f"{sys.executable} {PROGRAM}" + (f" --break {defect}" if defect else "")
    result = msshop("challenge", "run", name, "--service", command, "--bus", bus,
                    "--seconds", "1", "--json", cwd=tmp_path, timeout=180,
                    env=sandbox_env(tmp_path / "unused", **READS_REFERENCE))
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


# On the log bus each variant climbs the whole ladder in tests/e2e/test_challenges.py
# (failing rebuild alone, with these lines); here, the rebuild on NATS.
@pytest.mark.parametrize("bus", ["nats"])
@pytest.mark.parametrize(("defect", "said"), [("one-at-a-time", SLOW_LINE),
                                              ("starts-at-head", NOT_THERE_LINE)])
def test_a_rebuild_variant_fails_rebuild_naming_the_cause(
        tmp_path: Path, bus: str, defect: str, said: str) -> None:
    code, report, stderr = challenge(tmp_path, "rebuild", defect, bus)
    assert (code, report["verdict"]) == (1, "failed"), (report, stderr)
    assert re.fullmatch(said, report["findings"][0]["line"]), report["findings"]
    assert "stopped your service, published 20,000 orders" in stderr, stderr


@pytest.mark.parametrize("bus", ["nats"])
def test_the_correct_one_rebuilds_within_the_stated_time(tmp_path: Path, bus: str) -> None:
    code, report, stderr = challenge(tmp_path, "rebuild", None, bus)
    assert (code, report["verdict"]) == (0, "passed"), (report, stderr)
    assert report["figures"]["events"] > 20_000, report["figures"]


@pytest.mark.skipif(landlock.abi() < 1, reason="this kernel has no Landlock")
def test_on_nats_without_leave_to_read_the_reference_it_says_so_in_one_line(
        tmp_path: Path) -> None:
    """The kernel's rule grants the program its own directory: the reference's file must
    be named; until it is, msshop's one line carries the program's own, naming the fix."""
    result = msshop("challenge", "run", "read-model", "--bus", "nats", "--service",
                    f"{sys.executable} {PROGRAM}", "--json", cwd=tmp_path, timeout=120,
                    env=sandbox_env(tmp_path / "unused"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    said = result.stderr.strip().splitlines()[-1]
    assert said.startswith("error: query failed to start"), said
    assert f"let this program read it: MSSHOP_ISOLATION_READ={REFERENCE_DIR}" in said, said
