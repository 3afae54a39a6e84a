"""pytest.ini turns deprecations raised from our own modules into errors and leaves third-party ones alone."""

from __future__ import annotations

import warnings

import pytest


def _warn_from(module: str, category: type[Warning]) -> None:
    code = compile(f"import warnings\nwarnings.warn('old API', {category.__name__})", "<probe>", "exec")
    exec(code, {"__name__": module})


@pytest.mark.parametrize("category", [DeprecationWarning, FutureWarning])
@pytest.mark.parametrize("module", ["lt_detectron.losses.probe", "tools.train_net", "benchmarks.loss_throughput"])
def test_own_deprecations_fail(module, category):
    with pytest.raises(category, match="old API"):
        _warn_from(module, category)


@pytest.mark.parametrize("module", ["detectron2.probe", "fvcore.probe", "pkg_resources"])
def test_third_party_deprecations_are_ignored(module):
    with warnings.catch_warnings(record=True) as caught:
        _warn_from(module, DeprecationWarning)
    assert caught == []  # neither raised nor shown: ignored by pytest.ini


def test_entry_points_silence_detectron2s_meshgrid_warning():
    """Every run printed torch.meshgrid's indexing notice from Detectron2's anchor generator (issue 22 item 11); the
    process policy of the entry points filters exactly that message."""
    import torch

    from lt_detectron.utils.numerics import pin_cpu_numerics

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pin_cpu_numerics()
        torch.meshgrid(torch.arange(2), torch.arange(3))
        warnings.warn("another UserWarning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another UserWarning"]
