"""Multi-worker training as a cluster runs it: separate worker processes on loopback ports, each
started with TF_CONFIG (or by ``segnet-tf train --workers N``); the same numbers as one process on
the same global batch; every broken cluster ends in bounded time with one line naming a worker."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from segnet_tf.config import TrainConfig
from segnet_tf.data import write_synthetic_dataset
from segnet_tf.distributed import (
    Cluster,
    ClusterError,
    cluster_from_env,
    describe_failure,
    local_tf_configs,
)
from segnet_tf.training import train

REPO = Path(__file__).resolve().parents[2]
SIZE = (16, 16)
# One step per epoch whose global batch is the whole train split, unaugmented: every epoch of
# every run sees the same 4 images, however they are shuffled or split across workers.
TINY = ["--model", "segnet-basic", "--width", "0.125", "--input-size", "16x16"]
TINY += ["--batch-size", "4", "--augment", "none", "--precision", "float32"]
EPOCHS = 4  # worker 1 dies after epoch 1: the other 3 leave a margin on fast machines
LOST_PEER_BOUND_S = 60  # heartbeats notice a dead peer in about 10 s


def cli(*args, tf_config: str | None = None, scratch: Path, **popen) -> subprocess.Popen:
    """``python -m segnet_tf.cli ARGS`` as a user starts it: our code, no log settings of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    env.update(TMPDIR=str(scratch), **({"TF_CONFIG": tf_config} if tf_config else {}))
    scratch.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "segnet_tf.cli", *map(str, args)]
    return subprocess.Popen(command, env=env, cwd=REPO, text=True, **popen)


def history(run: Path) -> dict[str, list[float]]:
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    return {key: [float(r[key]) for r in rows] for key in rows[0]}


def wait_for_epoch(run: Path, epoch: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = run / "state.json"
        if state.is_file() and json.loads(state.read_text())["epoch"] >= epoch:
            return
        time.sleep(0.05)
    raise AssertionError(f"{run} never reached epoch {epoch}")


@pytest.mark.slow
def test_two_workers_match_one_process_survive_a_lost_worker_and_resume(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", train=4, val=4, size=SIZE)
    run = tmp_path / "run"
    args = ["train", "--strategy", "multiworker", "--data", data, *TINY, "--out", run]
    args += ["--epochs", EPOCHS, "--join-timeout", 120]

    # Two workers as a cluster launcher starts them; worker 1 dies once epoch 1 is saved.
    configs = local_tf_configs(2)
    workers = [
        cli(*args, tf_config=c, scratch=tmp_path / f"scratch{i}", stderr=subprocess.PIPE)
        for i, c in enumerate(configs)
    ]
    try:
        wait_for_epoch(run, 1, timeout=300)
        workers[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = workers[0].communicate(timeout=LOST_PEER_BOUND_S)
        assert time.monotonic() - killed < LOST_PEER_BOUND_S
    finally:
        for worker in workers:
            worker.kill()
    address = json.loads(configs[1])["cluster"]["worker"][1]
    assert workers[0].returncode == 1
    assert err.splitlines() == [err.strip()], err  # one line: no TensorFlow log lines either
    assert err.startswith("Error: worker 0 (127.0.0.1:")
    assert f"lost worker 1 ({address}) while training" in err
    saved = json.loads((run / "state.json").read_text())["epoch"]
    assert 1 <= saved < EPOCHS and (run / "last.keras").is_file()
    assert not list((tmp_path / "scratch0").iterdir())  # the chief writes only the run

    # Every worker resumes from the chief's last.keras (the local launcher this time).
    resume = cli("train", "--workers", 2, "--resume", "--out", run, scratch=tmp_path / "again")
    assert resume.wait(timeout=300) == 0
    assert not list((tmp_path / "again").iterdir())  # worker 1's scratch run dir is gone
    info = json.loads((run / "config.json").read_text())
    assert info["strategy"] == {"name": "MultiWorkerStrategy", "replicas": 2}

    # One process, same global batch, no interruption: the same numbers, epoch by epoch.
    options = TrainConfig(out=str(tmp_path / "single"), data=str(data), model="segnet-basic")
    options = replace(options, width=0.125, input_size=SIZE, batch_size=4, augment=False)
    single = train(replace(options, epochs=EPOCHS), verbose=0)
    got, want = history(run), single.history
    assert got["epoch"] == list(range(EPOCHS))
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-3, err_msg=key)
    for key in ("miou", "val_miou"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-3, err_msg=key)
    assert want["loss"][-1] < want["loss"][0]  # it trained: the comparison is not of constants


def test_tf_config_is_read_and_checked():
    config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    cluster = cluster_from_env({"TF_CONFIG": json.dumps(config)})
    assert cluster.size == 2 and not cluster.is_chief and cluster.name() == "worker 1 (b:2)"
    assert list(cluster.peers()) == [("worker", 0, "a:1")]
    assert cluster_from_env({}) is None
    with pytest.raises(ClusterError, match="TF_CONFIG: expected"):
        cluster_from_env({"TF_CONFIG": "{not json"})
    config["task"]["index"] = 2
    with pytest.raises(ClusterError, match="task worker 2 is not in the cluster"):
        cluster_from_env({"TF_CONFIG": json.dumps(config)})
    chief = {
        "cluster": {"chief": ["c:0"], "worker": ["a:1"]},
        "task": {"type": "chief", "index": 0},
    }
    assert cluster_from_env({"TF_CONFIG": json.dumps(chief)}).is_chief


def test_a_lost_peer_is_named_in_one_line():
    cluster = Cluster({"worker": ("a:1", "b:2", "c:3")}, "worker", 0)
    error = tf.errors.UnavailableError(
        None,
        None,
        "{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/task:0}} "
        "Collective ops is aborted by: Error reported from /job:worker/task:2: The following "
        "tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:2",
    )
    line = describe_failure(error, cluster, "training")
    assert line.startswith("worker 0 (a:1): lost worker 2 (c:3) while training (UnavailableError:")
    assert "function_node" not in line and "\n" not in line
    unnamed = describe_failure(
        tf.errors.UnavailableError(None, None, "Socket closed"), cluster, "x"
    )
    assert "lost one of worker 1 (b:2), worker 2 (c:3)" in unnamed


@pytest.mark.slow
def test_a_broken_cluster_ends_every_worker_with_one_line(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", train=4, val=4, size=SIZE)
    args = ["--data", data, *TINY, "--epochs", 1, "--join-timeout", 5]

    def worker(name: str, tf_config: str, *options) -> subprocess.Popen:
        command = [*options, "train", "--strategy", "multiworker", *args, "--out", tmp_path / name]
        return cli(*command, tf_config=tf_config, scratch=tmp_path / name, stderr=subprocess.PIPE)

    alone, taken = local_tf_configs(2), local_tf_configs(2)
    port = int(json.loads(taken[1])["cluster"]["worker"][1].rsplit(":", 1)[1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        # Worker 0 of a cluster whose worker 1 never starts (TensorFlow's own lines shown), and
        # a worker whose port another program holds.
        lonely = worker("lonely", alone[0], "--verbose")
        blocked = worker("blocked", taken[1])
        _, lonely_err = lonely.communicate(timeout=180)
        _, blocked_err = blocked.communicate(timeout=180)
    missing = json.loads(alone[0])["cluster"]["worker"][1]
    assert lonely.returncode != 0
    expected = f"did not come together within 5 s; no answer from worker 1 ({missing})"
    assert expected in lonely_err
    assert "I0000" in lonely_err  # --verbose lets TensorFlow's start-up lines through
    assert blocked.returncode == 1
    assert blocked_err == (  # and without it, nothing but our line
        f"Error: worker 1 (127.0.0.1:{port}): cannot listen on port {port}: Address already in "
        "use; free it or give this worker another port in TF_CONFIG\n"
    )
