"""Bundled sample problems, built offline from scikit-image's bundled pictures with the
engine's own degradations. Qt-free: used by the command line (``--sample``), the napari
sample-data menu, tests and benchmarks.

Each function returns a :class:`Sample`; noise is drawn from ``numpy.random.default_rng(seed)``
so samples are the same on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skimage import data as skdata
from skimage.transform import resize


@dataclass
class Sample:
    """A degraded image, the arguments to restore it, and (where known) the truth.

    ``degraded`` and ``truth`` are float32 (or counts); ``mask`` is uint8 with 1 = fill.
    ``kwargs`` are the :func:`napari_dip.restore` arguments this sample is meant for.
    """

    name: str
    degraded: np.ndarray
    truth: np.ndarray | None
    kwargs: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None
    description: str = ""


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image[..., :3] @ np.array([0.2125, 0.7154, 0.0721])
    return image


def _unit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    return (image - image.min()) / (image.max() - image.min())


def hubble(size: int = 128, peak: float = 30.0, seed: int = 0) -> Sample:
    """Astronomy: a crop of the Hubble eXtreme Deep Field as photon counts with Poisson noise
    (``peak`` photons at the brightest pixel)."""
    sky = _unit(_grey(skdata.hubble_deep_field()[300:300 + 2 * size, 400:400 + 2 * size]))
    sky = resize(sky, (size, size), anti_aliasing=True)
    truth = sky / sky.max() * peak
    counts = np.random.default_rng(seed).poisson(truth)
    return Sample("hubble", counts.astype(np.float32), truth.astype(np.float32),
                  {"task": "denoise", "noise": "poisson"},
                  description=f"Hubble deep field, photon counts (peak {peak:g}), Poisson noise")


def cell(size: int = 128, sigma: float = 0.1, seed: int = 0) -> Sample:
    """Microscopy: scikit-image's phase-contrast cell image with Gaussian noise of ``sigma``
    (as a fraction of the intensity range)."""
    img = _unit(skdata.cell().astype(np.float64))
    img = resize(img[100:100 + 2 * size, 150:150 + 2 * size], (size, size), anti_aliasing=True)
    noisy = img + np.random.default_rng(seed).normal(0, sigma, img.shape)
    return Sample("cell", noisy.astype(np.float32), img.astype(np.float32), {"task": "denoise"},
                  description=f"Microscopy cell, Gaussian noise sigma={sigma:g}")


def mri(size: int = 128, sigma: float = 0.06, seed: int = 0) -> Sample:
    """MRI-like: the Shepp-Logan phantom with Rician noise (magnitude of complex Gaussian
    noise of ``sigma`` per component), as MR magnitude images have."""
    truth = resize(skdata.shepp_logan_phantom(), (size, size), anti_aliasing=True)
    rng = np.random.default_rng(seed)
    noisy = np.hypot(truth + rng.normal(0, sigma, truth.shape), rng.normal(0, sigma, truth.shape))
    return Sample("mri", noisy.astype(np.float32), truth.astype(np.float32),
                  {"task": "denoise", "noise": "rician"},
                  description=f"Shepp-Logan phantom, Rician noise sigma={sigma:g}")


def camera(size: int = 96, sigma: float = 25 / 255, seed: int = 0) -> Sample:
    """The cameraman photograph (grey), centre crop, Gaussian noise sigma=25/255."""
    img = _unit(skdata.camera().astype(np.float64))
    y0, x0 = 80, 200
    img = img[y0:y0 + size, x0:x0 + size]
    noisy = np.clip(img + np.random.default_rng(seed).normal(0, sigma, img.shape), 0, 1)
    return Sample("camera", noisy.astype(np.float32), img.astype(np.float32),
                  {"task": "denoise"},
                  description=f"Cameraman crop, Gaussian noise sigma={sigma * 255:g}/255")


def inpainting(size: int = 128, seed: int = 0) -> Sample:
    """Inpainting: an astronaut crop (RGB) with scribbled holes; mask 1 = pixel to fill."""
    img = skdata.astronaut()[30:30 + 2 * size, 150:150 + 2 * size]
    img = resize(img, (size, size, 3), anti_aliasing=True)
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(max(3, size // 24)):  # thick random strokes, like scribbled text
        y0, x0 = rng.uniform(0.1, 0.9, 2) * size
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(0.2, 0.5) * size
        t = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
        d = np.abs(-(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle))
        mask[(np.abs(t) < length / 2) & (d < 2.5)] = 1
    degraded = img * (1 - mask[..., None])
    return Sample("inpainting", degraded.astype(np.float32), img.astype(np.float32),
                  {"task": "inpaint", "channel_axis": -1}, mask=mask,
                  description="Astronaut crop with scribbled holes (mask: 1 = fill)")


def fluorescence(shape, peak: float, ramp: float = 0.5, seed: int = 0) -> np.ndarray:
    """Photon rates of a synthetic fluorescence image or volume: smooth random filaments
    and Gaussian blobs (peak ``peak``), on a background of 2 % of the peak rising along X by
    ``ramp`` times the peak."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    grid = np.indices(shape).astype(float)
    lines = np.zeros(shape)
    for _ in range(max(2, lines.size // 600)):
        t = np.linspace(0, 1, 4 * max(shape))[:, None]
        start = rng.random(len(shape)) * shape
        step = (rng.random(len(shape)) - 0.5) * 1.5 * np.array(shape)
        wobble = rng.normal(0, 0.1, len(shape)) * np.array(shape)
        points = start + t * step + np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t) * wobble
        points = np.round(points).astype(int)
        inside = np.all((points >= 0) & (points < shape), axis=1)
        lines[tuple(points[inside].T)] = 1.0
    image = ndimage.gaussian_filter(lines, 0.8)
    image /= image.max()
    for _ in range(max(3, image.size // 250)):
        centre, width = rng.random(len(shape)) * shape, rng.uniform(1.0, 2.5)
        r2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
        image += rng.uniform(0.3, 1.0) * np.exp(-r2 / (2 * width**2))
    image /= image.max()
    return peak * (image + 0.02 + ramp * grid[-1] / (shape[-1] - 1))


def _line(size: int, y0: float, slope: float, width: float) -> np.ndarray:
    """Pixels within ``width / 2`` of the line y = y0 + slope * x (a satellite trail)."""
    yy, xx = np.mgrid[:size, :size]
    return np.abs(yy - y0 - slope * xx) / np.hypot(1.0, slope) < width / 2


def sky(size: int = 128, read_noise: float = 0.01, seed: int = 0) -> Sample:
    """Astronomy inpainting: a crop of the Hubble eXtreme Deep Field (grey, in [0, 1]) with
    read noise of ``read_noise`` and the defects of a real frame: a dead column (zeros), a
    satellite trail (bright) and cosmic-ray hits (bright specks of 1-3 pixels). The mask
    (1 = fill) marks all three; the truth is the noise-free sky. Its arguments give the
    read noise (``noise_sigma``), as an astronomer knows their detector's: the run stops at
    that level (the discrepancy principle) rather than by held-out pixels, which on this
    frame stop early and fill the holes below the biharmonic fill (27.96 against 28.35 dB,
    ``benchmarks/results/astro.md``)."""
    rng = np.random.default_rng(seed)
    field = _grey(skdata.hubble_deep_field()[100:100 + 2 * size, 700:700 + 2 * size])
    truth = _unit(resize(field, (size, size), anti_aliasing=True))
    frame = truth + rng.normal(0, read_noise, truth.shape)
    mask = np.zeros((size, size), dtype=np.uint8)
    column = int(0.37 * size)
    mask[:, column] = 1
    frame[:, column] = 0.0  # a dead column reads nothing
    trail = _line(size, 0.2 * size, 0.36, 2.4)
    mask[trail] = 1
    frame[trail] += 0.6
    for _ in range(max(8, size // 5)):  # cosmic-ray hits
        y, x = rng.integers(2, size - 3, 2)
        h, w = rng.integers(1, 3, 2)
        mask[y:y + h, x:x + w] = 1
        frame[y:y + h, x:x + w] += rng.uniform(0.5, 1.0)
    return Sample("sky", frame.astype(np.float32), truth.astype(np.float32),
                  {"task": "inpaint", "noise_sigma": read_noise}, mask=mask,
                  description="Hubble deep field with a dead column, a satellite trail and "
                              "cosmic-ray hits (mask: 1 = fill)")


SAMPLES = {"hubble": hubble, "cell": cell, "mri": mri, "camera": camera,
           "inpainting": inpainting, "sky": sky}


def load_sample(name: str, **kwargs) -> Sample:
    """The sample called ``name`` (one of :data:`SAMPLES`)."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}")
    return SAMPLES[name](**kwargs)
