"""Multi-worker training: TF_CONFIG, the strategy Keras' ``fit`` can drive, and bounded failures.

Each worker is one process (one per host; a host's GPUs are mirrored inside it) started with
``TF_CONFIG`` naming the cluster and its own task; tf.distribute's
``MultiWorkerMirroredStrategy`` then all-reduces gradients, metrics and batch statistics across
every replica of every worker (see ``docs/training.md``).

Keras 3.15's ``fit`` and TF 2.21's collective strategy disagree twice: ``fit`` reduces a whole
``(images, labels)`` batch with one ``Strategy.reduce`` call and step metrics (scalars) along
axis 0, and the collective strategy takes neither (keras-team/keras#20585).
:class:`MultiWorkerStrategy` reduces each value of a structure on its own, scalars across
replicas only.

A worker must not hang when the cluster is broken, so:

- its own port in use: refused before TensorFlow starts its server;
- a peer that never comes up: the join (strategy creation and a first collective) is given
  ``join_timeout`` seconds, after which a watchdog process (:mod:`segnet_tf.watchdog`) names the
  workers that are not listening and ends the worker (TensorFlow itself waits on, well past
  200 s in our tries, in a C++ call no Python thread can interrupt);
- a peer that dies mid-run: TensorFlow's coordination service notices the missing heartbeats
  (seconds) and fails the pending collective; :func:`describe_failure` turns that error into one
  line naming the lost worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from segnet_tf import watchdog

DEFAULT_JOIN_TIMEOUT = 600.0  # seconds; cluster schedulers may start workers minutes apart
_TASK = re.compile(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)")
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")  # TF's prefix naming the op


# How a collective ends when a peer is gone: aborted by the coordination service, or cut off.
LOST_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.AbortedError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
)


class ClusterError(RuntimeError):
    """The cluster is misconfigured or lost a worker."""


@dataclass(frozen=True)
class Cluster:
    """What ``TF_CONFIG`` says: every task's address, and which task this process is."""

    tasks: Mapping[str, tuple[str, ...]]  # job name -> addresses, in task order
    task_type: str
    task_id: int

    @property
    def size(self) -> int:
        return sum(len(a) for job, a in self.tasks.items() if job in ("chief", "worker"))

    @property
    def is_chief(self) -> bool:
        """The task that writes the run: ``chief`` if there is one, else worker 0 (TF's rule)."""
        if "chief" in self.tasks:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_id == 0

    def name(self, task_type: str | None = None, task_id: int | None = None) -> str:
        """``worker 1 (10.0.0.2:2222)``: a task as a user finds it in their TF_CONFIG."""
        task_type = self.task_type if task_type is None else task_type
        task_id = self.task_id if task_id is None else task_id
        addresses = self.tasks.get(task_type, ())
        where = f" ({addresses[task_id]})" if task_id < len(addresses) else ""
        return f"{task_type} {task_id}{where}"

    @property
    def address(self) -> str:
        return self.tasks[self.task_type][self.task_id]

    def peers(self) -> Iterator[tuple[str, int, str]]:
        """``(task_type, task_id, address)`` of every other chief or worker."""
        for job in ("chief", "worker"):
            for i, address in enumerate(self.tasks.get(job, ())):
                if (job, i) != (self.task_type, self.task_id):
                    yield job, i, address


def cluster_from_env(environ: Mapping[str, str] = os.environ) -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes; None when it is unset."""
    text = environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        tasks = {job: tuple(map(str, addresses)) for job, addresses in config["cluster"].items()}
        task_type, task_id = str(config["task"]["type"]), int(config["task"]["index"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ClusterError(
            'TF_CONFIG: expected {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}: {e}'
        ) from e
    if task_id < 0 or task_id >= len(tasks.get(task_type, ())):
        raise ClusterError(
            f"TF_CONFIG: task {task_type} {task_id} is not in the cluster "
            f"({', '.join(f'{len(a)} {j}' for j, a in tasks.items())})"
        )
    return Cluster(tasks, task_type, task_id)


def check_port_free(cluster: Cluster) -> None:
    """Fail, naming the address, when this task's port is taken: before TensorFlow tries to
    start its server there."""
    port = int(cluster.address.rsplit(":", 1)[-1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
        try:
            s.bind(("", port))
        except OSError as e:
            raise ClusterError(
                f"{cluster.name()}: cannot listen on port {port}: {e.strerror}; free it or give "
                "this worker another port in TF_CONFIG"
            ) from None


def join_failure(cluster: Cluster, timeout: float) -> str:
    """What a worker says when the cluster did not come together in time (``{silent}``: the
    peers that do not answer, filled in by the watchdog)."""
    return (
        f"Error: {cluster.name()}: the cluster did not come together within {timeout:g} s; no "
        "answer from {silent}. Start every worker of TF_CONFIG (or raise --join-timeout)"
    )


@contextmanager
def deadline(seconds: float, message: str, peers: Sequence[tuple[str, str]]) -> Iterator[None]:
    """Kill this process, ``message`` on stderr, if the block outlives ``seconds`` (see
    :mod:`segnet_tf.watchdog`); ``peers`` are ``(name, "host:port")`` for its ``{silent}``."""
    args = [str(os.getpid()), str(seconds), message, json.dumps(list(peers))]
    guard = subprocess.Popen(
        [sys.executable, str(Path(watchdog.__file__)), *args], stdin=subprocess.PIPE
    )
    try:
        yield
    finally:
        guard.stdin.close()  # end of the block: the watchdog leaves quietly
        guard.wait()


class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras' ``fit`` passes it."""

    def reduce(self, reduce_op, value, axis):
        def one(v):
            scalar = self.experimental_local_results(v)[0].shape.rank == 0
            return super(MultiWorkerStrategy, self).reduce(reduce_op, v, None if scalar else axis)

        return tf.nest.map_structure(one, value)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Return once every worker got here (a one-number all-reduce)."""

    @tf.function
    def count():
        ones = strategy.run(lambda: tf.constant(1.0))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    count()


def join_cluster(
    cluster: Cluster, join_timeout: float = DEFAULT_JOIN_TIMEOUT
) -> MultiWorkerStrategy:
    """This worker's strategy, once every worker of ``cluster`` is up (see module docstring)."""
    check_port_free(cluster)
    peers = [(cluster.name(job, i), address) for job, i, address in cluster.peers()]
    with deadline(join_timeout, join_failure(cluster, join_timeout), peers):
        try:
            strategy = MultiWorkerStrategy()
            barrier(strategy)
        except LOST_PEER_ERRORS as e:
            raise ClusterError(describe_failure(e, cluster, "joining the cluster")) from None
    return strategy


def describe_failure(error: tf.errors.OpError, cluster: Cluster, doing: str) -> str:
    """One line for a collective that failed: who is lost, from whose point of view."""
    text = _FUNCTION_NODE.sub("", str(error)).strip()
    named = {(job, int(i)) for job, i in _TASK.findall(text)} - {
        (cluster.task_type, cluster.task_id)
    }
    lost = sorted(named) or [(job, i) for job, i, _ in cluster.peers()]
    who = ", ".join(cluster.name(job, i) for job, i in lost)
    first_line = text.splitlines()[0] if text else ""
    return (
        f"{cluster.name()}: lost {'' if named else 'one of '}{who} while {doing} "
        f"({type(error).__name__}: {first_line})"
    )


# --------------------------------------------------------------------------- local launcher


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that nothing listens on now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_tf_configs(workers: int) -> list[str]:
    """The ``TF_CONFIG`` of each of ``workers`` processes on this machine (loopback ports)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(workers)]}
    return [
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(workers)
    ]


def launch_local_workers(command: Sequence[str], workers: int, grace: float = 30.0) -> int:
    """Run ``command`` as ``workers`` worker processes of one cluster on this machine.

    Worker 0 (the chief) talks to the terminal; the others' stderr is shown with a
    ``worker i:`` prefix. Once one fails, the rest get ``grace`` seconds to end on their own
    (they do: see the module docstring) before they are killed. Returns the first non-zero exit
    code, else 0.
    """
    procs = []
    for i, tf_config in enumerate(local_tf_configs(workers)):
        env = {**os.environ, "TF_CONFIG": tf_config}
        quiet = {} if i == 0 else {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        procs.append(subprocess.Popen(list(command), env=env, text=True, **quiet))
    relays = [
        threading.Thread(target=_relay, args=(p.stderr, f"worker {i}: "), daemon=True)
        for i, p in enumerate(procs)
        if p.stderr is not None
    ]
    for relay in relays:
        relay.start()
    try:
        codes = _wait_all(procs, grace)
    except KeyboardInterrupt:  # the workers got the Ctrl-C too: let them save and stop
        codes = _wait_all(procs, grace)
    for relay in relays:
        relay.join(timeout=5)
    for i, code in enumerate(codes):
        if code < 0 and -code != signal.SIGKILL:  # SIGKILL: the join watchdog, or us, after grace
            print(f"Error: worker {i} died of signal {-code}", file=sys.stderr)
    return next((abs(c) for c in codes if c), 0)


def _relay(stream, prefix: str) -> None:
    for line in stream:
        sys.stderr.write(prefix + line)
        sys.stderr.flush()


def _wait_all(procs: list[subprocess.Popen], grace: float) -> list[int]:
    failed_at = None
    while any(p.poll() is None for p in procs):
        if failed_at is None and any(p.poll() for p in procs):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > grace:
            for p in procs:
                if p.poll() is None:
                    p.kill()  # TensorFlow catches SIGTERM (preemption) and keeps waiting
            for p in procs:
                p.wait()
            break
        time.sleep(0.2)
    return [p.returncode for p in procs]
