"""`storage.exclusive`: one writer per folder, held again at once by the process that holds it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _start(code: str, *args: str) -> subprocess.Popen:
    """A Python process running `code` (after `from avdis import storage`), its stdout and stderr piped."""
    code = "import sys, time\nfrom avdis import storage\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


NESTED = """
with storage.exclusive(sys.argv[1], "sweep driver"):
    with storage.exclusive(sys.argv[1] + "/", "build of these shards", wait=True):  # data.shards: the sweep's folder
        print("built", flush=True)
"""


def test_a_folder_this_process_holds_is_held_again_at_once(tmp_path):
    """A sweep whose data.shards is its own folder waited for its own lock for ever (locally: a second flock of the
    same process blocks)."""
    url = str(tmp_path / "sweeps" / "s")
    nested = _start(NESTED, url)
    try:
        out, err = nested.communicate(timeout=30)
    finally:
        nested.kill()
    assert (nested.returncode, out) == (0, "built\n"), err
    assert "waiting" not in err
