"""Writing files so that a kill or a full disk never leaves a half-written one behind.

Every artifact a reader loads later (metrics.json, recipe.yaml, adapters, exported model folders,
translate outputs) goes through here: write under a temporary name in the same folder, fsync, rename.
A rename within one filesystem is atomic, so a reader sees the old file or the new one, never a mix.
Folders get the same treatment: written whole under a temporary name, then renamed into place.
The kernel primitives are small; no library we use offers the folder variant, hence this module.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from doctorkit.errors import DoctorKitError

TEMP_PREFIX = ".partial-"   # half-written files and folders carry this prefix until renamed into place
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    with disk_errors(path.parent):
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX + path.name + ".", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def folder(final: str | Path) -> Iterator[Path]:
    """Yield a temporary folder next to `final`; on success fsync its files and rename it to `final`.

    An existing `final` (an older adapter, say) is replaced only once the new one is complete. On an error
    the temporary folder is removed; a kill leaves a `.partial-*` folder that no reader ever opens.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with disk_errors(final.parent):
        temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + final.name + ".", dir=final.parent))
    try:
        yield temp
        with disk_errors(final.parent):
            for path in temp.rglob("*"):
                if path.is_file():
                    with open(path, "rb") as handle:
                        os.fsync(handle.fileno())
            old = None
            if final.exists():
                old = final.with_name(f"{TEMP_PREFIX}old-{final.name}.{os.getpid()}")
                os.replace(final, old)
            os.replace(temp, final)
            _fsync_dir(final.parent)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


@contextlib.contextmanager
def disk_errors(where: str | Path) -> Iterator[None]:
    """A full disk or an unwritable place becomes one line naming the folder instead of a traceback."""
    try:
        yield
    except OSError as err:
        if err.errno in NO_SPACE:
            raise DoctorKitError(f"{where}: disk full ({err.strerror}); free space and run the command again "
                                 f"(training: add --resume)") from None
        inside = err.filename is None or Path(str(err.filename)).resolve().is_relative_to(Path(where).resolve())
        if inside and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR):
            raise DoctorKitError(f"{where}: cannot write here ({err.strerror})") from None
        raise
    except Exception as err:
        if is_disk_full(err, where):
            raise DoctorKitError(f"{where}: disk full (no space left on device, reported by "
                                 f"{type(err).__name__}); free space and run the command again "
                                 f"(training: add --resume)") from None
        raise


def is_disk_full(err: BaseException, where: str | Path) -> bool:
    """torch.save and safetensors wrap ENOSPC in their own errors (RuntimeError "file write failed",
    SafetensorError "... code: 28 ..."); recognise them by text, or by a write failure on a disk with
    (next to) no space left."""
    text = str(err)
    if "No space left" in text or "StorageFull" in text or "code: 28" in text or "os error 28" in text:
        return True
    folder = Path(where)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return "write" in text.lower() and shutil.disk_usage(folder).free < 64 * 2**20
    except OSError:
        return False


def check_writable(target: str | Path, what: str) -> None:
    """Fail now, in one line, if `target` (a folder to be created or filled) cannot be written.

    Called before models and data load, so a typo in an output path costs a second, not an hour.
    Probes by creating and removing a file in the nearest existing folder: permission bits alone
    say nothing about read-only mounts or /proc.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise DoctorKitError(f"{target}: {what} is a file, not a folder")
    probe_in = target
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise DoctorKitError(f"{target}: {what} cannot be created ({probe_in} is a file)")
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX + "probe.", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise DoctorKitError(f"{target}: {what} is not writable ({err.strerror or err})") from None
