"""File > Open Sample > napari-dip: degraded images with their ground truth, made offline
from scikit-image's bundled pictures by :mod:`napari_dip.samples`.

Each function returns napari layer data tuples: the ground truth first (hidden, so it is
there to compare against, named ``"<sample> · truth"``), then the degraded image on top
under the sample's short name. The degraded layer's metadata carries what degraded it and
the settings the sample is meant for (``metadata["napari_dip_sample"]``), which the widget
applies while that layer is chosen.
"""

from __future__ import annotations

from . import samples
from ._layers import NAME_SEPARATOR, SAMPLE_KEY


def _layers(sample: samples.Sample, title: str, *, colormap: str = "gray",
            mask_name: str | None = None) -> list[tuple]:
    rgb = sample.kwargs.get("channel_axis") is not None
    look = {"rgb": True} if rgb else {"colormap": colormap}
    hints = {"role": "degraded", "sample": sample.name, "description": sample.description,
             "truth_layer": f"{title}{NAME_SEPARATOR}truth" if sample.truth is not None
             else None,
             **{k: v for k, v in sample.kwargs.items() if k in ("task", "noise", "noise_sigma")}}
    if mask_name:
        hints["mask_layer"] = mask_name
    out = []
    if sample.truth is not None:
        out.append((sample.truth, {"name": f"{title}{NAME_SEPARATOR}truth", "visible": False,
                                   "metadata": {SAMPLE_KEY: {"role": "truth",
                                                             "sample": sample.name}},
                                   **look}, "image"))
    out.append((sample.degraded, {"name": title, "metadata": {SAMPLE_KEY: hints}, **look},
                "image"))
    if sample.mask is not None:
        out.append((sample.mask, {"name": mask_name or f"{title}{NAME_SEPARATOR}mask",
                                  "opacity": 0.5},
                    "labels"))
    return out


def hubble() -> list[tuple]:
    """Hubble eXtreme Deep Field crop as photon counts with Poisson noise (peak 30)."""
    return _layers(samples.hubble(), "hubble", colormap="magma")


def cell() -> list[tuple]:
    """Phase-contrast microscopy cell with Gaussian noise (sigma 0.1 of the range)."""
    return _layers(samples.cell(), "cell")


def mri() -> list[tuple]:
    """Shepp-Logan phantom with Rician noise, like an MR magnitude image."""
    return _layers(samples.mri(), "mri phantom")


def inpainting() -> list[tuple]:
    """Astronaut crop (RGB) with scribbled holes, and the Labels mask of the holes."""
    return _layers(samples.inpainting(), "astronaut", mask_name="astronaut \u00b7 holes")


def sky() -> list[tuple]:
    """Hubble deep field with a dead column, a satellite trail and cosmic-ray hits, and the
    Labels mask of those defects."""
    return _layers(samples.sky(), "sky", colormap="magma", mask_name="sky \u00b7 defects")
