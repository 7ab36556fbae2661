"""Choosing the torch device a run uses."""

from __future__ import annotations

import re

import torch


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Names of the devices this machine can run on, best first after ``"auto"``.

    Returns e.g. ``["auto", "cuda:0", "cuda:1", "cpu"]`` or ``["auto", "mps", "cpu"]``.
    """
    names = ["auto"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(name: str | None) -> torch.device:
    """Turn a device name into a :class:`torch.device` that exists on this machine.

    ``"auto"`` picks CUDA, then Apple MPS, then the CPU. ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    and ``"mps"`` are taken as given when this machine has them. Anything else, or a device
    this machine lacks, raises ValueError naming the devices that are available.
    """
    have = available_devices()
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"device must be a device name; this machine has: {', '.join(have)}")
    key = name.strip().lower()
    if key == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key == "mps" and "mps" in have:
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", key)
    if match and torch.cuda.is_available():
        index = int(match.group(1)) if match.group(1) else torch.cuda.current_device()
        if index < torch.cuda.device_count():
            return torch.device("cuda", index)
    raise ValueError(
        f"device {name!r} is not available on this machine; choose one of: {', '.join(have)}"
    )
