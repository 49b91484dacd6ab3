"""The git state of a source tree: commit, dirty flag, digest of the uncommitted diff, remote."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from provenance.certificate import Source
from provenance.errors import CaptureError
from provenance.hashing import format_digest


def _git(folder: Path, *args: str) -> str | None:
    """stdout of a git command, None when it fails (e.g. no commit yet, no remote)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CaptureError(f"git {args[0]} failed in {folder}: {exc}") from exc
    return done.stdout.strip() if done.returncode == 0 else None


def public_url(url: str) -> str:
    """A remote URL without credentials (``https://token@host/x`` -> ``https://host/x``)."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def diff_digest(folder: Path) -> str:
    """SHA-256 of ``git diff HEAD --binary`` (tracked changes, staged or not), streamed."""
    h = hashlib.sha256()
    try:
        with subprocess.Popen(
            ["git", "-C", str(folder), "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as proc:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(1 << 20):
                h.update(chunk)
            code = proc.wait(timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CaptureError(f"git diff failed in {folder}: {exc}") from exc
    if code != 0:
        raise CaptureError(f"git diff failed in {folder} (exit {code})")
    return format_digest(h.digest())


def git_state(folder: Path) -> Source | None:
    """The state of the git work tree holding ``folder``; None when it is not in one (or git
    is not installed)."""
    if shutil.which("git") is None or _git(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=normal") or ""
    lines = [line for line in status.splitlines() if line]
    untracked = sum(1 for line in lines if line.startswith("??"))
    dirty = bool(lines)
    remote = _git(folder, "remote", "get-url", "origin")
    branch = _git(folder, "rev-parse", "--abbrev-ref", "HEAD")
    return Source(
        commit=commit,
        dirty=dirty,
        diff_digest=diff_digest(folder) if commit and len(lines) > untracked else None,
        untracked=untracked,
        remote=public_url(remote) if remote else None,
        branch=branch if branch and branch != "HEAD" else None,
    )
