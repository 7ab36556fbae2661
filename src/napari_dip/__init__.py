"""napari-dip: restore images with untrained-network priors (Deep Image Prior, DeepRED).

The package imports neither Qt nor napari, and torch is imported only when a run starts,
so ``import napari_dip`` is cheap in scripts, notebooks, on clusters and at napari start-up.

>>> from napari_dip import restore
>>> result = restore(noisy, task="denoise")          # doctest: +SKIP
>>> result.image, result.iterations, result.stopped_at  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-dip")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

# Public name -> module that defines it; resolved on first access (PEP 562) so that
# importing the package does not import torch.
_LAZY = {
    "restore": "napari_dip.api",
    "iterate": "napari_dip.api",
    "validate": "napari_dip.api",
    "Result": "napari_dip.records",
    "Step": "napari_dip.records",
    "RunCancelled": "napari_dip.cancel",
    "available_devices": "napari_dip.devices",
    # not "napari_dip.batch": a submodule of that name would shadow the function
    "batch": "napari_dip.batch_run",
    # not "napari_dip.psf": a submodule of that name would shadow the function
    "psf": "napari_dip.psf_model",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_dip' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
