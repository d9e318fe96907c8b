"""Issue 23, finding 2, the pure parts: a sandbox's identity (made once, kept, a damaged one
named), the names made from it, and why a stream found on a server is refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from msshop.bus.jetstream import NatsAddress, stream_problem
from msshop.contracts import config, streams
from msshop.contracts.errors import ConfigError, SandboxError
from msshop.runtime.orchestrator.state import SandboxPaths, sandbox_identity


def test_the_identity_is_made_once_and_kept(tmp_path: Path) -> None:
    paths = SandboxPaths(tmp_path / "sandbox")
    paths.create()
    made = sandbox_identity(paths)
    assert streams.NAME.fullmatch(made) and len(made) == 12
    assert sandbox_identity(paths) == made, "read again, not made anew"
    assert paths.identity_file.stat().st_mode & 0o777 == 0o600
    other = SandboxPaths(tmp_path / "other")
    other.create()
    assert sandbox_identity(other) != made


def test_a_damaged_identity_is_one_line_with_the_fix(tmp_path: Path) -> None:
    paths = SandboxPaths(tmp_path / "sandbox")
    paths.create()
    paths.identity_file.write_text("not.a name\n")
    with pytest.raises(SandboxError) as caught:
        sandbox_identity(paths)
    assert caught.value.message == (
        f"the sandbox's identity in {paths.identity_file} is damaged ('not.a name': "
        "letters, digits, - and _ expected); remove it to make a new one (then rebuild "
        "the read model: msshop replay query)")


def test_names_follow_the_identity() -> None:
    assert streams.default_stream("a1b2") == "msshop-a1b2"
    assert streams.all_subjects("a1b2") == "msshop.a1b2.>"
    subject = streams.subject("a1b2", "orders", "OrderPlaced")
    assert subject == "msshop.a1b2.orders.OrderPlaced"
    assert subject[streams.sender_at("a1b2"):].partition(".")[0] == "orders"


def test_a_stream_name_that_jetstream_would_refuse_is_a_config_error() -> None:
    assert config.load(env={"MSSHOP_BUS_STREAM": "CLASS_1"}).bus_stream == "CLASS_1"
    with pytest.raises(ConfigError) as caught:
        config.load(env={"MSSHOP_BUS_STREAM": "a.b"})
    assert caught.value.message.startswith("bus.stream = 'a.b'")


@dataclass
class Found:
    """A stream's config as nats-py describes one (the fields stream_problem reads)."""

    name: str = "msshop-a1b2"
    subjects: list[str] = field(default_factory=lambda: ["msshop.a1b2.>"])
    retention: str = "limits"
    storage: str = "file"
    max_msgs: int = -1
    max_bytes: int = -1
    max_age: float = 0
    metadata: dict[str, str] | None = field(
        default_factory=lambda: {streams.OWNER_KEY: "a1b2"})


ADDRESS = NatsAddress(("nats://10.0.0.5:4222",), "a1b2", "msshop-a1b2")
OWN = ("name another one with bus.stream (MSSHOP_BUS_STREAM), or delete that one if it is "
       "yours to lose")


@pytest.mark.parametrize(("found", "says"), [
    (Found(), None),
    (Found(metadata=None), None),  # made by hand in msshop's shape: used
    (Found(metadata={streams.OWNER_KEY: "ffff"}),
     f"stream msshop-a1b2 on nats://10.0.0.5:4222 belongs to another sandbox (ffff), not "
     f"this one (a1b2); {OWN}"),
    (Found(subjects=["msshop.>"]),
     "stream msshop-a1b2 on nats://10.0.0.5:4222 has the wrong shape for msshop: subjects "
     f"msshop.> (this sandbox's: msshop.a1b2.>); {OWN}"),
    (Found(retention="interest", max_msgs=1000, storage="memory"),
     "stream msshop-a1b2 on nats://10.0.0.5:4222 has the wrong shape for msshop: interest "
     "retention (events would go once read; limits needed); max_msgs 1000 (older events "
     "would be dropped); memory storage (events would be lost with the server); " + OWN),
])
def test_a_stream_found_is_used_only_if_it_is_this_sandboxs_and_of_msshops_shape(
        found: Found, says: str | None) -> None:
    assert stream_problem(found, ADDRESS) == says
