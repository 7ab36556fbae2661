"""``batch(..., uncertainty=True)`` / ``napari-dip batch --uncertainty``: each result's
ensemble spread written beside it as ``<name>_uncertainty.tif`` (issue 15), on a local
Dask cluster of one single-threaded worker, tiny images and a few iterations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
tifffile = pytest.importorskip("tifffile")

from dask_helpers import local_client

from napari_dip import batch, restore
from napari_dip.cli import main
from napari_dip.manifest import MANIFEST_NAME, read_records

RUN = {"iterations": 3, "early_stop": False, "device": "cpu", "seed": 1, "ensemble": 2}


@pytest.fixture(scope="module")
def client():
    """A local cluster of 1 single-threaded worker process."""
    with local_client(1) as c:
        yield c


def _inputs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = [folder / "a.tif", folder / "b.tif"]
    tifffile.imwrite(paths[0], rng.random((32, 32)).astype(np.float32))
    tifffile.imwrite(paths[1], (rng.random((3, 32, 32)) * 1000).astype(np.float32),
                     metadata={"axes": "ZYX"}, photometric="minisblack")
    return paths


def _lines(out: Path) -> list[dict]:
    return [r for r in read_records(out / MANIFEST_NAME) if "status" in r]


def test_the_command_writes_each_spread_beside_its_result(client, tmp_path, capsys,
                                                           monkeypatch):
    from napari_dip.imageio import read_image

    a, b = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    monkeypatch.setattr(distributed, "Client", lambda *args, **kw: client)  # no new cluster
    monkeypatch.setattr(client, "close", lambda *args, **kw: None)
    code = main(["batch", str(tmp_path / "in"), "-o", str(out), "--iterations", "3",
                 "--no-early-stop", "--device", "cpu", "--seed", "1", "--ensemble", "2",
                 "--uncertainty", "--quiet", "--scheduler", "tcp://unused:0"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["done"] == 2
    for source, layout in ((a, {}), (b, {"axes": "ZYX"})):
        spread = tifffile.imread(out / f"{source.stem}_uncertainty.tif")
        want = restore(read_image(source), **layout, **RUN)
        assert spread.dtype == np.float32 and spread.shape == want.uncertainty.shape
        assert np.allclose(spread, want.uncertainty, atol=1e-6)
        assert spread.min() >= 0 and spread.max() > 0
        with tifffile.TiffFile(out / f"{source.stem}_uncertainty.tif") as tif:
            record = json.loads(tif.pages[0].description)
        assert record["content"].startswith("uncertainty: the per-pixel standard deviation")
        assert record["ensemble"] == 2
    assert tifffile.imread(out / "b_uncertainty.tif").shape == (3, 32, 32)
    lines = _lines(out)
    assert {Path(r["uncertainty"]).name for r in lines} == {"a_uncertainty.tif",
                                                            "b_uncertainty.tif"}


def test_a_missing_spread_is_redone_and_the_rest_skipped(client, tmp_path):
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    report = batch(tmp_path / "in", out, client=client, progress=False, uncertainty=True,
                   **RUN)
    assert [f.status for f in report] == ["done", "done"]
    kept = (out / "b_uncertainty.tif").stat().st_mtime_ns
    (out / "a_uncertainty.tif").unlink()
    report = batch(tmp_path / "in", out, client=client, progress=False, uncertainty=True,
                   **RUN)
    by_name = {f.input.name: f for f in report}
    assert by_name["a.tif"].status == "done"
    assert by_name["a.tif"].reason == "uncertainty file missing"
    assert by_name["b.tif"].status == "skipped"
    assert (out / "a_uncertainty.tif").is_file()
    assert (out / "b_uncertainty.tif").stat().st_mtime_ns == kept
    # the same settings without the spread are other settings: both redone, none deleted
    report = batch(tmp_path / "in", out, client=client, progress=False, **RUN)
    assert {f.reason for f in report} == {"parameters changed"}


def test_no_ensemble_is_refused_before_any_work(tmp_path):
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(ValueError,
                       match=r"needs --ensemble K with K >= 2 \(got 1\); add --ensemble 4"):
        batch(tmp_path / "in", out, progress=False, uncertainty=True,
              **{**RUN, "ensemble": 1})
    assert not out.exists()


def test_a_foreign_file_at_the_spread_path_is_kept(client, tmp_path):
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / "a_uncertainty.tif"
    foreign.write_bytes(b"the user's own file")
    report = batch(tmp_path / "in", out, client=client, progress=False, uncertainty=True,
                   **RUN)
    by_name = {f.input.name: f for f in report}
    assert by_name["a.tif"].status == "failed"
    assert "a_uncertainty.tif" in by_name["a.tif"].error
    assert "overwrite" in by_name["a.tif"].error
    assert foreign.read_bytes() == b"the user's own file"
    assert not (out / "a.tif").exists()  # neither of its outputs was written
    assert by_name["b.tif"].status == "done"


def test_an_output_that_fails_takes_its_spread_with_it(tmp_path, monkeypatch):
    from napari_dip import batch_run, imageio

    calls = []
    real = imageio.write_image

    def failing(path, *args, **kwargs):
        calls.append(Path(path).name)
        if not Path(path).name.endswith("_uncertainty.tif"):
            raise ValueError(f"cannot write {path}: disk full")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(imageio, "write_image", failing)
    written = {tmp_path / "x_uncertainty.tif": (np.ones((4, 4), np.float32), {}),
               tmp_path / "x.tif": (np.ones((4, 4), np.float32), {})}
    with pytest.raises(ValueError, match="disk full"):
        batch_run._write_all(written, {"input_dtype": "float32", "axes": None}, (0.0, 1.0),
                             overwrite=False)
    assert calls == ["x_uncertainty.tif", "x.tif"]
    assert list(tmp_path.iterdir()) == []


def test_split_stacks_join_their_spreads(client, tmp_path):
    from napari_dip.imageio import read_image

    _, b = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    report = batch(b, out, client=client, progress=False, uncertainty=True, split="planes",
                   split_size=2, **RUN)
    assert [f.status for f in report] == ["done"]
    spread = tifffile.imread(out / "b_uncertainty.tif")
    assert spread.shape == (3, 32, 32)
    first = restore(read_image(b)[:2], axes="ZYX", **RUN).uncertainty  # the first chunk
    assert np.allclose(spread[:2], first, atol=1e-6)
    with tifffile.TiffFile(out / "b_uncertainty.tif") as tif:
        assert json.loads(tif.pages[0].description)["split"]["planes"] == [[0, 2], [2, 3]]
