"""Command line: ``napari-dip restore INPUT -o OUTPUT --task denoise ...``.

``napari-dip restore --sample`` restores a bundled noisy sample and reports PSNR against its
ground truth, with no input file. ``napari-dip devices`` lists the devices of this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from .denoisers import DENOISERS
from .methods import METHODS
from .request import SR_FACTORS
from .tasks import BOUNDARIES, NOISE_MODELS, TASKS


def _ensemble(text: str) -> int | str:
    """--ensemble's value: 'auto' or a whole number (its range is the engine's check)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto' or a whole number of fits, e.g. --ensemble 4 (got {text!r})"
        ) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-dip",
        description="Restore images with untrained-network priors (Deep Image Prior, DeepRED).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "restore", help="restore an image file (or a bundled sample)",
        description="Restore INPUT and write OUTPUT (.tif keeps float values; .png, .jpg "
                    "and .bmp take an 8/16-bit integer input's type (16-bit: grey PNG only), "
                    "or 8-bit for a float input with values in [0, 1]; .nii/.nii.gz keeps a "
                    "NIfTI input's orientation). Stacks and volumes: TIFF (axis names from "
                    "its metadata or --axes), NIfTI .nii/.nii.gz (needs nibabel) and DICOM "
                    ".dcm (needs pydicom); pip install \"napari-dip[io]\" installs both. "
                    "OUTPUT is never one of the input files, and an existing OUTPUT is kept "
                    "unless --overwrite is given; whether OUTPUT can be written and hold the "
                    "result is checked before the run. The file is written under a temporary "
                    "name and renamed when complete, so a failed, interrupted (Ctrl-C) or "
                    "terminated run leaves no partial file.",
    )
    r.add_argument("input", nargs="?", help="image, stack or volume to restore: TIFF, PNG, "
                   "JPEG, NIfTI (.nii, .nii.gz), DICOM (.dcm) or FITS (.fits)")
    r.add_argument("-o", "--output", help="output file (.tif, .png, .jpg, .bmp, "
                   ".nii/.nii.gz or .fits); default: <input>_restored.tif (.fits for a FITS "
                   "input, with its header), or napari-dip-sample.png with --sample")
    r.add_argument("--overwrite", action="store_true",
                   help="replace OUTPUT (and the --uncertainty file) if it exists (only once "
                        "the new file is complete)")
    r.add_argument("--uncertainty", metavar="PATH",
                   help="with --ensemble K (K >= 2): also write the per-pixel standard "
                        "deviation of the K fits, in the input's units (best as .tif), "
                        "checked and written like OUTPUT")
    r.add_argument("--sample", nargs="?", const="camera", metavar="NAME",
                   help="restore a bundled sample instead of a file: camera (default), cell, "
                        "mri, hubble, inpainting or sky")
    add_restore_options(r)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("devices", help="list the devices this machine can run on")
    from .batch_cli import add_batch_options

    b = sub.add_parser(
        "batch", allow_abbrev=False, help="restore many files on Dask (local or a cluster)",
        description="Restore every INPUT into OUTDIR/<name>.tif with the same settings, on a "
                    "local Dask cluster (default), a running scheduler (--scheduler) or a "
                    "SLURM/PBS/LSF cluster (--cluster). OUTDIR/napari-dip-batch.jsonl "
                    "records every file; the same command again skips what is done. Exit "
                    "status 1 when some files failed.")
    add_batch_options(b)
    add_restore_options(b)
    return parser


def add_restore_options(r: argparse.ArgumentParser) -> None:
    """The options that say how to restore (task, method, layout, run settings), shared by
    ``restore`` and ``batch``; :func:`_layout_arguments` and :func:`_task_arguments` turn
    them into ``restore`` keyword arguments."""
    r.add_argument("--task", choices=TASKS, help="default: denoise (or the sample's task)")
    r.add_argument("--method", choices=METHODS, default="dip")
    r.add_argument("--mask", help="inpainting mask file, nonzero = pixel to fill")
    r.add_argument("--mask-known", action="store_true",
                   help="the mask marks KNOWN pixels instead (as the DIP paper's masks do)")
    r.add_argument("--nan-as-mask", action="store_true",
                   help="inpainting: fill the image's NaN pixels (bad pixels of a reduced "
                        "frame); implies --task inpaint")
    r.add_argument("--mask-cosmic-rays", action="store_true",
                   help="inpainting: also fill cosmic-ray hits (L.A.Cosmic, astroscrappy: "
                        "pip install \"napari-dip[astro]\")")
    r.add_argument("--mask-saturated", type=float, metavar="LEVEL",
                   help="inpainting: also fill pixels at or above LEVEL (saturated stars)")
    r.add_argument("--mask-grow", type=int, default=0, metavar="PIXELS",
                   help="grow the mask by this many pixels (defects bleed into neighbours)")
    r.add_argument("--hdu", help="FITS input: the HDU to read, an index or EXTNAME "
                   "(default: the first that holds an image)")
    r.add_argument("--factor", type=int, choices=SR_FACTORS, help="super-resolution factor")
    r.add_argument("--kernel", help="deblurring kernel: gaussian, uniform, or a .npy/.tif file")
    r.add_argument("--psf", metavar="FILE",
                   help="deconvolution with a measured PSF: a .tif or .npy file, 2-D, or 3-D "
                        "(Z, Y, X) for --mode volume (background subtracted, centred, sampled "
                        "like the image); implies --task deblur")
    r.add_argument("--psf-model", metavar="NAME=VALUE,...",
                   help="deconvolution with a PSF modelled from the objective (psfmodels, "
                        "pip install \"napari-dip[psf]\"; lengths in um): "
                        "na=1.4,wavelength=0.52,pixel_size=0.1 and optionally z_step= (a 3-D "
                        "PSF, for --mode volume), ni= (immersion index, 1.515), ns= (sample "
                        "index), depth= (um below the coverslip), model=vectorial|scalar|"
                        "gaussian, shape= (odd sizes, e.g. 31 or 15x31x31); implies --task "
                        "deblur")
    r.add_argument("--boundary", choices=BOUNDARIES,
                   help="deblurring: valid (default: the estimate reaches beyond the image's "
                        "edges, so real images do not ring there) or circular (the blur "
                        "wraps around the edges: synthetic data blurred that way)")
    r.add_argument("--flash", help="flash shot for --task flash_no_flash")
    r.add_argument("--preset", choices=("fast", "paper"), default="fast")
    r.add_argument("--iterations", type=int, help="iteration limit (default: the preset's)")
    r.add_argument("--no-early-stop", action="store_true", help="run every iteration")
    r.add_argument("--noise-sigma", default=None, metavar="SIGMA",
                   help="noise standard deviation in the image's units. Gaussian: DIP "
                        "stops when its residual reaches it; 'auto' (default) estimates it "
                        "for denoising, 'none' stops by ES-WMV. Rician: the likelihood's "
                        "sigma; 'auto' reads it from the dark background")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--ensemble", type=_ensemble, default=None, metavar="K",
                   help="average K fits (seeds SEED..SEED+K-1, run as one batched network; "
                        "1 to 64; default auto: 2 where DIP denoises (Gaussian or Poisson "
                        "noise) or super-resolves to at most 100x100 pixels, else 1); "
                        "--uncertainty needs K >= 2 given")
    r.add_argument("--noise", choices=NOISE_MODELS, default=None,
                   help="noise model (default gaussian; poisson for photon counts, rician "
                        "for magnitude MRI with a dark background (else gaussian did better))")
    r.add_argument("--channel-axis", type=int, default=None,
                   help="axis holding colour channels (default: -1 for RGB pictures)")
    r.add_argument("--axes", help="one letter per axis of INPUT: T (time), Z (depth), Y, X, "
                   "C (channels), e.g. ZYX or TZYX (default: from the file where it names "
                   "them: TIFF metadata, NIfTI XYZ(T), DICOM frames)")
    r.add_argument("--mode", choices=("slices", "volume"),
                   help="with a Z axis: restore plane by plane (slices, default) or the whole "
                        "volume with a 3-D network (volume)")
    r.add_argument("--tile", help="restore large planes in overlapping tiles of this many "
                   "pixels, or 'auto' (the largest that fits the device's memory)")
    r.add_argument("--overlap", type=int, help="pixels shared by neighbouring tiles "
                   "(default: a quarter of the tile)")
    r.add_argument("--no-warm-start", action="store_true",
                   help="start every plane or tile from fresh weights")
    r.add_argument("--no-blend", action="store_true", help="the network's estimate "
                   "alone, not blended with BM3D / Anscombe + BM3D / Richardson-Lucy / Wiener")
    r.add_argument("--denoiser", choices=tuple(DENOISERS), help="DeepRED denoiser (default nlm)")
    r.add_argument("--denoiser-sigma", help="DeepRED denoiser sigma in [0, 1] units (a "
                   "fraction of the image's range), or auto")
    r.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice, one per core); "
                        "on a busy machine fewer threads can be much faster")


def _number(text: str) -> float:
    """``text`` as a finite float, or NaN where it is not one."""
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _noise_sigma_argument(text: str):
    """--noise-sigma: 'auto', 'none' or a positive number (the image's units)."""
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    value = _number(text)
    if not value > 0:  # NaN too
        raise ValueError(f"--noise-sigma takes a number (the noise's standard deviation in "
                         f"the image's units, above 0), 'auto' or 'none', got {text!r}")
    return value


def _denoiser_sigma_argument(text: str):
    """--denoiser-sigma: 'auto' or a number in [0, 1] (a fraction of the image's range)."""
    if text.lower() == "auto":
        return "auto"
    value = _number(text)
    if not 0 <= value <= 1:  # NaN too
        raise ValueError(f"--denoiser-sigma takes a number in [0, 1] or 'auto', got {text!r}")
    return value


_KERNEL_NAMES = ("gaussian", "uniform")


def _kernel_argument(value: str | None, option: str = "--kernel"):
    """--kernel: a kernel's name, or the array in a .npy, .tif or .png file (--psf: a
    .npy or .tif file)."""
    if value is None or (option == "--kernel" and value in _KERNEL_NAMES):
        return value
    from .imageio import read_image, read_npy

    path = Path(value)
    if path.suffix.lower() == ".npy":
        return read_npy(path)
    if path.suffix.lower() in (".tif", ".tiff", ".png"):
        return read_image(path).astype(np.float64)
    if option == "--psf":
        raise ValueError(f"--psf must be a .tif or .npy file, got {value!r}")
    raise ValueError(f"--kernel must be gaussian, uniform or a .npy/.tif/.png file, got {value!r}")


def _psf_shape(text: str):
    """shape= of --psf-model: ``31`` or ``15x31x31``."""
    try:
        sizes = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--psf-model shape= takes odd sizes such as 31 or 15x31x31, got "
                         f"{text!r}") from None
    return sizes[0] if len(sizes) == 1 else sizes


#: The parameters of --psf-model (napari_dip.psf's keywords) and how each is read.
_PSF_PARAMETERS = {"na": float, "wavelength": float, "pixel_size": float, "z_step": float,
                   "ni": float, "ns": float, "depth": float, "model": str, "shape": _psf_shape}
_PSF_REQUIRED = ("na", "wavelength", "pixel_size")


def _psf_model_argument(text: str) -> dict:
    """--psf-model NAME=VALUE,...: the keyword arguments of :func:`napari_dip.psf`."""
    import difflib

    params: dict = {}
    example = "e.g. --psf-model na=1.4,wavelength=0.52,pixel_size=0.1"
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = (part.strip() for part in item.partition("="))
        name = name.lower()
        if not sep or not value:
            raise ValueError(f"--psf-model takes NAME=VALUE pairs separated by commas "
                             f"({example}), got {item!r}")
        if name not in _PSF_PARAMETERS:
            close = difflib.get_close_matches(name, _PSF_PARAMETERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"--psf-model has no parameter {name!r}{hint}; it takes "
                             f"{', '.join(_PSF_PARAMETERS)}")
        if name in params:
            raise ValueError(f"--psf-model gives {name}= twice")
        read = _PSF_PARAMETERS[name]
        if read is float:
            number = _number(value)
            if math.isnan(number):
                raise ValueError(f"--psf-model {name}= takes a number, got {value!r}")
            params[name] = number
        else:
            params[name] = read(value)
    missing = [f"{name}=" for name in _PSF_REQUIRED if name not in params]
    if missing:
        raise ValueError(f"--psf-model needs {', '.join(missing)} ({example}; lengths in um)")
    return params


def _psf_arguments(args, kwargs: dict) -> None:
    """--psf FILE or --psf-model: the deconvolution kernel (implies --task deblur)."""
    if args.psf is None and args.psf_model is None:
        return
    given = [name for name, value in (("--kernel", args.kernel), ("--psf", args.psf),
                                      ("--psf-model", args.psf_model)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(given)}: each is the blur kernel")
    option = given[0]
    task = kwargs.setdefault("task", "deblur")
    if task != "deblur":
        raise ValueError(f"{option} is the blur of --task deblur, not --task {task}")
    if args.psf is not None:  # 2-D, or 3-D for --mode volume (the run checks which)
        kwargs["kernel"] = _kernel_argument(args.psf, "--psf")
        return
    params = _psf_model_argument(args.psf_model)
    if kwargs.get("mode") == "volume" and "z_step" not in params:
        raise ValueError("--psf-model needs z_step= (the stack's Z step in um) with --mode "
                         "volume, which deconvolves in 3-D")
    from .psf_model import psf, spacing_mismatch

    why = spacing_mismatch(params.get("z_step"), params["pixel_size"], kwargs.get("spacing"))
    if why is not None:
        raise ValueError(f"--psf-model: {why}")
    try:
        kwargs["kernel"] = psf(**params)
    except ValueError as error:
        raise ValueError(f"--psf-model: {error}") from None


def _psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(data_range**2 / mse) if mse > 0 else float("inf")


class _ProgressBar:
    """A tqdm bar over a run's steps: single images count their iterations, stacks and
    tiles the whole run's."""

    def __init__(self):
        self.bar = None

    def __call__(self, step) -> None:
        from tqdm import tqdm

        total = step.run_total if step.run_total is not None else step.total
        done = step.run_iteration if step.run_iteration is not None else step.iteration
        if self.bar is None:
            self.bar = tqdm(total=total, unit="it", dynamic_ncols=True, file=sys.stderr)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)
        postfix = {}
        if step.planes > 1:
            postfix["plane"] = f"{step.plane}/{step.planes}"
        if step.tiles > 1:
            postfix["tile"] = f"{step.tile}/{step.tiles}"
        if step.stage is not None:  # the blend's validation fit (napari_dip.thinning)
            postfix["stage"] = step.stage
        postfix["loss"] = f"{step.loss:.3g}"
        self.bar.set_postfix(postfix, refresh=False)

    def finish(self) -> None:
        bar = self.bar
        if bar is not None and bar.n < bar.total:  # stopped early: end the bar there
            bar.total = bar.n
            bar.set_postfix_str("stopped early", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run(image, kwargs: dict, quiet: bool):
    from .api import iterate
    from .drivers import drain

    bar = None if quiet else _ProgressBar()
    try:
        result = drain(iterate(image, **kwargs), bar)
        if bar is not None:
            bar.finish()
        return result
    finally:
        if bar is not None:
            bar.close()


def _tile_argument(value: str | None):
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--tile must be a number of pixels or 'auto', got {value!r}") from None


def _load_input(args, kwargs: dict):
    """(image, ground truth or None, the file read or None, output path), filling in what the
    sample or the file says about itself (its task, mask, axes or channel axis)."""
    from .imageio import file_stem, read_data

    if args.sample is not None:
        if args.input is not None:
            raise ValueError("give either INPUT or --sample, not both")
        from .samples import load_sample

        sample = load_sample(args.sample)
        kwargs.update(sample.kwargs)
        if args.no_early_stop:  # the sample's noise level only says when to stop
            kwargs.pop("noise_sigma", None)
        if sample.mask is not None:
            kwargs["mask"] = sample.mask
        print(f"sample: {sample.description}", file=sys.stderr)
        return sample.degraded, sample.truth, None, Path(args.output or "napari-dip-sample.png")
    if args.input is None:
        raise ValueError("give an INPUT image file, or --sample to try a bundled one")
    source = read_data(args.input, hdu=args.hdu)
    image = source.array
    default = ".fits" if source.format == "fits" else ".tif"  # FITS keeps its header
    output = Path(args.output or Path(args.input).with_name(
        file_stem(args.input) + "_restored" + default))
    if args.axes is None and args.channel_axis is None:
        kwargs.update(source.layout(Path(args.input).name))
    return image, None, source, output


def _layout_arguments(args, kwargs: dict, source) -> None:
    """--channel-axis, --axes, --mode, --tile, --overlap, --no-warm-start (and the file's
    voxel size for --mode volume)."""
    if args.channel_axis is not None:
        if args.axes is not None:
            raise ValueError("give either --axes (with a C for channels) or --channel-axis")
        kwargs["channel_axis"] = args.channel_axis
    if args.axes is not None:
        kwargs["axes"] = args.axes
    if args.mode is not None:
        kwargs["mode"] = args.mode
        if "axes" not in kwargs:
            raise ValueError("--mode needs a stack with named axes; pass --axes, e.g. "
                             "--axes ZYX")
    tile = _tile_argument(args.tile)
    if tile is not None:
        kwargs["tile"] = tile
    if args.overlap is not None:
        kwargs["overlap"] = args.overlap
    if args.no_warm_start:
        kwargs["warm_start"] = False
    if kwargs.get("mode") == "volume" and source is not None and source.spacing is not None:
        kwargs["spacing"] = source.spacing


def _task_arguments(args, kwargs: dict) -> None:
    """The task's inputs (--mask, --flash, --factor, --kernel), the method's options and
    the run's settings."""
    from .imageio import read_image

    if args.task:
        kwargs["task"] = args.task
    if args.mask:
        mask = read_image(args.mask)
        if mask.ndim == 3 and "axes" not in kwargs:
            mask = mask.any(axis=-1) if not args.mask_known else mask.all(axis=-1)
        kwargs["mask"] = (mask == 0) if args.mask_known else (mask != 0)
    if args.flash:
        kwargs["flash"] = read_image(args.flash)
    for name in ("factor", "iterations", "noise"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    kernel = _kernel_argument(args.kernel)
    if kernel is not None:
        kwargs["kernel"] = kernel
    _psf_arguments(args, kwargs)
    if args.boundary is not None:
        kwargs["boundary"] = args.boundary
    if args.no_blend:
        kwargs["blend"] = False
    if args.method == "deepred":
        if args.denoiser:
            kwargs["denoiser"] = args.denoiser
        if args.denoiser_sigma:
            kwargs["denoiser_sigma"] = _denoiser_sigma_argument(args.denoiser_sigma)
    elif args.denoiser or args.denoiser_sigma:
        raise ValueError("--denoiser and --denoiser-sigma apply to --method deepred only")
    kwargs.update(method=args.method, preset=args.preset, early_stop=not args.no_early_stop,
                  device=args.device, seed=args.seed)
    if args.ensemble is not None:
        kwargs["ensemble"] = args.ensemble
    if args.noise_sigma is not None:
        kwargs["noise_sigma"] = _noise_sigma_argument(args.noise_sigma)


def _defect_arguments(args, image, kwargs: dict):
    """--nan-as-mask, --mask-cosmic-rays, --mask-saturated and --mask-grow: the inpainting
    mask made from the frame's defects (with a --mask file's holes). Returns the image to
    restore: the input, or, when NaN pixels join other holes, a copy with them set to 0."""
    flags = args.nan_as_mask or args.mask_cosmic_rays or args.mask_saturated is not None
    if not flags:
        if args.mask_grow:
            if "mask" not in kwargs:
                raise ValueError("--mask-grow grows an inpainting mask: give --mask or a "
                                 "defect option (--nan-as-mask, --mask-cosmic-rays, "
                                 "--mask-saturated)")
            kwargs["mask"] = _grown(np.asarray(kwargs["mask"], bool), args.mask_grow)
        return image
    from . import defects

    if np.ndim(image) != 2:
        raise ValueError("the defect options (--nan-as-mask, --mask-cosmic-rays, "
                         "--mask-saturated) take a 2-D frame; give a --mask file instead")
    kwargs.setdefault("task", "inpaint")
    only_nan = args.nan_as_mask and not (args.mask_cosmic_rays or args.mask_saturated
                                         is not None or "mask" in kwargs or args.mask_grow)
    if only_nan:
        kwargs["mask"] = "nan"
        return image
    holes = np.zeros(np.shape(image), bool) if "mask" not in kwargs \
        else np.asarray(kwargs["mask"], bool)
    nan = defects.nan_mask(image)
    if args.nan_as_mask:
        holes |= nan
    if args.mask_cosmic_rays:
        holes |= defects.cosmic_ray_mask(image)
    if args.mask_saturated is not None:
        holes |= defects.saturation_mask(image, args.mask_saturated)
    kwargs["mask"] = _grown(holes, args.mask_grow)
    print(f"mask: {100 * float(np.mean(kwargs['mask'])):.2f} % of the frame to fill",
          file=sys.stderr)
    if nan.any() and args.nan_as_mask:
        return np.where(nan, 0.0, image).astype(np.asarray(image).dtype)
    return image


def _grown(holes: np.ndarray, pixels: int) -> np.ndarray:
    from .defects import grow_mask

    if pixels < 0:
        raise ValueError(f"--mask-grow takes a number of pixels >= 0, got {pixels}")
    return grow_mask(holes, pixels)


def _summary(output: Path, result, image, truth) -> dict:
    summary = {
        "output": str(output), "iterations": result.iterations,
        "stopped_at": result.stopped_at, "seconds": round(result.elapsed, 2),
        "device": result.parameters.get("device"),
    }
    for key in ("axes", "mode", "planes", "tile", "tiles"):
        if result.parameters.get(key) is not None:
            summary[key] = result.parameters[key]
    if result.parameters.get("ensemble", 1) > 1:
        summary["ensemble"] = result.parameters["ensemble"]
    if "classical" in result.parameters:  # blended with it (napari_dip.thinning)
        summary["blended_with"] = result.parameters["classical"]
        summary["network_weight"] = round(float(result.parameters["classical_blend_weight"]), 3)
    if truth is not None and truth.shape == result.image.shape:
        data_range = float(truth.max() - truth.min())
        summary["psnr_input"] = round(_psnr(image, truth, data_range), 2)
        summary["psnr_result"] = round(_psnr(result.image, truth, data_range), 2)
    return summary


def _input_files(args) -> dict[str, str]:
    """The files the run reads, by the name the user gave them (never to be written)."""
    files = {"INPUT": args.input, "--mask": args.mask, "--flash": args.flash}
    if args.kernel not in (None, *_KERNEL_NAMES):
        files["--kernel"] = args.kernel
    if args.psf is not None:
        files["--psf"] = args.psf
    return {role: path for role, path in files.items() if path is not None}


def _warn_mask_polarity(args, kwargs: dict) -> None:
    """Warn (stderr) when a --mask file marks more than half the image as holes: most
    likely a mask of known pixels (the DIP paper's, 255 = known) given without
    --mask-known, or the other way round."""
    holes = kwargs.get("mask")
    if args.mask is None or holes is None:
        return
    share = float(np.mean(holes))
    if share <= 0.5:
        return
    advice = ("if it marks the holes (nonzero = pixel to fill), drop --mask-known"
              if args.mask_known else "if it marks known pixels (as the DIP paper's masks "
              "do, 255 = known), pass --mask-known")
    print(f"warning: the mask marks {100 * share:.0f} % of the image as holes (pixels to "
          f"fill); {advice}", file=sys.stderr)


def _check_before_run(args, output: Path, image, kwargs: dict) -> tuple[float, float]:
    """Everything that would otherwise fail after the run, checked before it (torch-free):
    the output is no input file, exists only with --overwrite, lies in a writable folder,
    and its type can hold the result (the shape from the validated plan, the dtype from
    the input's). Returns the input's (min, max), which decides a picture's dtype."""
    from .imageio import check_output_format
    from .request import build_plan
    from .safe_write import check_output_path

    check_output_path(output, _input_files(args), args.overwrite)
    spread = _uncertainty_path(args, output, kwargs)
    plan = build_plan(image, **kwargs)
    _warn_mask_polarity(args, kwargs)
    values = np.asarray(image)
    value_range = (float(values.min()), float(values.max()))
    check_output_format(output, plan.output_shape, plan.input_dtype, value_range)
    if spread is not None:  # the same shape, and written in the same type, as OUTPUT
        check_output_format(spread, plan.output_shape, plan.input_dtype, value_range)
    return value_range


def _uncertainty_path(args, output: Path, kwargs: dict) -> Path | None:
    """--uncertainty PATH, checked like OUTPUT (and never OUTPUT itself); it needs an
    ensemble of at least two fits."""
    if getattr(args, "uncertainty", None) is None:
        return None
    from .batch_inputs import check_uncertainty_ensemble, uncertainty_path
    from .safe_write import check_output_path, same_file

    check_uncertainty_ensemble(kwargs.get("ensemble"))
    spread = Path(args.uncertainty)
    if same_file(spread, output):
        raise ValueError(f"--uncertainty {spread} is the output file too; give it a name of "
                         f"its own, e.g. --uncertainty {uncertainty_path(output)}")
    try:
        check_output_path(spread, _input_files(args), args.overwrite)
    except ValueError as error:  # its messages name -o; this is --uncertainty
        message = str(error).replace("another -o", "another --uncertainty") \
            .replace("e.g. -o ", "e.g. --uncertainty ")
        if message.startswith("the output "):
            message = "the --uncertainty file " + message[len("the output "):]
        raise ValueError(message) from None
    return spread


def _restore_command(args) -> int:
    from .imageio import write_image

    kwargs: dict = {}
    image, truth, source, output = _load_input(args, kwargs)
    _layout_arguments(args, kwargs, source)
    _task_arguments(args, kwargs)
    image = _defect_arguments(args, image, kwargs)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    value_range = _check_before_run(args, output, image, kwargs)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    result = _run(image, kwargs, args.quiet)
    axes = kwargs.get("axes")
    written = {output: (result.image, result.parameters)}
    if args.uncertainty is not None:  # its record says what it holds
        written[Path(args.uncertainty)] = (result.uncertainty, {
            **result.parameters, "content": "uncertainty: the per-pixel standard deviation "
            "of the ensemble's fits, in the input's units"})
    for path, (values, parameters) in written.items():
        write_image(path, values, str(np.asarray(image).dtype), parameters,
                    source=source, axes=axes.upper() if axes else None,
                    input_range=value_range, overwrite=args.overwrite)
    summary = _summary(output, result, image, truth)
    if args.uncertainty is not None:
        summary["uncertainty"] = args.uncertainty
    print(json.dumps(summary))
    return 0


def _batch_command(args, argv: list[str]) -> int:
    """``napari-dip batch``: the restore options (and --params) as ``restore`` arguments,
    each file's own layout added where it is read."""
    from .batch_cli import apply_params, run_batch_command

    extra = apply_params(args, argv)
    mode, args.mode = args.mode, None  # checked per file: each names its own axes
    kwargs: dict = {}
    _layout_arguments(args, kwargs, None)
    _task_arguments(args, kwargs)
    if args.nan_as_mask or args.mask_cosmic_rays or args.mask_saturated is not None:
        raise ValueError("the defect options (--nan-as-mask, --mask-cosmic-rays, "
                         "--mask-saturated) are made from each frame and batch does not "
                         "take them yet; give a --mask file")
    _defect_arguments(args, None, kwargs)  # --mask-grow on a --mask file
    if mode is not None:
        kwargs["mode"] = mode
    return run_batch_command(args, {**kwargs, **extra})


class _Terminated(BaseException):
    """SIGTERM, raised where the program stands so that cleanup (a temporary file) runs.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""


@contextlib.contextmanager
def _sigterm_raises():
    """While the block runs, SIGTERM raises :class:`_Terminated` instead of ending the
    process on the spot; the previous handler comes back afterwards. (Signal handlers can
    only be set from the main thread; elsewhere nothing changes.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:  # None: a handler not set from Python, i.e. the default
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0, 2 for an error (a message, never a
    traceback), 130 when cancelled (Ctrl-C), 143 when terminated (SIGTERM)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "devices":
            from .devices import available_devices

            print("\n".join(available_devices()))
            return 0
        with _sigterm_raises():
            if args.command == "batch":
                return _batch_command(args, sys.argv[1:] if argv is None else argv)
            return _restore_command(args)
    except ValueError as error:
        from .cli_wording import in_cli_words, option_names

        commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
        options = option_names(commands[args.command]) if args.command in commands else {}
        print(f"napari-dip: error: {in_cli_words(str(error), options)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-dip: cancelled", file=sys.stderr)
        return 130
    except _Terminated:
        print("napari-dip: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


if __name__ == "__main__":
    sys.exit(main())
