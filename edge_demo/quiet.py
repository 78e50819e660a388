"""Hold back what native libraries print while the demo starts, unless ``--verbose``.

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` and OpenCV its capture
backends' warnings (``[ WARN:0@0.01] global cap_v4l.cpp ... can't open camera by index``)
straight to file descriptor 2, below Python's ``sys.stderr`` and its logging, so only a
redirection of the descriptor itself keeps them out of the demo's one-line errors. It is used
around the calls that print (loading a model, opening a source), never around the loop.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

_LOCK = threading.Lock()  # descriptor 2 is process-wide: one redirection at a time


@contextlib.contextmanager
def native_output_held(verbose: bool = False) -> Iterator[None]:
    """Send descriptor 2 to a discarded temporary file for the duration (nothing when verbose)."""
    if verbose:
        yield
        return
    with _LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
