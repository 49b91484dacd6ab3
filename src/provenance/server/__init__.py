"""HTTP servers (FastAPI, the ``server`` extra): the attesting inference service
(``provenance serve``, :mod:`provenance.server.service`) and the registry explorer
(``provenance explorer``, :mod:`provenance.server.explorer`)."""
