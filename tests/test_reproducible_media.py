"""A generated corpus is the same bytes in every process, and what write_clip writes decodes to its frames.

Until x264's macroblock-tree rate control was turned off, the same frames encoded to different
videos from one run to the next (even within one process), so the tests' corpus, and every
golden value trained on it, changed between runs of the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

from avdis.data import media

GENERATE = ("from avdis.config import SynthConfig; from avdis.data import synth; import sys; "
            f"synth.generate(SynthConfig(**{TINY!r}), sys.argv[1])")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_generated_corpus_is_the_same_bytes_in_every_process(tmp_path):
    # the tests' tiny corpus made by 4 processes, 2 at a time: with macroblock-tree, 9 of 14 such comparisons on this
    # machine found 17-55 of its 72 videos different from the first process's
    outs = [tmp_path / f"corpus-{i}" for i in range(4)]
    for pair in (outs[:2], outs[2:]):
        procs = [subprocess.Popen([sys.executable, "-c", GENERATE, str(out)],
                                  env={**os.environ, "PYTHONHASHSEED": out.name[-1]}) for out in pair]
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
    first, *rest = (_files(out) for out in outs)
    assert sum(k.endswith(".mp4") for k in first) == 72
    for other in rest:
        assert other.keys() == first.keys()
        assert [k for k in first if first[k] != other[k]] == []


@pytest.mark.parametrize("suffix", [".mp4", ".flv"])
def test_written_video_decodes_to_its_frames(tmp_path, suffix):
    rng = np.random.default_rng(0)
    frames = np.zeros((8, 32, 48, 3), np.uint8)
    for i, frame in enumerate(frames):  # flat colour blocks that move: what a lossy codec keeps well
        frame[:] = (40, 90, 160)
        frame[8:24, 4 + i : 20 + i] = rng.integers(0, 256, 3)
    path = tmp_path / f"clip{suffix}"
    media.write_clip(path, frames, 8, None, 16000)
    decoded, n = media.decode_video(path, 8)
    assert decoded.shape == frames.shape and n == len(frames)
    window, n = media.decode_video(path, 8, (2, 5))  # only a window's frames are kept
    assert n == len(frames)
    np.testing.assert_array_equal(window, decoded[2:5])
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 4  # colours and positions kept
