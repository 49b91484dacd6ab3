"""Zero-code capture: run a training command with an audit hook in its Python processes.

:func:`run_traced` starts the command with ``capture/_hook`` first on PYTHONPATH, so every
Python process of the job (children included) loads its ``sitecustomize``, which records each
file opened for reading or writing (``sys.addaudithook``, event ``open``, and ``os.rename``
targets) into an events file. The hook costs one string comparison per audit event and one
small write per distinct file, so the job is not slowed noticeably. After the command exits,
:func:`certify_command` hashes what was read (inputs) and written (outputs) and fills a
:class:`~provenance.capture.tracker.Run`.

Not seen: files opened by native code without Python's ``open`` (e.g. pyarrow's own file
system behind ``pandas.read_parquet(path)``), processes that are not Python or run with
``-I``/``-S``. A missing trace is a warning in the certificate (an error with ``strict``).
Model files written by native code (``torch.save``, safetensors' ``save_file``,
``save_pretrained``) are found another way: the working folder is scanned before and after
the command (at most :data:`MAX_SCANNED` files; hidden folders and virtual environments
skipped), and new or changed files that are models by :func:`is_model_file` count as written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from provenance.capture.tracker import Run
from provenance.certificate import EntryPoint, timestamp
from provenance.errors import CaptureError, ProvenanceError
from provenance.hashing import format_digest, hash_file
from provenance.manifest import FileManifest, manifest_of_files
from provenance.model_formats import UnsupportedModelFormat, detect_file, detect_format

HOOK_DIR = Path(__file__).resolve().parent / "_hook"
EVENTS_VARIABLE = "PROVENANCE_CAPTURE_EVENTS"
CODE_SUFFIXES = (".py", ".pyi", ".pyx", ".ipynb", ".so", ".pth")
MODEL_SUFFIXES = (
    ".joblib",
    ".pkl",
    ".pickle",
    ".safetensors",
    ".onnx",
    ".pt",
    ".pth",
    ".ckpt",
    ".npz",
    ".npy",
    ".h5",
    ".hdf5",
    ".keras",
    ".gguf",
    ".bin",
    ".pb",
    ".tflite",
    ".mlmodel",
    ".ubj",
    ".cbm",
    ".msgpack",
)
"""Files a command writes with these suffixes are its model, and so are files whose content is
in one of the model formats (:func:`provenance.model_formats.detect_file`: a ``.json`` or
``.txt`` only so, e.g. an XGBoost or LightGBM model); other written files, such as metrics or
logs, are recorded as outputs but are not part of the model digest."""
MAX_SCANNED = 100_000
"""Most files of the working folder compared before and after the command; a larger folder
is not scanned (a warning says so)."""
_SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules", "site-packages", "provenance-runs"})
SYSTEM_PREFIXES = ("/usr/", "/etc/", "/lib/", "/lib64/", "/bin/", "/sbin/", "/nix/store/")
"""Files of the operating system (time zones, certificates, shared libraries) are not inputs."""


@dataclass(frozen=True)
class Traced:
    """What a traced command did."""

    argv: tuple[str, ...]
    cwd: Path
    exit_code: int
    started_at: str
    ended_at: str
    reads: tuple[Path, ...]  # read, never written: the inputs
    writes: tuple[Path, ...]  # written (and existing at the end): the outputs
    intermediates: tuple[Path, ...]  # written and read, e.g. data the job prepared itself
    entry_point: Path | None
    python_processes: int
    problems: tuple[str, ...]


def run_traced(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    events_file: Path,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> Traced:
    """Run ``argv`` (stdin, stdout, stderr inherited) with file tracing; ``env`` is the child's
    whole environment (the caller decides; this module reads none)."""
    if not argv:
        raise CaptureError("no command to run")
    child_env = dict(env)
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(HOOK_DIR), env.get("PYTHONPATH", "")) if p
    )
    child_env[EVENTS_VARIABLE] = str(events_file)
    events_file.parent.mkdir(parents=True, exist_ok=True)
    events_file.write_bytes(b"")
    before = scan(cwd)
    started = timestamp(clock())
    try:
        code = subprocess.run(list(argv), cwd=cwd, env=child_env, check=False).returncode
    except FileNotFoundError:
        raise CaptureError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise CaptureError(f"command not executable: {argv[0]}") from None
    ended = timestamp(clock())
    traced = _parse(tuple(argv), cwd, code, started, ended, events_file)
    return _with_scanned_models(traced, before, scan(cwd))


Scan = dict[Path, tuple[int, int, int]] | None


def scan(folder: Path) -> Scan:
    """Every regular file under ``folder`` (links not followed; hidden folders, virtual
    environments and :data:`_SKIPPED_FOLDERS` skipped) with its inode, size and modification
    time, or None past :data:`MAX_SCANNED` files."""
    found: dict[Path, tuple[int, int, int]] = {}
    for top, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _SKIPPED_FOLDERS
            and not (Path(top, d) / "pyvenv.cfg").exists()
        ]
        for name in filenames:
            path = Path(top, name)
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[path] = (info.st_ino, info.st_size, info.st_mtime_ns)
                if len(found) > MAX_SCANNED:
                    return None
    return found


def _with_scanned_models(traced: Traced, before: Scan, after: Scan) -> Traced:
    """``traced`` with the model files the scan found new or changed (written by native code
    the audit hook does not see) among its writes."""
    if before is None or after is None:
        problem = (
            f"the working folder holds more than {MAX_SCANNED} files: model files written by "
            "native code (torch.save, safetensors) are not looked for; pass --model PATH"
        )
        return replace(traced, problems=(*traced.problems, problem))
    known = set(traced.writes)
    found = tuple(
        path
        for path, seen in after.items()
        if before.get(path) != seen and path not in known and is_model_file(path)
    )
    return replace(traced, writes=(*traced.writes, *found)) if found else traced


def _parse(
    argv: tuple[str, ...], cwd: Path, code: int, started: str, ended: str, events_file: Path
) -> Traced:
    reads: dict[str, None] = {}
    writes: dict[str, None] = {}
    problems: list[str] = []
    entry: Path | None = None
    starts = 0
    hook_dir = str(HOOK_DIR)
    for line in events_file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"unreadable trace line: {line[:80]!r}")
            continue
        kind = event.get("e")
        if kind == "start":
            starts += 1
            args = event.get("argv") or []
            if entry is None and args and args[0] not in ("-c", "-m", ""):
                candidate = Path(event.get("cwd", str(cwd))) / args[0]
                if candidate.is_file():
                    entry = candidate.resolve()
        elif kind == "open":
            path = str(event["p"])
            if path.startswith((hook_dir, *SYSTEM_PREFIXES)) or path == str(events_file):
                continue
            (writes if event.get("w") else reads)[path] = None
        elif kind == "rename":
            writes[str(event["d"])] = None
        elif kind == "error":
            problems.append(f"trace hook error: {event.get('m')}")
    if starts == 0:
        problems.append(
            "no Python process reported its file accesses (not a Python command, or run with "
            "-I/-S): inputs and outputs are not recorded"
        )
    regular_reads = tuple(Path(p) for p in reads if p not in writes and Path(p).is_file())
    regular_writes = tuple(Path(p) for p in writes if Path(p).is_file())
    intermediates = tuple(p for p in regular_writes if str(p) in reads)
    return Traced(
        argv=argv,
        cwd=cwd,
        exit_code=code,
        started_at=started,
        ended_at=ended,
        reads=regular_reads,
        writes=regular_writes,
        intermediates=intermediates,
        entry_point=entry,
        python_processes=starts,
        problems=tuple(problems),
    )


def display_name(path: Path, cwd: Path) -> str:
    """A path as recorded: relative to the working directory when inside it, else absolute."""
    try:
        return path.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _manifest(run: Run, what: str, paths: Sequence[Path], cwd: Path) -> FileManifest | None:
    if not paths:
        return None
    try:
        return manifest_of_files({display_name(p, cwd): p for p in paths})
    except ProvenanceError as exc:
        run.warn(f"{what} not hashed: {exc}")
        return None


def is_model_file(path: Path) -> bool:
    """A file that is model weights: by its name (:data:`MODEL_SUFFIXES`) or its content."""
    return path.suffix.lower() in MODEL_SUFFIXES or detect_file(path) is not None


def _with_hugging_face_folders(chosen: list[Path], final: list[Path]) -> list[Path]:
    """``chosen``, plus every file written into a folder that the files written there make a
    Hugging Face folder (``save_pretrained``: its config.json, tokenizer files, ...)."""
    by_folder: dict[Path, list[Path]] = {}
    for path in final:
        by_folder.setdefault(path.parent, []).append(path)
    whole: set[Path] = set()
    for folder in {p.parent for p in chosen}:
        written = by_folder.get(folder, [])
        if not any(p.name == "config.json" for p in written):
            continue
        try:
            found = detect_format(folder, files=[p.name for p in written])
        except UnsupportedModelFormat:
            continue
        if found.format.name == "huggingface":
            whole.update(written)
    return [p for p in final if p in whole or p in chosen]


def _files_in(folder: Path) -> list[Path]:
    """The files ``folder`` holds (none when it holds a folder too: not a model-only folder)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return entries if all(p.is_file() for p in entries) else []


def model_files_written(run: Run, traced: Traced) -> list[Path]:
    """The files of a traced command that are its model: those written and not read back that
    are model files (:func:`is_model_file`), with the rest of a Hugging Face folder they are
    in; when there are none, every file written (with a warning)."""
    final = [p for p in traced.writes if p not in traced.intermediates] or list(traced.writes)
    chosen = [p for p in final if is_model_file(p)]
    if chosen:
        return _with_hugging_face_folders(chosen, final)
    if not final:
        raise CaptureError("the command wrote no file that could be the model; pass --model PATH")
    names = ", ".join(display_name(p, traced.cwd) for p in final)
    run.warn(
        f"no file written has a model suffix ({', '.join(MODEL_SUFFIXES[:6])}, ...): every "
        f"file written became the model ({names}); pass --model to choose"
    )
    return final


def certify_command(
    run: Run,
    traced: Traced,
    *,
    model: Sequence[Path] = (),
    data: Sequence[Path] | None = None,
    store_data: bool = False,
) -> None:
    """Fill ``run`` from a traced command: command, entry point, exit code, times, the files
    read and written; the model (``model`` paths, else the model files written, see
    :func:`model_files_written`) and the datasets (``data`` paths, else every file read,
    including those the job wrote first, that is not code or the entry point; stored when
    ``store_data``)."""
    cwd = traced.cwd
    for problem in traced.problems:
        run.warn(problem)
    entry = None
    if traced.entry_point is not None:
        try:
            digest = format_digest(hash_file(traced.entry_point).digest)
        except ProvenanceError as exc:
            run.warn(f"entry point not hashed: {exc}")
            digest = None
        entry = EntryPoint(path=display_name(traced.entry_point, cwd), digest=digest)
    run.record_command(
        traced.argv,
        entry_point=entry,
        exit_code=traced.exit_code,
        inputs=_manifest(run, "inputs", traced.reads, cwd),
        outputs=_manifest(run, "outputs", traced.writes, cwd),
        started_at=traced.started_at,
        ended_at=traced.ended_at,
    )
    if model:
        if len(model) == 1:
            run.log_model(model[0])
        else:
            run.log_model_files({display_name(p, cwd): p for p in model})
    else:
        written = model_files_written(run, traced)
        folder = written[0].parent
        if len(written) > 1 and set(written) == set(_files_in(folder)):
            run.log_model(folder)  # a folder of the model only (save_pretrained): as a folder
        else:
            run.log_model_files({display_name(p, cwd): p for p in written})
    if data is None:
        data = [
            p
            for p in (*traced.reads, *traced.intermediates)
            if p.suffix.lower() not in CODE_SUFFIXES and p != traced.entry_point
        ]
    for path in data:
        try:
            run.log_dataset(path, role="train", name=display_name(path, cwd), store=store_data)
        except ProvenanceError as exc:
            if store_data:
                raise  # storing was asked for: its failure is an error, not a capture warning
            run.warn(f"dataset {display_name(path, cwd)} not recorded: {exc}")
