"""Which rows of a dataset a run used: a selection from the forms training code has at hand."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import TypeAdapter, ValidationError

from provenance.errors import CertificateError
from provenance.manifest import Selection

_SELECTION: TypeAdapter[Selection] = TypeAdapter(Selection)


def as_selection(subset: object) -> Selection:
    """A selection from a Selection, a dict spec, a filter expression (str), or row positions
    (a sequence of ints, a numpy array, a pandas Index)."""
    from provenance.manifest import FilterSelection, IndexSelection, SampleSelection

    if isinstance(subset, IndexSelection | FilterSelection | SampleSelection):
        return subset
    if isinstance(subset, str):
        return FilterSelection(expression=subset)
    if isinstance(subset, Mapping):
        try:
            return _SELECTION.validate_python(dict(subset))
        except ValidationError as exc:
            raise CertificateError(f"bad subset spec: {exc.errors()[0]['msg']}") from None
    try:
        return IndexSelection.of(list(subset))  # type: ignore[call-overload]
    except TypeError:
        raise CertificateError(
            f"a subset is a selection, a filter expression or row positions, not {type(subset).__qualname__}"
        ) from None


def positions_of(data: object, subset: object) -> object:
    """A pandas Index (or Series' index) selecting rows of a DataFrame holds labels: turn them
    into positions of ``data``; anything else passes through."""
    module = type(subset).__module__
    if not module.startswith("pandas") or not type(data).__module__.startswith("pandas"):
        return subset
    import pandas as pd

    labels = subset.index if isinstance(subset, pd.Series | pd.DataFrame) else subset
    if not isinstance(labels, pd.Index) or not isinstance(data, pd.DataFrame | pd.Series):
        return subset
    positions = data.index.get_indexer(labels)
    if (positions < 0).any():
        raise CertificateError("the subset names rows that are not in the dataset's index")
    return [int(p) for p in positions]


__all__ = ["as_selection", "positions_of"]
