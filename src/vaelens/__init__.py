"""vaelens: mechanistic interpretability of variational autoencoders through causal interventions.

Layers, data flowing one way: ``data`` -> ``models`` -> ``train`` -> ``lens`` -> ``metrics``
-> ``analysis`` -> ``study`` -> ``report``, with ``cli`` on top; ``stats``, ``errors`` and
``io`` sit beneath them all.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "analyze", "load_dataset"]


def __getattr__(name: str) -> Any:
    # Lazy re-exports keep `import vaelens` light (no torch import until needed).
    if name == "analyze":
        from vaelens.analysis import analyze

        return analyze
    if name == "load_dataset":
        from vaelens.data import load_dataset

        return load_dataset
    raise AttributeError(f"module 'vaelens' has no attribute {name!r}")
