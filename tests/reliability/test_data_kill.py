"""kill -9 of `prepare` at random points, then a rerun: the same cache as an uninterrupted run,
and no temporaries left behind."""
from __future__ import annotations

import itertools
import os
import random
import signal
import time

import pytest

import benchmark.data as data
from benchmark import paths
from benchmark.data import cache, download, images

from .helpers import BUSI_CFG, SIZE, forked, prepare_busi, same_splits, splits_of, temporaries

N_IMAGES = BUSI_CFG.n_train + BUSI_CFG.n_val + BUSI_CFG.n_test


@pytest.fixture(scope="module")
def reference(busi_mirror, tmp_path_factory):
    """An uninterrupted run: its tensors and meta.json."""
    root = tmp_path_factory.mktemp("reference")
    prepare_busi(root, busi_mirror)
    return splits_of(root, "busi"), data.meta("busi", root, SIZE)


def _die_at(module, attr: str, nth: int, after: bool, root, mirror) -> None:
    """Run prepare, SIGKILL-ing this process at the ``nth`` call of ``module.attr`` (before it, or
    just ``after`` it returned)."""
    original, calls = getattr(module, attr), itertools.count(1)

    def dying(*args, **kwargs):
        last = next(calls) == nth
        if last and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if last:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, attr, dying)
    prepare_busi(root, mirror)


def _check_rerun(root, mirror, reference) -> None:
    prepare_busi(root, mirror)
    splits, info = reference
    assert same_splits(splits_of(root, "busi"), splits)
    meta = data.meta("busi", root, SIZE)
    for key in ("counts", "files", "class_names", "checksum", "splits"):
        assert meta[key] == info[key], key
    assert temporaries(root) == []
    assert sorted(p.name for p in paths.raw_dir(root, "busi").iterdir()) == ["Dataset_BUSI.zip", "Dataset_BUSI_with_GT"]


_rng = random.Random(14)
POINTS = [  # (where, nth call, after it returned)
    (download, "_stream", 1, True),  # the download written to its temporary, not yet renamed
    (download, "replace_dir", 1, False),  # the archive extracted to its temporary, not yet renamed
    (images, "read_image", _rng.randint(1, N_IMAGES), False),  # while decoding (memmap buffers on disk)
    (images, "read_image", _rng.randint(1, N_IMAGES), False),
    (cache.torch, "save", _rng.randint(1, 3), True),  # between splits written
    (cache, "replace_dir", 1, False),  # the finished cache (READY included), not yet moved into place
]


@pytest.mark.parametrize("module, attr, nth, after", POINTS, ids=[f"{p[1]}-{p[2]}" for p in POINTS])
def test_kill_at_a_point_then_rerun_gives_the_same_cache(busi_mirror, reference, tmp_path, module, attr, nth, after):
    process = forked(_die_at, module, attr, nth, after, tmp_path, busi_mirror)
    process.join(120)
    assert process.exitcode == -signal.SIGKILL
    assert not paths.ready_marker(tmp_path, "busi", SIZE).exists()
    assert temporaries(tmp_path)  # the killed run left its temporaries: the rerun must cope
    _check_rerun(tmp_path, busi_mirror, reference)


def _slow_prepare(root, mirror) -> None:
    read = images.read_image
    images.read_image = lambda *args: (time.sleep(0.01), read(*args))[1]
    prepare_busi(root, mirror)


@pytest.mark.parametrize("seed", range(3))
def test_kill_at_a_random_time_then_rerun_gives_the_same_cache(busi_mirror, reference, tmp_path, seed):
    process = forked(_slow_prepare, tmp_path, busi_mirror)
    time.sleep(random.Random(seed).uniform(0.0, 0.6))
    os.kill(process.pid, signal.SIGKILL)
    process.join(60)
    _check_rerun(tmp_path, busi_mirror, reference)
