"""A demo on a terminal."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console
from rich.text import Text

from msshop.render.console import note, wrapped

_STYLE_CODES = re.compile(r"\x1b\[[0-9;]*m")


class DemoStage:
    """A demo on a terminal: its title, each step's narration and command, the command's
    output as it printed it, and the wait for Enter (msshop.instruments.demo.Stage)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.width = out.width
        self.colour = out.color_system is not None and not out.no_color

    def title(self, title: str, summary: str, sandbox: Path) -> None:
        self.out.print(Text(title, style="bold"))
        self.out.print(Text(" ".join(summary.split())))
        note(self.out, f"(a sandbox of its own: {sandbox}, on free ports; removed at the end)",
             style="dim")

    def step(self, narration: str, command: str) -> None:
        """What the step shows, and the command the audience can type themselves."""
        self.out.print()
        self.out.print(Text(narration, style="bold"))
        for line in command.splitlines():
            self.out.print(Text("$ ", style="dim") + Text(line, style="cyan"), soft_wrap=True)

    def output(self, text: str) -> None:
        """A command's output as it printed it, but within the stage's width: an error line
        (one line however long, for scripts) is wrapped here as a terminal would show it."""
        lines = []
        for line in text.splitlines():
            if len(_STYLE_CODES.sub("", line)) > self.width:
                lines += wrapped(_STYLE_CODES.sub("", line), self.width)
            else:
                lines.append(line)
        if lines:
            self.out.file.write("\n".join(lines) + "\n")
        self.out.file.flush()

    def wait(self) -> None:
        self.out.print(Text("(Enter for the next step)", style="dim"), end="")
        try:
            input()
        except EOFError:
            self.out.print()


def demo_summary(out: Console, name: str, steps: int) -> None:
    note(out, f"demo '{name}' done: {steps} steps, nothing left behind")
