"""provenance: verifiable birth certificates and family trees for ML models."""

__version__ = "0.1.0"
__all__ = ["__version__"]
