"""The command line shows the engine's errors in its own words (``--noise-sigma 0.1``, not
``noise_sigma=0.1``)."""

from __future__ import annotations

import pytest

from napari_dip.cli import _parser
from napari_dip.cli_wording import in_cli_words, option_names


@pytest.fixture(scope="module")
def options():
    commands = _parser()._subparsers._group_actions[0].choices
    return option_names(commands["restore"])


@pytest.mark.parametrize("engine, cli", [
    ("noise_sigma=0.1: noise='poisson' has no standard deviation to give; drop noise_sigma",
     "--noise-sigma 0.1: --noise poisson has no standard deviation to give; drop --noise-sigma"),
    ("early_stop=False runs every iteration", "--no-early-stop runs every iteration"),
    ("warm_start=False with one plane", "--no-warm-start with one plane"),
    ("give noise_sigma='auto' to estimate it", "give --noise-sigma auto to estimate it"),
    ("noise_sigma=None: always ES-WMV", "--noise-sigma none: always ES-WMV"),
    ("fill them: task='inpaint' with mask='nan'", "fill them: --task inpaint with --nan-as-mask"),
    ("tile=8 is too small", "--tile 8 is too small"),
    ("channel_axis=5 is out of range", "--channel-axis 5 is out of range"),
])
def test_keywords_become_options(options, engine, cli):
    assert in_cli_words(engine, options) == cli


@pytest.mark.parametrize("text", [
    "mask has shape (30, 30) but the image is 40x40 pixels",  # plain words stay
    "cannot read /data/noise_sigma=3/img.tif: no such file",  # inside a path
    "the task flash_no_flash needs a flash image",  # a value, not an option
    "np.nan_to_num",
    # a --no-X switch is X=False only: other values (from --params) have no option
    "early_stop=300 sets ES-WMV's patience",
    "early_stop must be True, False or a patience in iterations",
    "warm_start=5 applies to stacks and tiles",
])
def test_other_text_stays(options, text):
    assert in_cli_words(text, options) == text


def test_switches_map_to_their_keywords(options):
    assert options["noise_sigma"] == "--noise-sigma"
    assert options["early_stop"] == "--no-early-stop"
    assert options["task"] == "--task"
