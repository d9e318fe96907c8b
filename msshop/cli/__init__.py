"""The `msshop` command: one module per topic, each command a function that parses, calls
one library function, and hands what came of it to `emit` (emit.py) as an Outcome.

Imports are local to the commands: a command that talks to a running sandbox must not pay
for importing the server stack (tests/test_architecture.py checks it), and `msshop --help`
imports no more than typer and the contracts.
"""

from __future__ import annotations

from msshop.cli import (
    asking,
    bench,
    bus,
    challenge,
    demo,
    experiments,
    faults,
    protocol,
    repair,
    sandbox,
    shop,
    traces,
)
from msshop.cli.app import app, main

__all__ = ["app", "main"]

# In the order `msshop --help` lists them: the sandbox, faults, the shop, the question,
# traces, the bus, measuring, teaching,
# your own services, and the challenges built on them.
for command in (
    sandbox.up, sandbox.down, sandbox.status, sandbox.inspect, sandbox.logs, sandbox.wait,
    sandbox.stop, sandbox.start, sandbox.restart, sandbox.kill, sandbox.ui,
    faults.chaos, faults.trespass, faults.poison,
    shop.signup, shop.products, shop.buy, shop.sagas, shop.seed,
    asking.query, asking.compare, traces.trace, traces.traces, asking.verify,
    bus.events, bus.replay, bus.deadletters, repair.check, repair.repair,
    bench.bench, experiments.experiment, demo.demo,
    protocol.protocol, protocol.new, challenge.challenge,
):
    app.command()(command)
