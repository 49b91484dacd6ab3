"""Zero-code capture: the audit hook in real child processes (no services needed)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from provenance.capture.runner import HOOK_DIR, Traced, certify_command, run_traced
from provenance.capture.tracker import Run
from provenance.errors import CaptureError
from provenance.manifest import manifest_of
from provenance.model_formats import SUPPORTED

SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys

    data = open("data.csv").read()
    with open("notes.txt", "a") as f:
        f.write("appended")
    fd = os.open("raw.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"raw")
    os.close(fd)
    with open("tmp.part", "w") as f:
        f.write(data.upper())
    os.replace("tmp.part", "model.txt")
    subprocess.run([sys.executable, "-c", "open('child.txt', 'w').write('from a child')"], check=True)
    import json  # the interpreter's own files are not inputs
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    """
)


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "train.py").write_text(SCRIPT)
    (folder / "data.csv").write_text("a,b\n1,2\n")
    (folder / "notes.txt").write_text("")
    return folder


def test_reads_and_writes_of_every_python_process_are_traced(tmp_path: Path) -> None:
    folder = workdir(tmp_path)
    traced = run_traced(
        [sys.executable, "train.py"], cwd=folder, env=env(), events_file=tmp_path / "ev.jsonl"
    )
    assert traced.exit_code == 0 and traced.problems == ()
    assert traced.python_processes == 2
    assert traced.entry_point == folder / "train.py"
    assert sorted(p.name for p in traced.reads) == ["data.csv", "train.py"]
    assert sorted(p.name for p in traced.writes) == [
        "child.txt",
        "model.txt",
        "notes.txt",
        "raw.bin",
    ]
    run = Run("job", output_dir=tmp_path / "out", environment=False, source_dir=folder)
    certify_command(run, traced)
    cert = run.finish()
    assert cert.training.command == (sys.executable, "train.py")
    assert cert.training.exit_code == 0
    assert cert.training.entry_point is not None and cert.training.entry_point.path == "train.py"
    assert cert.training.inputs is not None
    assert [f.path for f in cert.training.inputs.files] == ["data.csv", "train.py"]
    # only a file with a model suffix is the model; every written file is an output
    assert [f.path for f in cert.model.manifest.files] == ["raw.bin"]
    assert cert.training.outputs is not None
    assert [f.path for f in cert.training.outputs.files] == [
        "child.txt",
        "model.txt",
        "notes.txt",
        "raw.bin",
    ]
    assert [d.name for d in cert.data.datasets] == ["data.csv"]
    assert cert.data.datasets[0].manifest is not None
    assert cert.data.datasets[0].manifest.kind == "table"


def test_the_exit_code_is_recorded(tmp_path: Path) -> None:
    folder = workdir(tmp_path)
    traced = run_traced(
        [sys.executable, "train.py", "3"], cwd=folder, env=env(), events_file=tmp_path / "e"
    )
    assert traced.exit_code == 3


def test_a_command_that_is_not_python_is_a_warning_or_strict_error(tmp_path: Path) -> None:
    folder = workdir(tmp_path)
    traced = run_traced(
        ["cp", "data.csv", "copy.csv"], cwd=folder, env=env(), events_file=tmp_path / "e"
    )
    assert traced.exit_code == 0 and traced.reads == () and traced.writes == ()
    message = (
        "no Python process reported its file accesses (not a Python command, or run with "
        "-I/-S): inputs and outputs are not recorded"
    )
    assert traced.problems == (message,)
    run = Run("cp", output_dir=tmp_path / "out", environment=False, source_dir=folder)
    certify_command(run, traced, model=[folder / "copy.csv"], data=[folder / "data.csv"])
    unknown = (
        "model format not recognised, recorded as 'files': copy.csv is not in a supported "
        f"model format; supported: {SUPPORTED} (the model verifies, but serving it needs one "
        "of these formats)"
    )
    assert run.finish().warnings == (message, unknown)
    strict = Run("cp", output_dir=tmp_path / "out", environment=False, strict=True)
    with pytest.raises(CaptureError) as exc:
        certify_command(strict, traced, model=[folder / "copy.csv"])
    assert str(exc.value) == message
    with pytest.raises(CaptureError, match=r"^command not found: no-such-tool$"):
        run_traced(["no-such-tool"], cwd=folder, env=env(), events_file=tmp_path / "e")


def test_a_sitecustomize_of_the_job_still_runs(tmp_path: Path) -> None:
    folder = workdir(tmp_path)
    own = tmp_path / "site"
    own.mkdir()
    (own / "sitecustomize.py").write_text("open('site-marker.txt', 'w').write('ran')\n")
    traced = run_traced(
        [sys.executable, "-c", "open('data.csv').read()"],
        cwd=folder,
        env=env() | {"PYTHONPATH": str(own)},
        events_file=tmp_path / "e",
    )
    assert (folder / "site-marker.txt").read_text() == "ran"
    # the job's own sitecustomize is code it ran: an input like any other
    assert sorted(p.name for p in traced.reads) == ["data.csv", "sitecustomize.py"]
    assert [p.name for p in traced.writes] == ["site-marker.txt"]
    assert traced.entry_point is None
    assert str(HOOK_DIR) not in {str(p.parent) for p in traced.reads}


def traced_writing(tmp_path: Path, *names: str) -> Traced:
    folder = tmp_path / "job"
    folder.mkdir()
    # a model file holds a real pickle, so its format is detected; the others one byte
    code = "import pickle; " + "; ".join(
        f"open({n!r}, 'wb').write(pickle.dumps(0, protocol=5))"
        if n.endswith((".joblib", ".pkl"))
        else f"open({n!r}, 'w').write('x')"
        for n in names
    )
    return run_traced(
        [sys.executable, "-c", code], cwd=folder, env=env(), events_file=tmp_path / "ev.jsonl"
    )


def test_metrics_and_logs_beside_the_model_are_not_the_model(tmp_path: Path) -> None:
    """Before: every file written became the model, so a metrics.json joined its digest and
    `verify model.joblib` found no registered model with that digest."""
    traced = traced_writing(tmp_path, "model.joblib", "metrics.json", "train.log")
    run = Run("job", output_dir=tmp_path / "out", environment=False, source_dir=tmp_path)
    certify_command(run, traced)
    cert = run.finish()
    assert [f.path for f in cert.model.manifest.files] == ["model.joblib"]
    assert cert.model.digest == manifest_of(tmp_path / "job" / "model.joblib").root
    assert cert.model.format == "joblib" and cert.warnings == ()


def test_without_a_model_suffix_every_written_file_is_the_model_with_a_warning(
    tmp_path: Path,
) -> None:
    traced = traced_writing(tmp_path, "weights.out", "metrics.json")
    run = Run("job", output_dir=tmp_path / "out", environment=False, source_dir=tmp_path)
    certify_command(run, traced)
    cert = run.finish()
    assert [f.path for f in cert.model.manifest.files] == ["metrics.json", "weights.out"]
    assert cert.model.format == "files"
    assert cert.warnings == (
        "no file written has a model suffix (.joblib, .pkl, .pickle, .safetensors, .onnx, .pt, "
        "...): every file written became the model (weights.out, metrics.json); pass --model "
        "to choose",
        "model format not recognised, recorded as 'files': no file in "
        f"{(tmp_path / 'job').resolve()} is in a supported model format; supported: "
        f"{SUPPORTED} (the model verifies, but serving it needs one of these formats)",
    )
