"""The discrepancy principle for photon counts (issue 15, target 5): its statistics against
the Poisson variance, which data it applies to, where it stops on a synthetic fit, and a
Poisson denoising run that stops by it near its best step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import psnr

from napari_dip import iterate, restore, samples
from napari_dip.drivers import drain
from napari_dip.solvers.dip import photon_counts
from napari_dip.stabilisers import (
    Discrepancy,
    EarlyStopping,
    PoissonDiscrepancy,
)


def _scene(size=48, peak=30.0, seed=0):
    """A smooth rate from about 1 to ``peak`` counts and its Poisson counts, as (1, 1,
    size, size) float64 tensors in counts / peak (the engine's normalisation)."""
    yy, xx = np.mgrid[:size, :size] / (size - 1)
    rate = 1 + (peak - 1) * (0.5 + 0.5 * np.sin(3 * xx) * np.cos(2 * yy)) ** 2
    counts = np.random.default_rng(seed).poisson(rate).astype(np.float64)
    scale = counts.max()
    as_tensor = lambda a: torch.tensor(a / scale, dtype=torch.float64)[None, None]  # noqa: E731
    return as_tensor(rate), as_tensor(counts), 1.0 / scale


def test_the_statistics_are_the_poisson_variance_of_the_rate():
    rate, counts, unit = _scene()
    rule = PoissonDiscrepancy(counts, unit, window=1, factor=1.0)
    residual, variance = rule.statistics(rate)
    # E[(y - rate)^2] = rate (in counts): the truth's residual is its variance (Monte-Carlo,
    # 2304 values: a few % of scatter), and the variance is the mean rate times one count
    assert float(variance) == pytest.approx(float(rate.mean()) * unit, rel=1e-9)
    assert float(residual) == pytest.approx(float(variance), rel=0.08)
    # a fit of the counts themselves has no residual left: far below the bound
    assert float(rule.statistics(counts)[0]) == 0.0
    # before a window the bound is the variance the data would have as their own rate
    assert PoissonDiscrepancy.FACTOR == 1.0
    assert PoissonDiscrepancy(counts, unit).threshold == pytest.approx(
        float(counts.mean()) * unit)
    # pixels without data do not count
    weight = torch.zeros_like(counts)
    weight[..., :10] = 1
    masked = PoissonDiscrepancy(counts, unit, weight=weight, window=1, factor=1.0)
    assert float(masked.statistics(rate)[1]) == pytest.approx(
        float(rate[..., :10].mean()) * unit, rel=1e-9)
    with pytest.raises(ValueError, match="count unit > 0"):
        PoissonDiscrepancy(counts, 0.0)
    with pytest.raises(ValueError, match="Poisson discrepancy's factor must be > 0"):
        PoissonDiscrepancy(counts, unit, factor=0.0)
    with pytest.raises(ValueError, match="at least one measured value"):
        PoissonDiscrepancy(counts, unit, weight=torch.zeros_like(counts))


def test_the_poisson_rule_averages_an_ensembles_members():
    rate, counts, unit = _scene()
    members = torch.cat([rate, 0.5 * rate + 0.5 * counts, counts])
    rule = PoissonDiscrepancy(counts, unit)
    together = rule.statistics(members)
    alone = [rule.statistics(members[k:k + 1]) for k in range(3)]
    for i in range(2):
        assert float(together[i]) == pytest.approx(np.mean([float(a[i]) for a in alone]),
                                                   rel=1e-9)


def test_the_poisson_rule_stops_near_the_truth():
    """Outputs going from a flat image to the rate in 60 steps, then on to the counts
    (fitting the noise): the rule stops within a few steps of the rate, with an output
    whose distance to the rate is a small fraction of the noise."""
    rate, counts, unit = _scene()
    window, under = 5, 60
    flat = torch.full_like(rate, float(rate.mean()))
    outputs = [flat + (rate - flat) * t / under for t in range(1, under + 1)]
    outputs += [rate + (counts - rate) * t / 60 for t in range(1, 61)]
    plain = PoissonDiscrepancy(counts, unit, window=window)  # factor 1, the default
    lower = PoissonDiscrepancy(counts, unit, window=window, factor=0.9)
    stops = {}
    for it, out in enumerate(outputs, start=1):
        for name, rule in (("plain", plain), ("lower", lower)):
            rule.observe(it, out, out, torch.tensor(0.0))
            if name not in stops and rule.should_stop(it):
                stops[name] = it
    # within a few steps of the rate (step `under`; the counts' own scatter about the rate
    # is a few % off its expectation, and the window delays by up to window - 1 steps)
    assert under - 8 <= stops["plain"] <= under + window + 3, stops
    kept = outputs[stops["plain"] - 1]
    _, variance = plain.statistics(rate)
    assert float(((kept - rate) ** 2).mean()) < 0.1 * float(variance)
    assert stops["plain"] < stops["lower"] <= under + 20, stops  # 0.9: a little later
    assert plain.parameters() == {
        "stopping": "discrepancy", "discrepancy_window": window,
        "discrepancy_reached_at": stops["plain"], "discrepancy_noise": "poisson",
        "discrepancy_factor": 1.0}
    assert plain.progress(stops["plain"]) == {"expected_stop": stops["plain"]}


@pytest.mark.parametrize("data, counts", [
    (np.array([[0, 3], [7, 12]], np.uint16), True),
    (np.array([[0.0, 3.0], [7.0, 12.0]], np.float32), True),
    (np.array([[0.0, 3.5], [7.0, 12.0]]), False),  # not whole numbers: a gain or a scale
    (np.array([[0.0, 0.25], [0.5, 1.0]]), False),  # normalised
    (np.array([[-1, 3], [7, 12]], np.int32), False),  # negative: bias-subtracted
    (np.zeros((0, 3)), False),
])
def test_photon_counts_are_whole_non_negative_numbers(data, counts):
    assert photon_counts(data) is counts


def test_counts_stop_at_the_poisson_noise_level_and_other_data_by_es_wmv():
    sample = samples.hubble(size=48)
    record = restore(sample.degraded, noise="poisson", iterations=3).parameters
    assert record["stopping"] == "discrepancy"
    assert record["discrepancy_noise"] == "poisson"
    # the same image in another unit (a camera gain of 2.5): the variance is unknown
    record = restore(sample.degraded * 2.5, noise="poisson", iterations=3).parameters
    assert record["stopping"] == EarlyStopping.name
    # an ES-WMV patience, or noise_sigma=None, asks for ES-WMV; early stopping off stops
    # nowhere
    record = restore(sample.degraded, noise="poisson", iterations=3, early_stop=50).parameters
    assert record["stopping"] == EarlyStopping.name
    record = restore(sample.degraded, noise="poisson", iterations=3,
                     noise_sigma=None).parameters
    assert record["stopping"] == EarlyStopping.name
    record = restore(sample.degraded, noise="poisson", iterations=3,
                     early_stop=False).parameters
    assert record["stopping"] is None
    assert issubclass(PoissonDiscrepancy, Discrepancy)


def test_a_poisson_run_stops_by_the_rule_near_its_best_step():
    """The Hubble sample (48 px, peak 30): the run stops at the Poisson noise level long
    before its limit, and what it keeps is within 0.5 dB of the best of its previews and
    well above the counts."""
    sample = samples.hubble(size=48)
    peak = float(sample.truth.max())
    previews = {}

    def record(step):
        if step.preview is not None:
            previews[step.iteration] = psnr(step.preview, sample.truth, peak)

    result = drain(iterate(sample.degraded, noise="poisson", iterations=1500,
                           preview_every=25, seed=0), record)
    kept = psnr(result.image, sample.truth, peak)
    assert result.parameters["stopping"] == "discrepancy"
    assert result.stopped_at < 1000
    assert kept >= max(previews.values()) - 0.5, (kept, previews)
    assert kept >= psnr(sample.degraded, sample.truth, peak) + 4  # measured: +4.8 dB
