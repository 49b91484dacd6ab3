"""What the stack loops over: a :class:`Service` starts, stops and probes one part (anvil,
kubo, a Docker engine, the contracts), and says how it is in a :class:`ServiceStatus`.

A status is values only, so the CLI prints it and tests compare it without any client::

    status = ServiceStatus("docker", ok=False, endpoint="unix:///var/run/docker.sock",
                           required=False, error="no engine answers")
    StackStatus(None, "/tmp/state", (status,)).ok       # True: docker is not required
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Notify = Callable[[str], None]
"""Receives one line per step (``chain: anvil started at ...``)."""


def quiet(_: str) -> None:
    """A :data:`Notify` that says nothing."""
    return None


@dataclass(frozen=True)
class ServiceStatus:
    """One part of the stack as a probe found it.

    ``name`` is the part (``chain``, ``ipfs``, ``docker``, ``contracts``); ``ok`` whether it
    answers as configured; ``required`` whether this configuration needs it (a part that is
    not required does not make the stack unhealthy); ``managed`` whether ``provenance up`` of
    this state dir runs it; ``detail`` one human line (a version, addresses); ``note`` why a
    failing part is not required; ``facts`` the part's own JSON fields (``rpc_url``,
    ``chain_id``, ``version``, ...).
    """

    name: str
    ok: bool
    endpoint: str | None
    required: bool = True
    managed: bool = False
    version: str | None = None
    detail: str = ""
    error: str | None = None
    note: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.facts)
        out.update(ok=self.ok, required=self.required, managed=self.managed)
        out["endpoint"] = self.endpoint
        if self.version is not None:
            out["version"] = self.version
        if self.error is not None:
            out["error"] = self.error
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class StackStatus:
    """Every part's status, and where the configuration and state live."""

    config: str | None
    state_dir: str
    parts: tuple[ServiceStatus, ...]

    @property
    def ok(self) -> bool:
        """True when every required part is ok."""
        return all(part.ok or not part.required for part in self.parts)

    def __getitem__(self, name: str) -> ServiceStatus:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(name)

    def problems(self, names: tuple[str, ...] | None = None) -> list[str]:
        """``part: error`` of each required part that is not ok; with ``names``, of each of
        those parts that is not ok, required or not (the caller needs them)."""
        wanted = [p for p in self.parts if (p.required if names is None else p.name in names)]
        return [f"{p.name}: {p.error or 'not ok'}" for p in wanted if not p.ok]

    def to_json(self) -> dict[str, Any]:
        """What ``provenance status --json`` prints: ``config``, ``state_dir``, ``ok`` and
        one object per part."""
        out: dict[str, Any] = {"config": self.config, "state_dir": self.state_dir, "ok": self.ok}
        out.update((part.name, part.to_json()) for part in self.parts)
        return out


class Service(Protocol):
    """One part of the stack. ``name`` is its pid file's name (``anvil``, ``ipfs``,
    ``dockerd``, ``contracts``); ``up`` starts it unless it runs or is not ours to start
    (a remote endpoint is only probed), ``stop`` stops it only when this stack started it."""

    @property
    def name(self) -> str: ...

    def up(self, notify: Notify) -> None: ...

    def stop(self) -> bool: ...

    def status(self) -> ServiceStatus: ...

    def is_running(self) -> bool: ...
