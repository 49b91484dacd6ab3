"""What the demo reports: the narration interface the story talks to (the CLI implements it
with Rich; tests use :class:`Silent`), the outcome of each attack, and the summary as a Rich
table or JSON. Nothing here prints."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from provenance.verify import Check, Report

Advance = Callable[[int], None]

MARKS = {"pass": "\u2714", "fail": "\u2718", "warn": "!", "skip": "-"}
"""How a check's status is shown: passed, failed, warning, skipped."""


class Narrator(Protocol):
    """How the story tells what it does."""

    def stage(self, title: str, explanation: str) -> AbstractContextManager[None]:
        """A stage of the story: a title and a short explanation, then its work."""
        ...

    def working(self, what: str, total: int | None = None) -> AbstractContextManager[Advance]:
        """A long step: a spinner (``total`` None) or a progress bar; yields ``advance(n)``."""
        ...

    def done(self, text: str) -> None:
        """One thing done (or checked) in the current stage."""
        ...

    def check(self, status: str, text: str, indent: int = 0) -> None:
        """One line of a verification report: ``status`` is a key of :data:`MARKS`."""
        ...

    def caught(self, text: str) -> None:
        """An attack stopped by a check: the check's own message."""
        ...

    def missed(self, text: str) -> None:
        """An attack that went unnoticed (the demo then fails)."""
        ...


class Silent:
    """A narrator that keeps the lines and shows nothing (tests, ``--json`` without a TTY)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextlib.contextmanager
    def stage(self, title: str, explanation: str) -> Iterator[None]:
        self.lines.append(f"== {title}")
        yield

    @contextlib.contextmanager
    def working(self, what: str, total: int | None = None) -> Iterator[Advance]:
        self.lines.append(f".. {what}")
        yield lambda _n: None

    def done(self, text: str) -> None:
        self.lines.append(f"ok {text}")

    def check(self, status: str, text: str, indent: int = 0) -> None:
        self.lines.append(f"{'  ' * indent}{MARKS[status]} {text}")

    def caught(self, text: str) -> None:
        self.lines.append(f"caught {text}")

    def missed(self, text: str) -> None:
        self.lines.append(f"MISSED {text}")


def _counts(checks: Sequence[Check]) -> str:
    found = Counter(str(c.status) for c in checks)
    parts = [
        f"{found[status]} {word}"
        for status, word in (
            ("pass", "pass"),
            ("fail", "failed"),
            ("warn", "warning(s)"),
            ("skip", "skipped"),
        )
        if found[status]
    ]
    return f"{len(checks)} checks: {', '.join(parts)}"


def tell_report(
    narrator: Narrator, title: str, report: Report, *, brief: str | None = None
) -> None:
    """A verification report through the narrator: a heading line (passed or failed, with the
    counts), then one line per check (the subject shown when it is not the report's own).
    ``brief`` (what the target names, e.g. "Model Beta", already told by its own report): the
    checks about it are counted in one line, except the failed ones, which are shown."""
    own = report.checks[0].subject if report.checks else report.target
    narrator.check("pass" if report.ok else "fail", f"{title}: {_counts(report.checks)}")
    counted: list[Check] = []
    for c in report.checks:
        if brief is not None and c.subject != own and c.name != "lookup" and not c.failed:
            counted.append(c)
            continue
        about = "" if c.subject == own else f" ({c.subject})"
        narrator.check(str(c.status), f"{c.name}{about}: {c.detail}", 1)
    if counted:
        narrator.check("pass", f"and {brief}'s {_counts(counted)} (as in its report above)", 1)


@dataclass(frozen=True)
class Detection:
    """One check run against what an attack changed: the error it raised (type and message),
    or ``error`` None when it raised nothing (the attack went unnoticed by it)."""

    check: str
    expected: str
    error: str | None
    message: str | None

    @property
    def detected(self) -> bool:
        return self.error == self.expected

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "expected_error": self.expected,
            "error": self.error,
            "message": self.message,
            "detected": self.detected,
        }


@dataclass(frozen=True)
class AttackOutcome:
    """One of the paper's five attacks, simulated, and the checks that ran against it."""

    number: int
    attack: str
    changed: str
    detections: tuple[Detection, ...]

    @property
    def detected(self) -> bool:
        return bool(self.detections) and all(d.detected for d in self.detections)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "attack": self.attack,
            "changed": self.changed,
            "detected": self.detected,
            "checks": [d.to_json() for d in self.detections],
        }


@dataclass
class Summary:
    """Everything the demo did, for the final table and ``--json``."""

    work_dir: str
    images: bool
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    verification: list[dict[str, Any]] = field(default_factory=list)
    attacks: list[AttackOutcome] = field(default_factory=list)
    response: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def detected(self) -> int:
        return sum(a.detected for a in self.attacks)

    @property
    def ok(self) -> bool:
        return len(self.attacks) == 5 and self.detected == 5

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "work_dir": self.work_dir,
            "images": self.images,
            "models": self.models,
            "files": self.files,
            "verification": self.verification,
            "attacks": [a.to_json() for a in self.attacks],
            "detected": self.detected,
            "total": len(self.attacks),
            "response": self.response,
            "seconds": round(self.seconds, 1),
        }


def attack_table(summary: Summary) -> Table:
    """The final table: attack, what was changed, which check caught it, result."""
    table = Table(
        title=f"The five attacks of section 3.1: {summary.detected}/{len(summary.attacks)} detected",
        title_justify="left",
        show_lines=True,
        expand=True,
    )
    table.add_column("#", justify="right")
    table.add_column("attack", ratio=2)
    table.add_column("what was changed", ratio=2)
    table.add_column("caught by: check (error), its message", ratio=5, overflow="fold")
    table.add_column("result")
    for outcome in summary.attacks:
        checks = Text()
        for n, d in enumerate(outcome.detections):
            checks.append(("\n" if n else "") + f"{d.check} ({d.error or 'no error'})")
            if d.message:
                checks.append(f"\n{d.message}", style="dim")
        result = "[green]detected[/]" if outcome.detected else "[red]NOT DETECTED[/]"
        table.add_row(str(outcome.number), outcome.attack, outcome.changed, checks, result)
    return table
