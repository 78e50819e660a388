"""TensorFlow's native log lines: held back from the ``segnet-tf`` CLI's output unless --verbose.

TensorFlow's C++ writes straight to file descriptor 2: while it is imported (absl's "All log
messages before absl::InitializeLog() is called are written to STDERR", the oneDNN notice, CUDA
plugin registration) and while it runs (tf.data, gRPC and coordination-service lines of a
multi-worker run). ``TF_CPP_MIN_LOG_LEVEL`` filters most of it, but only if set before the import,
and lines written before absl is initialised slip past it; those can only be caught at the
descriptor. The package imports TensorFlow as it loads, before the CLI parses its options, so the
choice is made here, from the process' own command line:

- the CLI (``segnet-tf ...`` or ``python -m segnet_tf.cli ...``) without ``-v/--verbose``:
  ``TF_CPP_MIN_LOG_LEVEL=3`` (our own one-line messages report every failure) and descriptor 2
  held back while TensorFlow is imported, replayed only if the import fails;
- the CLI with ``--verbose``: ``TF_CPP_MIN_LOG_LEVEL=0``, everything shown;
- the library, imported by any other program: ``TF_CPP_MIN_LOG_LEVEL=2`` (info and warnings off),
  nothing else touched.

A ``TF_CPP_MIN_LOG_LEVEL`` set by the user always wins. LiteRT's interpreter ignores that variable
and announces its XNNPACK delegate on descriptor 2 whenever it allocates: :func:`native_notices`
holds that back too (CLI and library alike), except under ``--verbose``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

CLI_SCRIPT = "segnet-tf"
CLI_MODULE = "segnet_tf.cli"
VERBOSE_FLAGS = ("-v", "--verbose")
TENSORFLOW_HINT = (
    "segnet-tf needs TensorFlow, installed as an extra: pip install 'segnet-tf[cpu]' (CPU) or "
    "'segnet-tf[gpu]' (CUDA), or -r requirements.txt in a checkout ({})"
)


def cli_args(argv: Sequence[str] | None = None, orig_argv: Sequence[str] | None = None):
    """The arguments of this process when it is the segnet-tf CLI, else None.

    ``sys.orig_argv`` because while ``python -m segnet_tf.cli`` imports the package,
    ``sys.argv[0]`` is still ``-m``.
    """
    argv = sys.argv if argv is None else argv
    orig = sys.orig_argv if orig_argv is None else orig_argv
    if argv and Path(argv[0]).stem == CLI_SCRIPT:  # segnet-tf, segnet-tf.exe
        return list(argv[1:])
    for i, arg in enumerate(orig[:-1]):
        if arg == "-m":
            return list(orig[i + 2 :]) if orig[i + 1] == CLI_MODULE else None
    return None


def verbose_requested(args: Sequence[str]) -> bool:
    """``-v``/``--verbose`` among the CLI's global options (those before the command name)."""
    for arg in args:
        if arg in VERBOSE_FLAGS:
            return True
        if not arg.startswith("-"):
            return False
    return False


def log_level(args: Sequence[str] | None) -> str:
    """``TF_CPP_MIN_LOG_LEVEL`` for a process with CLI arguments ``args`` (None: the library)."""
    if args is None:
        return "2"
    return "0" if verbose_requested(args) else "3"


def import_tensorflow() -> None:
    """Import TensorFlow and Keras as the module docstring says."""
    args = cli_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", log_level(args))
    quiet = args is not None and not verbose_requested(args)
    try:
        with held_back_stderr() if quiet else _nothing():
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("tensorflow"):
            raise
        raise ModuleNotFoundError(TENSORFLOW_HINT.format(e), name=e.name) from None


def native_notices() -> AbstractContextManager[None]:
    """Hold back a native runtime's notices for a block (LiteRT's "INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU." when an interpreter allocates), unless the CLI runs --verbose."""
    args = cli_args()
    return _nothing() if args is not None and verbose_requested(args) else held_back_stderr()


@contextmanager
def held_back_stderr() -> Iterator[None]:
    """Send file descriptor 2 (C++ and Python alike) to a temporary file for the block; what was
    written is replayed only if the block raises."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                os.write(2, held.read())


@contextmanager
def _nothing() -> Iterator[None]:
    yield
