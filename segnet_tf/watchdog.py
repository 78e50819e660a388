"""A deadline that holds while the Python of the process it guards cannot run.

TensorFlow waits for the workers of a cluster inside C++ calls that keep Python's interpreter
lock (``TFE_EnableCollectiveOps`` waits for every task to register, well past 200 s in our
tries), so no thread or signal handler of that process can end the wait. This small process
can: it waits for its standard input to close (the guarded block is over, or the process is
gone) and, if ``seconds`` pass first, prints which peers do not answer and kills the process.

Started as a script by :func:`segnet_tf.distributed.deadline` (standard library only, so it
starts in milliseconds and imports neither TensorFlow nor the package)::

    python watchdog.py PID SECONDS MESSAGE PEERS_JSON

``MESSAGE`` may hold ``{silent}``: the peers (``[[name, "host:port"], ...]``) with no listener.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
from collections.abc import Sequence


def listening(address: str, timeout: float = 1.0) -> bool:
    """Whether something accepts connections at ``host:port``."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def silent_peers(peers: Sequence[Sequence[str]]) -> str:
    names = [name for name, address in peers if not listening(address)]
    return (
        ", ".join(names)
        if names
        else "the others (they listen but never joined: another program on their port?)"
    )


def main(argv: Sequence[str]) -> int:
    pid, seconds, message, peers = int(argv[0]), float(argv[1]), argv[2], json.loads(argv[3])
    finished, _, _ = select.select([sys.stdin], [], [], seconds)
    if finished:
        return 0
    sys.stderr.write(message.format(silent=silent_peers(peers)) + "\n")
    sys.stderr.flush()
    os.kill(pid, signal.SIGKILL)  # TensorFlow catches SIGTERM and keeps waiting
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
