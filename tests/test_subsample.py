"""tasks.registry.subsample: the one subset draw behind --max-train-examples/--max-eval-examples of
tasks.finetune and benchmarks.rank_sweep."""

import pytest

from tasks.registry import subsample

DATA = [f"ex{i}" for i in range(50)]


def test_subset_keeps_order_and_depends_on_the_seed_only():
    a = subsample(DATA, 10, seed=3)
    assert len(a) == len(set(a)) == 10 and set(a) <= set(DATA)
    assert a == sorted(a, key=DATA.index)  # original order
    assert subsample(DATA, 10, seed=3) == a and subsample(DATA, 10, seed=4) != a


@pytest.mark.parametrize("n", [None, 0, 50, 51])
def test_none_zero_or_too_many_keep_everything(n):
    assert subsample(DATA, n, seed=0) is DATA


def test_negative_size_names_the_flags():
    with pytest.raises(ValueError, match="--max-train-examples/--max-eval-examples must be >= 0"):
        subsample(DATA, -1, seed=0)


def test_finetune_and_rank_sweep_use_this_one():
    from benchmarks import rank_sweep
    from tasks import finetune

    assert finetune.subsample is subsample and rank_sweep.subsample is subsample
