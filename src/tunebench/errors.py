"""User-facing errors: one clear line, exit code 2 (bad input), never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class TunebenchError(Exception):
    """A problem with the user's input (file, key, value). The CLI prints it as one line and exits 2."""

    exit_code = 2


# Problems of the machine's file systems rather than of a path: a full disk or quota, a read-only mount, an
# unreachable one. Their writes name no file (write(2) and fsync(2) are given a descriptor).
FILE_SYSTEM_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG,
                                errno.EIO, errno.ESTALE, errno.ENODEV, errno.ENXIO})


def is_user_os_error(e: BaseException) -> bool:
    """Whether an OSError is the user's to fix (a path: missing, unreadable, unwritable, a file where a folder
    should be; a full or read-only disk), not a bug: it names a file, or its errno is a file system's. A
    network error (ConnectionError) or a broken pipe is neither."""
    if not isinstance(e, OSError) or isinstance(e, (ConnectionError, BlockingIOError, InterruptedError)):
        return False
    return e.filename is not None or e.errno in FILE_SYSTEM_ERRNOS


def os_error_line(e: OSError) -> str:
    """One line naming the path and the problem: `results/x/.lock: permission denied`; a path below a regular
    file names that file (`results is a file, not a folder`); a rename names both paths."""
    problem = e.strerror or (str(e.args[0]) if e.args else type(e).__name__)
    problem = problem[:1].lower() + problem[1:]
    if e.filename is None:
        return problem
    path = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes, os.PathLike)) else str(e.filename)
    if e.errno == errno.ENOTDIR:
        blocker = next((p for p in (Path(path), *Path(path).parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            problem = "a file, not a folder" if blocker == Path(path) else f"{blocker} is a file, not a folder"
    if e.filename2 is not None:
        return f"{path} -> {os.fsdecode(e.filename2)}: {problem}"
    return f"{path}: {problem}"
