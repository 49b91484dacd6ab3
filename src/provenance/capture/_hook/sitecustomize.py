"""The audit hook of ``provenance run``, loaded in the traced Python process(es).

``provenance run`` puts this folder first on PYTHONPATH and names an events file in
PROVENANCE_CAPTURE_EVENTS. At start-up this module installs a ``sys.addaudithook`` hook that
appends one JSON line per distinct (file, read/write) to that file: ``{"e": "open", "p": path,
"w": bool}``, ``{"e": "rename", "s": src, "d": dst}``, once ``{"e": "start", ...}`` and, when
something goes wrong in the hook, ``{"e": "error", "m": message}``. Files under the
interpreter's prefixes (the standard library, site-packages), this folder, ``/proc``, ``/dev``
and ``/sys`` are left out. The parent hashes the files after the command exits.

Standard library only, and it never raises into the traced program: tracing must not break
the job. Then it imports the ``sitecustomize`` this one shadows, if there is one.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys


def _install() -> None:
    target = os.environ.get("PROVENANCE_CAPTURE_EVENTS")
    if not target:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, here}
    for p in sys.path:
        if p.endswith(("site-packages", "dist-packages")):
            prefixes.add(p)
    skip = tuple(sorted({os.path.realpath(p).rstrip(os.sep) + os.sep for p in prefixes if p}))
    skip += tuple(p.rstrip(os.sep) + os.sep for p in prefixes if p)
    skip += ("/proc/", "/dev/", "/sys/")
    writing = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    seen: set[tuple[str, bool]] = set()
    errors = [0]

    def emit(record: dict[str, object]) -> None:
        os.write(fd, (json.dumps(record) + "\n").encode())

    def absolute(path: object) -> str | None:
        if not isinstance(path, str | bytes | os.PathLike):
            return None
        text = os.fsdecode(path)
        if not os.path.isabs(text):
            text = os.path.join(os.getcwd(), text)
        text = os.path.normpath(text)
        if text.startswith(skip) or text.endswith((".pyc", ".pyo")):
            return None
        return text

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event != "open" and event != "os.rename":
            return
        try:
            if event == "open":
                path = absolute(args[0])
                if path is None:
                    return
                mode, flags = args[1], args[2]
                if isinstance(flags, int):
                    write = bool(flags & writing)
                else:
                    write = any(c in str(mode or "") for c in "wax+")
                key = (path, write)
                if key not in seen:
                    seen.add(key)
                    emit({"e": "open", "p": path, "w": write})
            else:
                src, dst = absolute(args[0]), absolute(args[1])
                if dst is not None:
                    emit({"e": "rename", "s": src, "d": dst})
        except Exception as exc:  # the traced program must never see an error of ours
            errors[0] += 1
            if errors[0] <= 5:
                with contextlib.suppress(OSError):
                    emit({"e": "error", "m": f"{type(exc).__name__}: {exc}"})

    emit({"e": "start", "pid": os.getpid(), "argv": list(sys.argv), "cwd": os.getcwd()})
    sys.addaudithook(hook)


def _chain() -> None:
    """Import the sitecustomize this module shadows (the next one on sys.path)."""
    here = os.path.dirname(os.path.abspath(__file__))
    mine = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        importlib.import_module("sitecustomize")
    except ImportError:
        if mine is not None:
            sys.modules["sitecustomize"] = mine
    finally:
        sys.path[:] = saved


try:
    _install()
except Exception as _exc:  # tracing must not break the job
    sys.stderr.write(f"provenance: file tracing disabled: {_exc}\n")
_chain()
