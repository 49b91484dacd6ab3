"""What a captured model's certificate says about its format: the detected format's name
(:mod:`provenance.model_formats`), the framework that wrote it with the version installed here
(package metadata; the framework is not imported), and, for files in none of the formats, the
name ``"files"`` and a warning naming the supported formats (such a model is certified and
verified like any other; serving it is what needs a format)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from provenance.certificate import Framework
from provenance.model_formats import (
    UNDETECTED,
    UnsupportedModelFormat,
    detect_format,
    framework_version,
)


@dataclass(frozen=True)
class Recorded:
    """The format name, framework and warnings (none when detected) a certificate records."""

    format: str
    framework: Framework | None
    warnings: tuple[str, ...] = ()


def record_format(model: Path | Mapping[str, Path]) -> Recorded:
    """The format of the model at a path (a file or folder), or of named files (detected in
    their deepest common folder)."""
    try:
        if isinstance(model, Path):
            found = detect_format(model)
        elif len(model) == 1:
            found = detect_format(next(iter(model.values())))
        else:
            paths = [p.resolve() for p in model.values()]
            common = Path(os.path.commonpath(paths))
            found = detect_format(common, files=[p.relative_to(common).as_posix() for p in paths])
    except (UnsupportedModelFormat, ValueError, OSError) as exc:
        return Recorded(
            UNDETECTED,
            None,
            (
                f"model format not recognised, recorded as {UNDETECTED!r}: {exc} (the model "
                "verifies, but serving it needs one of these formats)",
            ),
        )
    version = framework_version(found.format)
    framework = (
        Framework(name=found.format.framework, version=version) if version is not None else None
    )
    return Recorded(found.format.name, framework)


__all__ = ["Recorded", "record_format"]
