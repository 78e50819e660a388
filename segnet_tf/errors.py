"""The one line a command shows for an error the user can fix (both CLIs: ``segnet-tf`` and
``segnet-tf export`` on its own).

Library errors (bad files, options, datasets) are ``ValueError`` / ``FileNotFoundError``
subclasses whose message already names the file or option. An ``OSError`` raised by the system
(``--out`` an existing file, a read-only folder, a full disk) carries the path in ``filename``:
it is shown as ``PATH: reason``, never as a traceback, and before any work where the path is
known up front.
"""

from __future__ import annotations


def describe(error: BaseException) -> str:
    """``error`` as one line: ``PATH: reason`` for a system ``OSError``, else its message."""
    if isinstance(error, OSError) and error.filename is not None:
        other = f" -> {error.filename2}" if error.filename2 is not None else ""
        return f"{error.filename}{other}: {error.strerror or error}"
    return str(error)
