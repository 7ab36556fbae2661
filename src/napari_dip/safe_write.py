"""Writing a result without losing data: where an output may go, and putting it there
atomically.

:func:`check_output_path` refuses, before a run, an output that is one of the run's input
files (the same path, a symbolic link to it or a hard link: the same inode), an existing
file unless overwriting was asked for, something that is not a regular file, and a folder
that does not exist or cannot be written. :func:`atomic_write` writes into a temporary file
in the output's folder (``.napari-dip-partial-<random>-<name>``), syncs it to disk and
renames it into place, so that the output path only ever holds a complete file: after any
failure (an exception, Ctrl-C, a full disk) the temporary file is removed and an existing
output is left as it was. Torch-free; imports nothing of the package.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

#: Temporary files start with this (hidden on POSIX), then a random token and the name.
PARTIAL_PREFIX = ".napari-dip-partial-"


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or the same device and
    inode (a hard link, a symbolic link, a case-insensitive file system's other spelling)."""
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: fall back to the inode
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): they cannot be one file
        return False


def check_output_path(output: str | Path, inputs: Mapping[str, str | Path],
                      overwrite: bool = False) -> None:
    """Refuse (ValueError) an output that would destroy data or cannot be written.

    ``inputs`` maps a name for the user (``"INPUT"``, ``"--mask"``) to an input file. The
    folder is probed by creating and removing an empty temporary file, which catches what
    permission bits do not show (a read-only mount, an ACL, a full quota on some systems).
    """
    output = Path(output)
    for role, path in inputs.items():
        if same_file(output, Path(path)):
            what = f"the input {path}" if role == "INPUT" else f"the {role} file {path}"
            raise ValueError(f"the output {output} is {what} (the same file); choose another "
                             "-o: napari-dip never writes onto its inputs")
    if output.is_dir():
        raise ValueError(f"cannot write {output}: it is a folder; give a file name, e.g. "
                         f"-o {output / 'restored.tif'}")
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise ValueError(f"{output} exists; pass --overwrite to replace it, or choose "
                             "another -o")
        if output.exists() and not output.is_file():
            raise ValueError(f"cannot write {output}: it exists and is not a regular file "
                             "(a device, pipe or socket); choose another -o")
    folder = output.parent
    if not folder.exists():
        raise ValueError(f"cannot write {output}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"cannot write {output}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {output}: the folder {folder} is not writable "
                         "(permission denied)")
    with signals_deferred():  # Ctrl-C cannot leave the probe behind
        try:
            _remove(_create_temporary(output))
        except OSError as error:
            raise ValueError(f"cannot write {output}: cannot create a file in the folder "
                             f"{folder} ({error.strerror or error})") from None


def temporary_files(folder: str | Path) -> list[Path]:
    """The temporary files :func:`atomic_write` left in ``folder`` (normally none)."""
    return sorted(p for p in Path(folder).iterdir() if p.name.startswith(PARTIAL_PREFIX))


def _create_temporary(path: Path) -> Path:
    """Create an empty, new file beside ``path`` (mode 0o666 less the umask, as a file
    that the writer creates itself would get) and return its path."""
    while True:
        temp = path.with_name(f"{PARTIAL_PREFIX}{secrets.token_hex(4)}-{path.name}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return temp


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a file is renamed or removed, so that Ctrl-C
    cannot land between two steps that must happen together; they arrive right after.

    A signal mask is not enough: it holds only the calling thread, and the kernel hands the
    signal to another one (a Dask client's event loop, say), whose C handler still makes
    Python raise in the main thread. So the main thread's Python handlers are swapped for
    one that notes the signal, and the first signal noted is raised again on the way out.
    Off the main thread Python delivers no signals, and there is nothing to hold."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum, _frame):
        caught.append(signum)

    held = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, note) for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            signal.raise_signal(caught[0])


def _sync(path: Path) -> None:
    """Flush a finished file to the disk (its data and size)."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) where POSIX allows; a file system that cannot
    does no harm: the file itself is complete either way."""
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _commit(temp: Path, path: Path, overwrite: bool) -> None:
    """Put the finished ``temp`` at ``path``. Without ``overwrite``, a file that appeared
    at ``path`` meanwhile is kept and FileExistsError raised (a hard link refuses to
    replace; where the file system has none, the check and the rename are separate)."""
    if path.exists() and not path.is_file():
        raise OSError(errno.EEXIST, "it exists and is not a regular file", str(path))
    if overwrite:
        with contextlib.suppress(OSError):  # keep an existing output's permissions
            os.chmod(temp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network shares)
        if path.exists() or path.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(temp, path)
        return
    _remove(temp)


@contextlib.contextmanager
def atomic_write(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write the whole file into; when the block
    ends without error, sync it and rename it to ``path`` (an existing file is replaced
    only with ``overwrite``, keeping its permissions). On any error, KeyboardInterrupt and
    SystemExit included, the temporary file is removed and ``path`` is left untouched."""
    path = Path(path)
    temp = None
    try:
        with signals_deferred():  # a signal lands once ``temp`` is known, never between
            temp = _create_temporary(path)
        yield temp
        _sync(temp)
        with signals_deferred():
            _commit(temp, path, overwrite)
    except BaseException:
        if temp is not None:
            with signals_deferred():
                _remove(temp)
        raise
    _sync_folder(path.parent)


__all__ = ["PARTIAL_PREFIX", "atomic_write", "check_output_path", "same_file",
           "signals_deferred", "temporary_files"]
