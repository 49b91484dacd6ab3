"""What a model image says about itself and where its parts are inside it: the label names
(read by :mod:`provenance.verify.image`) and the paths the generated Dockerfile uses."""

from __future__ import annotations

LABEL_MODEL_DIGEST = "provenance.model.digest"
LABEL_MODEL_FORMAT = "provenance.model.format"
"""The model's format, a name of :data:`provenance.model_formats.FORMATS` (``files`` when an image
of your own holds files in none of them)."""
LABEL_MODEL_PATH = "provenance.model.path"
"""Where the model files are inside the image (a folder, or the model's one file); images
without it hold them in :data:`MODEL_DIR`."""
LABEL_CERTIFICATE = "provenance.certificate.digest"
LABEL_PACKAGES = "provenance.packages"
LABEL_PYTHON = "provenance.python"
"""On a base image: its Python's ``major.minor``; on a model image: the one packages need."""

APP_DIR = "/opt/provenance"
MODEL_DIR = f"{APP_DIR}/model"
ENTRYPOINT = f"{APP_DIR}/entrypoint.py"
MODEL_FILE = "model.pkl"
