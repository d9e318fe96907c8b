from __future__ import annotations

import pytest

from msshop.instruments.demo import Step, StepFailed, check, load


def test_a_step_must_print_its_expected_line_and_fail_only_if_meant_to() -> None:
    check(Step("say", "msshop status", expect="ok"), 1, 0, "all ok")
    check(Step("say", "msshop query", fails=True, expect="down"), 2, 1, "error: x is down")
    with pytest.raises(StepFailed, match="step 3 did not print 'ok'"):
        check(Step("say", "msshop status", expect="ok"), 3, 0, "nothing")
    with pytest.raises(StepFailed, match="step 4 failed"):
        check(Step("say", "msshop status"), 4, 1, "")
    with pytest.raises(StepFailed, match="step 5 was meant to fail"):
        check(Step("say", "msshop status", fails=True), 5, 0, "")


def test_every_shipped_demo_loads_and_runs_only_msshop_commands() -> None:
    for name in ("lesson", "outage", "lag", "replay", "saga"):
        scenario = load(name)
        assert scenario.steps[0].run == "msshop up --detach"
        assert scenario.steps[-1].run == "msshop down"
        assert all(step.run.startswith("msshop ") and step.say for step in scenario.steps)
