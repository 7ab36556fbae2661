"""Which files a batch restores, and where each result goes.

``INPUTS`` are files, folders (their image files, not recursing) and glob patterns (``*``,
``?``, ``[...]``; ``**`` recurses). A folder or pattern takes the files whose suffix
:mod:`napari_dip.imageio` reads (every ``*_SUFFIXES`` tuple it defines, so a format added
there is picked up here), leaving out hidden files (the temporary files of unfinished
writes among them) and the outputs an earlier batch recorded. A file named explicitly is
always taken: one that cannot be read fails alone, with imageio's message. Each input's
result is ``OUTDIR/<name without its suffix>.tif`` (float32, the run's parameters in its
description), and an ensemble's spread ``OUTDIR/<name>_uncertainty.tif``. Torch-free and
dask-free.
"""

from __future__ import annotations

import glob
import numbers
from collections.abc import Iterable
from pathlib import Path

from . import imageio

#: Suffix of every output (TIFF keeps float32 values and any shape).
OUTPUT_SUFFIX = ".tif"
_GLOB_CHARACTERS = set("*?[")


def readable_suffixes() -> tuple[str, ...]:
    """The suffixes imageio reads (lower case, longest first: ``.nii.gz`` before ``.gz``)."""
    found: set[str] = set()
    for name in dir(imageio):
        value = getattr(imageio, name)
        if name.endswith("_SUFFIXES") and isinstance(value, tuple):
            found.update(s.lower() for s in value if isinstance(s, str))
    return tuple(sorted(found, key=lambda s: (-len(s), s)))


def suffix_of(path: Path) -> str | None:
    """The readable suffix ``path`` ends with, or None."""
    name = path.name.lower()
    return next((s for s in readable_suffixes() if name.endswith(s)), None)


def stem_of(path: Path) -> str:
    """The name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    return imageio.file_stem(path)


def output_for(source: Path, out_dir: Path) -> Path:
    """Where the result of ``source`` goes."""
    return out_dir / (stem_of(source) + OUTPUT_SUFFIX)


def uncertainty_path(output: Path) -> Path:
    """Where an output's ensemble spread goes by default: beside it, as
    ``<name>_uncertainty.tif``."""
    return output.with_name(f"{output.stem}_uncertainty.tif")


def check_uncertainty_ensemble(ensemble) -> None:
    """An uncertainty file needs an ensemble of at least two fits, given: ValueError
    otherwise (``ensemble`` None is the default, "auto", which fits once on most images)."""
    if ensemble is None or (isinstance(ensemble, str) and ensemble.strip().lower() == "auto"):
        got = "auto, the default, which fits once on all but small denoising images"
    else:
        got = repr(ensemble) if isinstance(ensemble, str) else ensemble
    if isinstance(ensemble, bool) or not isinstance(ensemble, numbers.Integral) \
            or ensemble < 2:
        raise ValueError("--uncertainty writes the spread of an ensemble's fits, which "
                         f"needs --ensemble K with K >= 2 (got {got}); add --ensemble 4")


def _candidates(paths: Iterable[Path], skip: set[str]) -> list[Path]:
    """Image files among ``paths`` (a folder's entries or a pattern's matches)."""
    return [p for p in sorted(paths) if p.is_file() and not p.name.startswith(".")
            and suffix_of(p) is not None and str(p.absolute()) not in skip]


def find_inputs(inputs: Iterable[str | Path], skip: Iterable[str | Path] = ()) -> list[Path]:
    """The files that ``inputs`` name, in the order given (each once), as absolute paths.

    ``skip``: files never taken from a folder or pattern (a batch's earlier outputs).
    ValueError when an input does not exist, a pattern matches nothing, or nothing at all
    is found."""
    skip_set = {str(Path(p).absolute()) for p in skip}
    found: dict[str, Path] = {}
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            files = _candidates(path.iterdir(), skip_set)
            if not files:
                raise ValueError(f"no image files in the folder {text} (looked for "
                                 f"{', '.join(readable_suffixes())})")
        elif path.exists() or path.is_symlink():
            files = [path]
        elif _GLOB_CHARACTERS & set(text):
            files = _candidates((Path(p) for p in glob.glob(text, recursive=True)), skip_set)
            if not files:
                raise ValueError(f"no image files match {text}")
        else:
            raise ValueError(f"no such file or folder: {text}")
        for file in files:
            found.setdefault(str(file.absolute()), file.absolute())
    if not found:
        raise ValueError("no input files given")
    return list(found.values())


def check_names(sources: list[Path], out_dir: Path) -> dict[Path, Path]:
    """{input: output}; ValueError when two inputs would give the same output (name the
    files, so they can be given in separate batches)."""
    outputs: dict[Path, Path] = {}
    by_output: dict[Path, list[Path]] = {}
    for source in sources:
        out = output_for(source, out_dir)
        outputs[source] = out
        by_output.setdefault(out, []).append(source)
    clashes = {out: srcs for out, srcs in by_output.items() if len(srcs) > 1}
    if clashes:
        out, srcs = next(iter(clashes.items()))
        more = f" (and {len(clashes) - 1} more such names)" if len(clashes) > 1 else ""
        raise ValueError(f"{', '.join(map(str, srcs))} would all be written to {out}{more}; "
                         "restore files of the same name in separate batches (other -o)")
    return outputs


__all__ = ["OUTPUT_SUFFIX", "check_names", "check_uncertainty_ensemble", "find_inputs",
           "output_for", "readable_suffixes", "stem_of", "suffix_of", "uncertainty_path"]
