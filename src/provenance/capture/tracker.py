"""The capture API for training code.

    with provenance.connect() as session, provenance.track(
        "Model Beta", parents=[(alpha_id, "fine-tune")], output_dir=Path("runs/beta"),
        session=session,
    ) as run:
        X = run.step(drop_outliers)(raw, z=3.0)          # or @run.step
        run.log_dataset("train.csv", role="train", subset=train_positions)
        run.log_params(C=1.0); run.log_seeds(numpy=0); run.log_metrics(accuracy=0.97)
        run.log_model(pipeline)
    run.certificate, run.signed, run.cid, run.registered, run.path

A :class:`Run` only accumulates and builds. On a clean exit the certificate is built and handed
to :func:`~provenance.capture.publish.publish`, which stores the model and the certificate,
signs it, writes ``output_dir/certificate.json`` and registers it, each when its client is
there: with ``session=`` (:func:`provenance.connect`) its signer, storage and a registry sending
as the signer (``register=False`` to only store); else what is passed as ``signer`` (an
eth-account ``LocalAccount``), ``storage`` (anything with ``put_bytes`` / ``put_path``) and
``registry`` (a :class:`~provenance.chain.registry.Registry` that can send; refused without
storage, as nobody could fetch the certificate it anchors). If the block raises, nothing is
built and the exception propagates.

Capture must not break the job: a failure to capture something (hash an input, read git, list
the environment) becomes a warning inside the certificate, or a :class:`CaptureError` with
``strict=True``. Failures of what was asked for explicitly (storing, registering) raise.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from pydantic import JsonValue

from provenance.capture import sklearn as sk
from provenance.capture.environment import capture_environment
from provenance.capture.git import git_state
from provenance.capture.model_format import record_format
from provenance.capture.publish import NO_STORAGE, BlobStore, ModelFiles, ModelRegistry, publish
from provenance.capture.selection import as_selection, positions_of
from provenance.capture.steps import imported_packages, library_versions, source_digest
from provenance.capture.values import data_ref, is_data, opaque, split_values, value_ref
from provenance.certificate import (
    Attachment,
    Certificate,
    EntryPoint,
    EstimatorNode,
    Framework,
    ModelArtifact,
    OpaqueValue,
    ParentLink,
    SignedCertificate,
    Signer,
    Step,
    Training,
    TrainingData,
    ValueRef,
    parse_relation,
    timestamp,
)
from provenance.errors import CaptureError, CertificateError, ConfigError, ProvenanceError
from provenance.hashing import format_digest, sha256
from provenance.manifest import (
    DatasetOpening,
    DatasetRecord,
    FileManifest,
    SubsetOf,
    TableManifest,
    dataset_record,
    manifest_of,
    manifest_of_files,
    open_table,
    subset_of,
)
from provenance.registration import Relation

if TYPE_CHECKING:
    from provenance.chain.registry import Registered
    from provenance.session import Session

P = ParamSpec("P")
R = TypeVar("R")


ParentSpec = ParentLink | tuple[bytes | str, str] | tuple[bytes | str, str, str | None] | str


def parse_parent(spec: ParentSpec) -> ParentLink:
    """A parent from ``ParentLink``, ``(id, relation)``, ``(id, relation, name)`` or the CLI's
    ``ID:RELATION`` (relation defaults to fine-tune); ids are bytes or 0x hex."""
    if isinstance(spec, ParentLink):
        return spec
    name: str | None = None
    raw: bytes | str
    if isinstance(spec, str):
        raw, _, relation = spec.partition(":")
        relation = relation or Relation.FINE_TUNE.label
    elif len(spec) == 2:
        raw, relation = spec
    else:
        raw, relation, name = spec
    text = "0x" + raw.hex() if isinstance(raw, bytes) else raw.strip().lower()
    if not re.fullmatch(r"0x[0-9a-f]{64}", text):
        raise CertificateError(f"parent id {raw!r} is not 0x and 64 hex digits (32 bytes)")
    return ParentLink(id=text, relation=parse_relation(relation), name=name)


def slug(name: str) -> str:
    """A file-name-safe form of a model name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-").lower() or "model"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Run:
    """One training run being captured; see the module docstring."""

    def __init__(
        self,
        name: str,
        *,
        parents: Iterable[ParentSpec] = (),
        output_dir: Path | None = None,
        signer: Signer | None = None,
        storage: BlobStore | None = None,
        registry: ModelRegistry | None = None,
        session: Session | None = None,
        register: bool = True,
        payload: JsonValue = None,
        source_dir: Path | None = None,
        environment: bool = True,
        image_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        strict: bool = False,
        acknowledge_revoked_parents: bool = False,
        clock: Callable[[], dt.datetime] = _now,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name = name
        self.parents = tuple(parse_parent(p) for p in parents)
        self.output_dir = output_dir or Path.cwd() / "provenance-runs" / slug(name)
        self.signer = signer
        self.storage = storage
        self.registry = registry
        self.session = session
        self.register = register
        if registry is not None and storage is None and session is None:
            raise ConfigError(NO_STORAGE)
        self.payload = payload
        self.source_dir = source_dir
        self.capture_env = environment
        self.image_id = image_id
        self.variables = dict(variables or {})
        self.strict = strict
        self.acknowledge_revoked_parents = acknowledge_revoked_parents
        self.clock = clock
        self.timer = timer

        self.warnings: list[str] = []
        self._steps: list[tuple[Step, frozenset[str]]] = []
        self.datasets: list[DatasetRecord] = []
        self.openings: list[DatasetOpening] = []
        self.attachments: list[Attachment] = []
        self.parameters: dict[str, object] = {}
        self.seeds: dict[str, JsonValue] = {}
        self.metrics: dict[str, JsonValue] = {}
        self.command: tuple[str, ...] = ()
        self.entry_point: EntryPoint | None = None
        self.exit_code: int | None = None
        self.inputs: FileManifest | None = None
        self.outputs: FileManifest | None = None
        self.data_url: str | None = None
        self.started_at: str | None = None
        self.ended_at: str | None = None
        self.model: ModelArtifact | None = None
        self.model_files: ModelFiles | None = None

        self.certificate: Certificate | None = None
        self.signed: SignedCertificate | None = None
        self.cid: str | None = None
        self.envelope_cid: str | None = None
        self.path: Path | None = None
        self.registered: Registered | None = None

    # -- context manager ----------------------------------------------------------------------

    def __enter__(self) -> Run:
        self.started_at = timestamp(self.clock())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()

    # -- capture failures ---------------------------------------------------------------------

    def warn(self, message: str) -> None:
        """Record a capture failure: a warning in the certificate, an error when strict."""
        if self.strict:
            raise CaptureError(message)
        self.warnings.append(message)

    # -- steps --------------------------------------------------------------------------------

    def step(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Wrap a preprocessing function so each call is recorded: qualified name, source
        digest, bound arguments, digests of data inputs (before the call) and outputs, the
        versions of the libraries its module imports, the duration."""
        try:
            signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None
        qualname = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"

        @functools.wraps(fn)
        def recorded(*args: P.args, **kwargs: P.kwargs) -> R:
            started = timestamp(self.clock())
            before = self._describe_call(qualname, signature, args, kwargs)
            t0 = self.timer()
            result = fn(*args, **kwargs)
            duration = max(0.0, self.timer() - t0)
            self._record_step(qualname, fn, before, result, started, duration)
            return result

        return recorded

    def _describe_call(
        self,
        qualname: str,
        signature: inspect.Signature | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[dict[str, JsonValue], dict[str, OpaqueValue], list[ValueRef]]:
        values: dict[str, object] = {}
        if signature is not None:
            try:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                for key, value in bound.arguments.items():
                    kind = signature.parameters[key].kind
                    if kind is inspect.Parameter.VAR_POSITIONAL:
                        values.update({f"{key}[{i}]": v for i, v in enumerate(value)})
                    elif kind is inspect.Parameter.VAR_KEYWORD:
                        values.update(value)
                    else:
                        values[key] = value
            except TypeError:
                signature = None  # the call itself will raise the user's TypeError
        if signature is None:
            values = {f"args[{i}]": v for i, v in enumerate(args)} | dict(kwargs)
        inputs: list[ValueRef] = []
        rest: dict[str, object] = {}
        for key, value in values.items():
            if is_data(value):
                try:
                    inputs.append(data_ref(key, value))
                except (ProvenanceError, OSError, ValueError, TypeError) as exc:
                    self.warn(f"step {qualname}: input {key} not digested: {exc}")
                    inputs.append(ValueRef(name=key, kind="object", type=type(value).__name__))
            else:
                rest[key] = value
        plain, other = split_values(rest)
        return plain, other, inputs

    def _record_step(
        self,
        qualname: str,
        fn: Callable[..., Any],
        before: tuple[dict[str, JsonValue], dict[str, OpaqueValue], list[ValueRef]],
        result: object,
        started: str,
        duration: float,
    ) -> None:
        plain, other, inputs = before
        outputs: list[ValueRef] = []
        results = result if isinstance(result, tuple) else (result,)
        names = [str(i) for i in range(len(results))] if isinstance(result, tuple) else ["return"]
        for key, value in zip(names, results, strict=True):
            try:
                outputs.append(value_ref(key, value))
            except (ProvenanceError, OSError, ValueError, TypeError) as exc:
                self.warn(f"step {qualname}: output {key} not digested: {exc}")
        step = Step(
            name=qualname,
            source_digest=source_digest(fn),
            arguments=plain,
            opaque_arguments=other,
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            started_at=started,
            duration_s=duration,
        )
        self._steps.append((step, imported_packages(fn)))

    @property
    def steps(self) -> tuple[Step, ...]:
        """The step calls recorded so far, in the order they returned."""
        return tuple(
            step.model_copy(update={"libraries": library_versions(tops)})
            for step, tops in self._steps
        )

    # -- data, parameters, metrics --------------------------------------------------------

    def log_dataset(
        self,
        data: object,
        *,
        role: str = "train",
        name: str | None = None,
        subset: object = None,
        confidential: bool = False,
        store: bool = False,
        format: str | None = None,
        delimiter: str | None = None,
        header: bool | None = None,
    ) -> DatasetRecord:
        """Record a dataset: a CSV/Parquet file, a pandas DataFrame/Series or a numpy array as a
        table (row Merkle root); any other file or a directory as a file manifest.

        ``subset`` selects the rows actually used from ``data`` (the source): row positions,
        a pandas Index of labels of ``data`` (a DataFrame; e.g. ``X_train.index``), a filter
        expression, or a :data:`~provenance.manifest.Selection`; the record then holds
        the source's manifest, the selection and the subset's root. ``confidential`` publishes
        only a salted commitment; the opening (salt and manifest) is written to
        ``output_dir/openings/`` for the owner to keep. ``store`` puts the file into IPFS.
        ``header`` (a CSV): see :func:`~provenance.manifest.open_table`.
        """
        label = name or (
            Path(data).name if isinstance(data, str | Path) else f"{role}-{len(self.datasets)}"
        )
        manifest: FileManifest | TableManifest
        subset_record: SubsetOf | None = None
        path = Path(data) if isinstance(data, str | Path) else None
        tabular = (
            path is None or path.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq") or format
        )
        if tabular:
            table = open_table(data, format=format, delimiter=delimiter, header=header)  # type: ignore[arg-type]
            if subset is not None:
                result = subset_of(table, as_selection(positions_of(data, subset)))
                manifest, subset_record = result.manifest, result.subset
            else:
                manifest = table.manifest()
        else:
            if subset is not None:
                raise CertificateError(f"dataset {label}: only tables can be subset")
            assert path is not None
            manifest = manifest_of(path)
        url = None
        if store:
            if confidential:
                raise CertificateError(f"dataset {label} is confidential: it cannot be stored")
            if path is None:
                raise CertificateError(
                    f"dataset {label}: only files can be stored, not a {type(data).__qualname__}"
                )
            url = "ipfs://" + self._require_storage(f"storing dataset {label}").put_path(path)
            self.data_url = self.data_url or url
        record, opening = dataset_record(
            label, manifest, role=role, subset=subset_record, url=url, confidential=confidential
        )
        if any(d.name == label and d.role == role for d in self.datasets):
            raise CertificateError(f"dataset {label!r} with role {role!r} is logged twice")
        self.datasets.append(record)
        if opening is not None:
            self.openings.append(opening)
            folder = self.output_dir / "openings"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{slug(label)}-{slug(role)}.json").write_text(
                opening.model_dump_json(indent=2), encoding="utf-8"
            )
        return record

    def log_params(self, params: Mapping[str, object] | None = None, **more: object) -> None:
        """Hyper-parameters: JSON-safe values as they are, others as type + repr + digest."""
        self.parameters.update(dict(params or {}), **more)

    def log_seeds(self, seeds: Mapping[str, object] | None = None, **more: object) -> None:
        plain, other = split_values(dict(seeds or {}, **more))
        for key, value in other.items():
            self.warn(f"seed {key} is not JSON ({value.type}); recorded as its repr")
            plain[key] = value.repr
        self.seeds.update(plain)

    def log_metrics(self, metrics: Mapping[str, object] | None = None, **more: object) -> None:
        plain, other = split_values(dict(metrics or {}, **more))
        for key, value in other.items():
            self.warn(f"metric {key} is not JSON ({value.type}); recorded as its repr")
            plain[key] = value.repr
        self.metrics.update(plain)

    def log_model(self, model: object, *, path: Path | None = None) -> ModelArtifact:
        """The model: a file or directory path (format detected), or a scikit-learn estimator
        (every pipeline step with ``get_params()``, pickled to ``output_dir/model.pkl``/``path``)."""
        if self.model is not None:
            raise CertificateError("log_model was already called in this run")
        estimator: EstimatorNode | None = None
        fmt: str | None = None
        framework: Framework | None = None
        if isinstance(model, str | Path):
            location = Path(model)
            recorded = record_format(location)
            fmt, framework = recorded.format, recorded.framework
            self.warnings.extend(recorded.warnings)
        elif sk.is_estimator(model):
            location = path or self.output_dir / sk.FILE_NAME
            estimator = sk.describe(model)
            sk.save(model, location)
            fmt, framework = sk.FORMAT, sk.framework()
        else:
            raise CertificateError(
                f"cannot log a model of type {type(model).__qualname__}: pass a file or directory "
                "path, or a scikit-learn estimator"
            )
        manifest = manifest_of(location)
        self.model = ModelArtifact(
            digest=manifest.root,
            manifest=manifest,
            format=fmt,
            framework=framework,
            estimator=estimator,
        )
        self.model_files = location
        return self.model

    def log_model_files(self, files: Mapping[str, Path]) -> ModelArtifact:
        """The model as several named files (e.g. the model files a command wrote); stored
        when it is one file."""
        if self.model is not None:
            raise CertificateError("log_model was already called in this run")
        manifest = manifest_of_files(files)
        recorded = record_format(files)
        self.warnings.extend(recorded.warnings)
        self.model = ModelArtifact(
            digest=manifest.root,
            manifest=manifest,
            format=recorded.format,
            framework=recorded.framework,
        )
        self.model_files = dict(files) if len(files) == 1 else None
        return self.model

    def attach(
        self, name: str, data: bytes, media_type: str = "application/octet-stream"
    ) -> Attachment:
        """A large part kept outside the body (stored when there is storage), by digest."""
        store = self._storage()
        url = "ipfs://" + store.put_bytes(data) if store is not None else None
        attachment = Attachment(
            name=name,
            digest=format_digest(sha256(data)),
            size=len(data),
            media_type=media_type,
            url=url,
        )
        self.attachments.append(attachment)
        return attachment

    # -- zero-code capture ------------------------------------------------------------------

    def record_command(
        self,
        command: Sequence[str],
        *,
        entry_point: EntryPoint | None,
        exit_code: int,
        inputs: FileManifest | None,
        outputs: FileManifest | None,
        started_at: str,
        ended_at: str,
    ) -> None:
        self.command = tuple(command)
        self.entry_point = entry_point
        self.exit_code = exit_code
        self.inputs, self.outputs = inputs, outputs
        self.started_at, self.ended_at = started_at, ended_at

    # -- the certificate ------------------------------------------------------------------

    def build(self) -> Certificate:
        """The certificate body (unsigned) of what was captured so far."""
        if self.model is None:
            raise CertificateError(
                "no model was logged: call run.log_model(...) before the run ends"
            )
        environment = None
        if self.capture_env:
            try:
                environment = capture_environment(
                    image_id=self.image_id, variables=self.variables, warn=self.warn
                )
            except (OSError, ValueError) as exc:
                self.warn(f"environment not captured: {exc}")
        source = None
        try:
            source = git_state(self.source_dir or Path.cwd())
        except CaptureError as exc:
            self.warn(f"git state not captured: {exc}")
        plain, other = split_values(self.parameters)
        certificate = Certificate(
            model_name=self.name,
            created_at=timestamp(self.clock()),
            creator=str(signer.address) if (signer := self._signer()) is not None else None,
            parents=self.parents,
            model=self.model,
            data=TrainingData.of(tuple(self.datasets), url=self.data_url),
            preprocessing=self.steps,
            training=Training(
                command=self.command,
                entry_point=self.entry_point,
                parameters=plain,
                opaque_parameters=other,
                seeds=self.seeds,
                metrics=self.metrics,
                started_at=self.started_at,
                ended_at=self.ended_at or timestamp(self.clock()),
                exit_code=self.exit_code,
                inputs=self.inputs,
                outputs=self.outputs,
            ),
            environment=environment,
            source=source,
            attachments=tuple(self.attachments),
            warnings=tuple(self.warnings),
            payload=self.payload,
        )
        certificate.canonical_bytes()  # size check now, not at storage time
        return certificate

    def finish(self) -> Certificate:
        """Build the certificate, then :func:`~provenance.capture.publish.publish` it: store,
        sign, write and register, each when configured (see the module doc)."""
        if self.ended_at is None:
            self.ended_at = timestamp(self.clock())
        certificate = self.build()
        storage = self._storage()
        registry = self.registry
        if registry is None and self.session is not None and self.register:
            registry = self.session.registry_for(self._signer())  # type: ignore[arg-type]
        self.path = self.output_dir / "certificate.json"
        done = publish(
            certificate,
            signer=self._signer(),
            storage=storage,
            registry=registry,
            model_files=self.model_files if storage is not None else None,
            path=self.path,
            acknowledge_revoked_parents=self.acknowledge_revoked_parents,
        )
        self.certificate, self.signed, self.registered = done.certificate, done.signed, None
        self.cid, self.envelope_cid = done.cid, done.envelope_cid
        self.registered = done.registered
        return done.certificate

    # -- clients ------------------------------------------------------------------------------

    def _signer(self) -> Signer | None:
        if self.signer is None and self.session is not None:
            self.signer = self.session.signer
        return self.signer

    def _storage(self) -> BlobStore | None:
        """The storage given, else the session's."""
        if self.storage is None and self.session is not None:
            self.storage = self.session.storage
        return self.storage

    def _require_storage(self, needed_for: str) -> BlobStore:
        store = self._storage()
        if store is None:
            raise ConfigError(f"{needed_for} needs storage: pass session= or storage= to track()")
        return store


def track(name: str, session: Session | None = None, **options: Any) -> Run:
    """Start capturing a training run: ``with track("Model Beta", session=session) as run:``
    (``session`` from :func:`provenance.connect`: sign, store and register on exit). Options
    are those of :class:`Run`."""
    return Run(name, session=session, **options)


def subset_from(table_source: object, subset: object) -> tuple[TableManifest, SubsetOf]:
    """The manifest and subset record of rows selected from a table (for callers outside a
    run)."""
    result = subset_of(open_table(table_source), as_selection(subset))
    return result.manifest, result.subset


__all__ = ["BlobStore", "ModelRegistry", "Run", "as_selection", "opaque", "parse_parent", "track"]
