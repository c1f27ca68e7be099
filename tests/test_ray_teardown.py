"""conftest's `stop_ray`, on real local Rays: a process of the test's Ray that outlives its teardown is stopped by PID
and named; another Ray's processes beside it are left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import RayLeftover, shutdown_ray, still_running

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]
# An actor whose worker cannot end: Python's exit joins its non-daemon thread for ever (asleep in a futex, as the
# `ray::TrainController` left by a run of test_train_ray was). Its raylet counts it gone once it began to exit.
STUCK = """
import os, subprocess, threading, ray

@ray.remote(num_cpus=0)
class Stuck:
    def pid(self) -> int:
        return os.getpid()

    def daemon(self) -> int:  # a process it started that left it at once: its parent is gone, not its environment
        return int(subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"], capture_output=True,
                                  text=True, check=True).stdout)

    def leave(self) -> None:
        threading.Thread(target=threading.Event().wait).start()
        ray.actor.exit_actor()
"""
# Another Ray on the machine (another test process's, another user's): a stuck worker of its own, and its raylet.
BESIDE = STUCK + """
import sys
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
stuck = Stuck.remote()
pid = ray.get(stuck.pid.remote())
stuck.leave.remote()
raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
print(pid, raylet, flush=True)
sys.stdin.read()
"""


def test_a_process_that_outlives_its_rays_shutdown_is_stopped_by_pid_and_named_and_another_rays_are_not(tmp_path):
    import ray

    from conftest import init_local_ray

    exec(STUCK, namespace := {"__name__": "stuck"})  # not importable by workers: pickled by value
    with subprocess.Popen([sys.executable, "-c", BESIDE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          cwd=tmp_path) as beside:
        other_worker, other_raylet = (psutil.Process(int(pid)) for pid in beside.stdout.readline().split())
        try:
            init_local_ray(num_cpus=1, log_to_driver=False)
            stuck = namespace["Stuck"].remote()
            pid, daemon = ray.get([stuck.pid.remote(), stuck.daemon.remote()])
            with pytest.raises(ray.exceptions.RayActorError):  # its worker has begun to exit
                ray.get(stuck.leave.remote())
            left = [psutil.Process(pid), psutil.Process(daemon)]
            assert left[1].ppid() != pid  # not the worker's child: found by the raylet its environment names
            with pytest.warns(RayLeftover) as caught:
                shutdown_ray()
            assert sorted(str(w.message) for w in caught if w.category is RayLeftover) == sorted(
                f"PID {p} ({title}) of a Ray this test started was alive 10 s after that Ray stopped; stopped it by PID"
                for p, title in [(pid, "ray::Stuck"), (daemon, "sleep 600")])
            assert not still_running(left)  # ended: gone, or a zombie its new parent (init) has yet to reap
            assert other_worker.is_running() and other_raylet.is_running()  # the other Ray's, alike but not this one's
        finally:
            if ray.is_initialized():
                shutdown_ray()
            beside.communicate("", timeout=120)  # it stops its Ray as it exits, all but its stuck worker
            other_worker.kill()
