"""Device selection logic, tested on the CPU by faking what torch reports."""

import pytest
import torch

from napari_dip.devices import available_devices, resolve_device


@pytest.fixture
def no_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("napari_dip.devices._mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr("napari_dip.devices._mps_available", lambda: False)


def test_cpu_only_machine(no_accelerators):
    assert available_devices() == ["auto", "cpu"]
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    for name in ("cuda", "cuda:0", "mps"):
        with pytest.raises(ValueError, match=r"choose one of: auto, cpu"):
            resolve_device(name)


def test_auto_prefers_cuda_and_indices_are_checked(two_gpus):
    assert available_devices() == ["auto", "cuda:0", "cuda:1", "cpu"]
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="cuda:2.*cuda:0, cuda:1"):
        resolve_device("cuda:2")


def test_auto_takes_mps_when_there_is_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("napari_dip.devices._mps_available", lambda: True)
    assert available_devices() == ["auto", "mps", "cpu"]
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")


@pytest.mark.parametrize("name", [None, "", "gpu", "cuda:x", 3])
def test_nonsense_names_list_the_choices(no_accelerators, name):
    with pytest.raises(ValueError, match="cpu"):
        resolve_device(name)
