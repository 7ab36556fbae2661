"""Every bad input raises a ValueError that names the problem and the fix, before any work."""

import numpy as np
import pytest

from napari_dip import iterate, restore

IMG = np.random.default_rng(0).random((32, 32))


@pytest.mark.parametrize("kwargs, message", [
    (dict(image=np.zeros((0, 0))), "empty"),
    (dict(image=np.ones((1, 1)) * 3), "at least 16 pixels"),
    (dict(image=np.random.rand(8, 40)), "at least 16 pixels"),
    (dict(image=np.where(IMG > 0.5, np.nan, IMG)), "NaN or infinite"),
    (dict(image=np.where(IMG > 0.9, np.inf, IMG)), "NaN or infinite"),
    (dict(image=np.full((32, 32), 7.0)), "constant"),
    (dict(image=np.random.rand(4, 32, 32)), "channel_axis"),
    (dict(image=np.random.rand(2, 4, 32, 32)), "4 dimensions"),
    (dict(image=np.random.rand(32, 32, 3), channel_axis=-1, task="inpaint"), "needs a mask"),
    (dict(task="inpaint", mask=np.ones((31, 32))), "mask has shape"),
    (dict(task="inpaint", mask=np.zeros((32, 32))), "all zero"),
    (dict(task="inpaint", mask=np.ones((32, 32))), "no known pixel"),
    (dict(mask=np.ones((32, 32))), "only used by task='inpaint'"),
    (dict(task="sharpen"), "unknown task 'sharpen'"),
    (dict(method="red"), "unknown method"),
    (dict(preset="slow"), "unknown preset"),
    (dict(noise="laplace"), "unknown noise model"),
    (dict(task="super_resolution"), "needs factor"),
    (dict(task="super_resolution", factor=3), "must be 2, 4 or 8"),
    (dict(task="super_resolution", factor=2.0), "must be 2, 4 or 8"),
    (dict(factor=2), "only used by task='super_resolution'"),
    (dict(task="deblur", kernel=np.ones((40, 5))), "larger image|smaller kernel"),
    (dict(task="deblur", kernel="motion"), "unknown blur kernel"),
    (dict(kernel="gaussian"), "only used by task='deblur'"),
    (dict(task="flash_no_flash"), "needs flash"),
    (dict(task="flash_no_flash", flash=np.random.rand(32, 30)), "same size"),
    (dict(flash=IMG), "only used by task='flash_no_flash'"),
    (dict(iterations=0), "positive integer"),
    (dict(iterations=2.5), "positive integer"),
    (dict(early_stop=-3), "patience"),
    (dict(seed=-1), "non-negative integer"),
    (dict(preview_every=0), "preview_every"),
    (dict(image=-IMG, noise="poisson"), "non-negative photon counts"),
    (dict(image=IMG.astype(complex)), "complex"),
    (dict(image=np.array([["a"] * 32] * 32)), "numeric"),
    (dict(device="tpu"), "not available on this machine; choose one of: auto, .*cpu"),
    (dict(device="cuda:7"), "not available"),
    (dict(frobnicate=1), "unknown option.*frobnicate"),
])
def test_bad_input_is_refused_with_a_helpful_message(kwargs, message):
    kwargs = {"image": IMG, **kwargs}
    image = kwargs.pop("image")
    with pytest.raises(ValueError, match=message):
        iterate(image, **kwargs)  # raises on the call itself, before iterating


def test_errors_happen_before_any_work_in_restore_too():
    with pytest.raises(ValueError, match="unknown task"):
        restore(IMG, task="colourise")
