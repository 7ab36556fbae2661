"""The core works without Qt or napari, and importing the package does not import torch."""

import subprocess
import sys

import pytest

CORE = ["napari_dip", "napari_dip.api", "napari_dip.cli", "napari_dip.samples",
        "napari_dip.solvers.dip", "napari_dip.solvers.deepred", "napari_dip.denoisers",
        "napari_dip.problem", "napari_dip.imageio"]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(out.split())


def test_package_import_is_light():
    loaded = _loaded_after("import napari_dip; napari_dip.__version__")
    assert "torch" not in loaded
    assert not {"napari", "qtpy", "PyQt6", "PyQt5", "PySide6"} & loaded


def test_argument_checking_and_the_cli_parser_do_not_need_torch():
    loaded = _loaded_after("import napari_dip.cli, napari_dip.request, napari_dip.samples, "
                           "napari_dip.presets, napari_dip.denoisers")
    assert "torch" not in loaded


@pytest.mark.parametrize("module", CORE)
def test_core_modules_import_without_qt_or_napari(module):
    loaded = _loaded_after(f"import {module}")
    assert not {"napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "magicgui"} & loaded


def test_lazy_public_names():
    import napari_dip

    assert callable(napari_dip.restore) and callable(napari_dip.iterate)
    assert set(napari_dip.__all__) >= {"restore", "iterate", "Result", "Step"}
    with pytest.raises(AttributeError):
        _ = napari_dip.does_not_exist
