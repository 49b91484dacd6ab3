"""Docker images of models, moved through IPFS and checked by image id.

The package that talks to Docker (through the Docker SDK for Python)::

    with DockerEngine(stack.docker_host()) as engine:
        ensure_base_image(engine, Path(".tools/images/base-bookworm.tar"))
        built = build_model_image(engine, run.output_dir / "model.pkl")
        record = push_to_ipfs(engine, built.id, storage)     # record.archive: the layout's CID
        attach_image(run, record)                             # inside `with track(...)`
        ...
        pulled = pull_from_ipfs(engine, storage, record.archive, record.image_id)
        run_prediction(engine, pulled.id, [[5.1, 3.5, 1.4, 0.2]])

Its modules, by what they own:

- :mod:`~provenance.images.engine`: the Docker engine (:class:`DockerEngine`, its version,
  ``docker load``) and the base image of model images (:func:`ensure_base_image`);
- :mod:`~provenance.images.archive`: ``docker save`` archives as streams, checked on their way
  to ``docker load`` (:func:`verified_archive`); no engine needed;
- :mod:`~provenance.images.packages`: which installed distributions a pickle needs;
- :mod:`~provenance.images.build`: building a model image for the runtime of the model's format
  (:func:`build_model_image`, :func:`served_format`) and the
  :class:`ImageRecord` that says where an image is (:func:`attach_image`,
  :func:`image_record_of`);
- :mod:`~provenance.images.labels`: the labels of model images and the paths inside them;
- :mod:`~provenance.images.oci`: images as OCI image layouts in IPFS, one file per blob, so
  layers deduplicate (:func:`store_layout`, :func:`read_layout`, :func:`load_archive`); no
  engine needed;
- :mod:`~provenance.images.transport`: :func:`push_to_ipfs` and :func:`pull_from_ipfs`;
- :mod:`~provenance.images.own`: images of your own Dockerfile, checked to hold the model
  (:func:`build_own_image`);
- :mod:`~provenance.images.serve`: containers of model images: :func:`verify_model_image`,
  :func:`run_prediction`, :func:`start_model_server`.

Names load lazily: importing this package imports no submodule (and so not the Docker SDK)
until a name is first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "ArchiveCheck": "archive",
    "CHUNK": "archive",
    "ChunkReader": "archive",
    "verified_archive": "archive",
    "APP_DIR": "labels",
    "ENTRYPOINT": "labels",
    "LABEL_CERTIFICATE": "labels",
    "LABEL_MODEL_DIGEST": "labels",
    "LABEL_MODEL_FORMAT": "labels",
    "LABEL_MODEL_PATH": "labels",
    "LABEL_PACKAGES": "labels",
    "LABEL_PYTHON": "labels",
    "MODEL_DIR": "labels",
    "MODEL_FILE": "labels",
    "BASE_IMAGE": "engine",
    "TORCH_IMAGE": "engine",
    "make_rootfs": "engine",
    "DockerEngine": "engine",
    "LocalImage": "engine",
    "default_rootfs": "engine",
    "engine_version": "engine",
    "ensure_base_image": "engine",
    "import_rootfs": "engine",
    "rootfs_archive": "engine",
    "distributions_for": "packages",
    "pickle_globals": "packages",
    "ATTACHMENT_NAME": "build",
    "Attaching": "build",
    "ImageRecord": "build",
    "RECORD_MEDIA_TYPE": "build",
    "attach_image": "build",
    "build_model_image": "build",
    "base_for": "build",
    "served_format": "build",
    "UNDETECTED_FORMAT": "own",
    "build_own_image": "own",
    "model_digest_in_image": "serve",
    "dockerfile": "build",
    "image_record_of": "build",
    "ImageLayout": "oci",
    "load_archive": "oci",
    "read_layout": "oci",
    "store_layout": "oci",
    "PULLED_REPOSITORY": "transport",
    "present_layers": "transport",
    "pull_from_ipfs": "transport",
    "push_to_ipfs": "transport",
    "ModelServer": "serve",
    "SERVE_SOCKET": "serve",
    "run_prediction": "serve",
    "start_model_server": "serve",
    "verify_model_image": "serve",
}

if TYPE_CHECKING:
    from .archive import (
        CHUNK,
        ArchiveCheck,
        ChunkReader,
        verified_archive,
    )
    from .build import (
        ATTACHMENT_NAME,
        RECORD_MEDIA_TYPE,
        Attaching,
        ImageRecord,
        attach_image,
        base_for,
        build_model_image,
        dockerfile,
        image_record_of,
        served_format,
    )
    from .engine import (
        BASE_IMAGE,
        TORCH_IMAGE,
        DockerEngine,
        LocalImage,
        default_rootfs,
        engine_version,
        ensure_base_image,
        import_rootfs,
        make_rootfs,
        rootfs_archive,
    )
    from .labels import (
        APP_DIR,
        ENTRYPOINT,
        LABEL_CERTIFICATE,
        LABEL_MODEL_DIGEST,
        LABEL_MODEL_FORMAT,
        LABEL_MODEL_PATH,
        LABEL_PACKAGES,
        LABEL_PYTHON,
        MODEL_DIR,
        MODEL_FILE,
    )
    from .oci import (
        ImageLayout,
        load_archive,
        read_layout,
        store_layout,
    )
    from .own import UNDETECTED_FORMAT, build_own_image
    from .packages import (
        distributions_for,
        pickle_globals,
    )
    from .serve import (
        SERVE_SOCKET,
        ModelServer,
        model_digest_in_image,
        run_prediction,
        start_model_server,
        verify_model_image,
    )
    from .transport import (
        PULLED_REPOSITORY,
        present_layers,
        pull_from_ipfs,
        push_to_ipfs,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'provenance.images' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "APP_DIR",
    "ATTACHMENT_NAME",
    "BASE_IMAGE",
    "CHUNK",
    "ENTRYPOINT",
    "LABEL_CERTIFICATE",
    "LABEL_MODEL_DIGEST",
    "LABEL_MODEL_FORMAT",
    "LABEL_MODEL_PATH",
    "LABEL_PACKAGES",
    "LABEL_PYTHON",
    "MODEL_DIR",
    "MODEL_FILE",
    "PULLED_REPOSITORY",
    "RECORD_MEDIA_TYPE",
    "SERVE_SOCKET",
    "TORCH_IMAGE",
    "UNDETECTED_FORMAT",
    "ArchiveCheck",
    "Attaching",
    "ChunkReader",
    "DockerEngine",
    "ImageLayout",
    "ImageRecord",
    "LocalImage",
    "ModelServer",
    "attach_image",
    "base_for",
    "build_model_image",
    "build_own_image",
    "default_rootfs",
    "distributions_for",
    "dockerfile",
    "engine_version",
    "ensure_base_image",
    "image_record_of",
    "import_rootfs",
    "load_archive",
    "make_rootfs",
    "model_digest_in_image",
    "pickle_globals",
    "present_layers",
    "pull_from_ipfs",
    "push_to_ipfs",
    "read_layout",
    "rootfs_archive",
    "run_prediction",
    "served_format",
    "start_model_server",
    "store_layout",
    "verified_archive",
    "verify_model_image",
]
