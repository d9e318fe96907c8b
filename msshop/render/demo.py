"""A demo on a terminal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.text import Text

from msshop.render.console import note


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
        self.out.print(Text(f"(a sandbox of its own: {sandbox}, on free ports; removed at the "
                            "end)", style="dim"), soft_wrap=True)

    def step(self, narration: str, command: str) -> None:
        """What the step shows, and the command the audience can type themselves."""
        self.out.print()
        self.out.print(Text(narration, style="bold"))
        for line in command.splitlines():
            self.out.print(Text("$ ", style="dim") + Text(line, style="cyan"), soft_wrap=True)

    def output(self, text: str) -> None:
        self.out.file.write(text if text.endswith("\n") or not text else text + "\n")
        self.out.file.flush()

    def wait(self) -> None:
        self.out.print(Text("(Enter for the next step)", style="dim"), end="")
        try:
            input()
        except EOFError:
            self.out.print()


def demo_done(out: Console, name: str, steps: int) -> None:
    note(out, f"demo '{name}' done: {steps} steps, nothing left behind")
