"""runner.PromptServer overrides uvicorn.Server's internals (its tick loop, its shutdown)
and reads its state. pyproject pins uvicorn to the versions it was written against; this
test names what moved when the pin is raised and uvicorn's internals changed under it."""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import uvicorn
import uvicorn.config
import uvicorn.server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from msshop.runtime.platform.runner import PromptServer

# uvicorn.Server's methods that PromptServer replaces or relies on being called as they
# are, by the fingerprint of their source in each version it was written against (0.54,
# 0.55). A new fingerprint: read that method in the new uvicorn, bring PromptServer in
# line with it, then add the fingerprint here.
KNOWN: dict[str, dict[str, str]] = {
    "main_loop": {"425d26add0e59678": "0.54-0.55"},  # replaced: PromptServer.main_loop
    "shutdown": {"9f8a90ed456dcfee": "0.54", "e226a831714475de": "0.55"},  # replaced
    "_serve": {"808a98031a4105f5": "0.54-0.55"},  # calls main_loop, then shutdown(sockets=)
    "handle_exit": {"b31a1f2364655748": "0.54-0.55"},  # extended: super().handle_exit
    "on_tick": {"371ccecb27e5e5d4": "0.54-0.55"},  # called by PromptServer.main_loop
}


def fingerprint(method: Callable[..., Any]) -> str:
    source = textwrap.dedent(inspect.getsource(method))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def test_the_server_methods_prompt_server_overrides_are_the_ones_it_was_written_against(
) -> None:
    moved = []
    for name, known in KNOWN.items():
        method = getattr(uvicorn.Server, name, None)
        if method is None:
            moved.append(f"uvicorn.Server.{name} is gone")
        elif fingerprint(method) not in known:
            moved.append(f"uvicorn.Server.{name} changed (fingerprint {fingerprint(method)}, "
                         f"known: {', '.join(f'{v} in {k}' for k, v in known.items())})")
    assert not moved, (f"uvicorn {uvicorn.__version__}: " + "; ".join(moved)
                       + ": re-read runner.PromptServer against it")


def test_the_signatures_prompt_server_overrides_keep_their_shape() -> None:
    for name in ("main_loop", "shutdown", "handle_exit", "on_tick"):
        theirs = inspect.signature(getattr(uvicorn.Server, name))
        ours = inspect.signature(getattr(PromptServer, name, getattr(uvicorn.Server, name)))
        assert list(theirs.parameters) == list(ours.parameters), (
            f"uvicorn.Server.{name}{theirs} vs PromptServer.{name}{ours}")


def test_the_state_prompt_server_reads_is_where_it_was() -> None:
    config = uvicorn.Config(lambda *_: None, loop="none", http="httptools", ws="none",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    for name in ("should_exit", "force_exit", "server_state"):
        assert hasattr(server, name), f"uvicorn.Server().{name} is gone"
    for name in ("connections", "tasks"):
        assert isinstance(getattr(server.server_state, name, None), set), (
            f"uvicorn.server.ServerState.{name} is no longer a set")
    startup = inspect.getsource(uvicorn.Server.startup)
    serve = inspect.getsource(uvicorn.Server._serve)
    assert "self.servers" in startup, "uvicorn.Server.startup no longer sets self.servers"
    assert "self.lifespan =" in serve, "uvicorn.Server._serve no longer sets self.lifespan"
    assert callable(getattr(HttpToolsProtocol, "shutdown", None)), (
        "uvicorn's HttpToolsProtocol.shutdown is gone (PromptServer closes idle connections)")
    assert "none" in uvicorn.config.LOOP_FACTORIES, "uvicorn's loop='none' is gone"
    assert config.timeout_graceful_shutdown == 1


def test_the_protocol_state_the_connection_guard_reads_is_where_it_was() -> None:
    """connections.GuardedProtocol extends HttpToolsProtocol.connection_made and reads its
    request cycle and keep-alive timer (no hook of its own on the hot path)."""
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    init = inspect.getsource(HttpToolsProtocol.__init__)
    for name in ("self.cycle", "self.timeout_keep_alive_task", "self.transport",
                 "self.connections", "self.flow"):
        assert name in init, f"HttpToolsProtocol no longer sets {name}"
    assert list(inspect.signature(HttpToolsProtocol.connection_made).parameters) == [
        "self", "transport"]
    cycle = inspect.getsource(RequestResponseCycle.__init__)
    for name in ("self.response_complete", "self.more_body", "self.message_event"):
        assert name in cycle, f"RequestResponseCycle no longer sets {name}"
    assert "self.read_paused" in inspect.getsource(FlowControl.__init__)
    # the keep-alive timer is armed once a response is complete, dropped when data comes
    assert "self.timeout_keep_alive_task = self.loop.call_later" in inspect.getsource(
        HttpToolsProtocol.on_response_complete)
    assert "_unset_keepalive_if_required" in inspect.getsource(
        HttpToolsProtocol.data_received)
