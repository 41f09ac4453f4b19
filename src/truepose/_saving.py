"""All-or-nothing writes: a file (`atomic_write`) or a checkpoint folder (`atomic_folder`) is written under a hidden
sibling name and moved into place.

`atomic_write(path, write)` writes ``.{name}.tmp`` beside ``path``, syncs it and `os.replace`s it onto ``path``.

`atomic_folder(path)` yields ``.{name}.tmp-<random>`` beside ``path``; when the block ends without an error, the
top-level entries of the old ``path`` that are not part of the new checkpoint (a training run's ``checkpoint-*``
folders, logs, a README, ...) are hard-linked (copied where links are impossible) into it, its files are synced to
disk, and it replaces ``path``:

- on Linux in one `renameat2(RENAME_EXCHANGE)` call, so ``path`` always holds the old or the new checkpoint;
- elsewhere by two renames (old ``path`` -> ``.{name}.old-<random>``, new -> ``path``). A process killed between them
  leaves ``path`` missing and the old checkpoint at ``.{name}.old-*``; the next save puts it back first, and
  [`TruePosePipeline.from_pretrained`] names it in its error (`interrupted_save`).

A saver holds an `flock` on its temporary folder, so leftovers of killed saves (unlocked) are removed by the next save
into the same folder without touching a save that is still running.
"""

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from diffusers.utils import logging

from ._warnings import warn_caller

try:
    import fcntl
except ImportError:  # Windows: leftovers of killed saves are left in place (their owner cannot be told)
    fcntl = None

logger = logging.get_logger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def leftovers(path: str, kind: str) -> list[str]:
    """Hidden siblings ``.{name}.{kind}-*`` of ``path`` (``kind``: "tmp" or "old"), sorted."""
    parent, name = os.path.split(path)
    prefix = f".{name}.{kind}-"
    try:
        names = os.listdir(parent or ".")
    except OSError:
        return []
    return sorted(os.path.join(parent, entry) for entry in names if entry.startswith(prefix))


def interrupted_save(path: str) -> str | None:
    """The old checkpoint a save killed between its two renames left beside a missing ``path``, or None."""
    if os.path.lexists(path):
        return None
    old = leftovers(path, "old")
    return old[-1] if old else None


def _lock(folder: str) -> int | None:
    """A descriptor holding an exclusive `flock` on ``folder``; None where another process holds one (or no flock)."""
    if fcntl is None:
        return None
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def _recover(path: str) -> None:
    """Before a save into ``path``: put back an old checkpoint a killed save left aside, remove finished leftovers."""
    old = leftovers(path, "old")
    if not os.path.lexists(path) and old:
        if len(old) > 1:
            raise OSError(
                f"{path!r} is missing and several interrupted saves left old checkpoints beside it: {old}. Rename the "
                f"one to keep back to {os.path.basename(path)!r} and remove the others."
            )
        os.rename(old.pop(), path)
        logger.info(f"Restored {path!r}, which an interrupted save had left aside.")
    for folder in old:  # the old checkpoint of a finished swap whose clean-up was cut short
        shutil.rmtree(folder, ignore_errors=True)
    for folder in leftovers(path, "tmp"):
        descriptor = _lock(folder)
        if descriptor is not None:  # no live save holds it
            shutil.rmtree(folder, ignore_errors=True)
            os.close(descriptor)


def _checkpoint_entries(folder: str) -> set[str]:
    """Top-level names that belong to the checkpoint in ``folder``: model_index.json and its components' folders."""
    try:
        with open(os.path.join(folder, "model_index.json"), encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return set()
    names = [name for name, entry in index.items() if isinstance(entry, list)] if isinstance(index, dict) else []
    return {"model_index.json", *names}


def _link_or_copy(source: str, destination: str) -> str:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def _carry_over(old: str, new: str) -> None:
    """Hard-link (or copy) into ``new`` the top-level entries of ``old`` that are not part of either checkpoint."""
    skip = _checkpoint_entries(old) | set(os.listdir(new))
    for entry in os.scandir(old):
        if entry.name in skip:
            continue
        destination = os.path.join(new, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), destination)
        elif entry.is_dir():
            shutil.copytree(entry.path, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry.path, destination)


def _sync(path: str) -> None:
    """fsync ``path`` (a file or a folder; a no-op where folders cannot be opened, e.g. on Windows)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on folders
    finally:
        os.close(descriptor)


def _sync_tree(folder: str) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _sync(os.path.join(root, name))
        _sync(root)


def _exchange(first: str, second: str) -> bool:
    """Swap two paths in one step (Linux `renameat2(RENAME_EXCHANGE)`); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"Could not swap {second!r} with the new checkpoint {first!r}: {os.strerror(code)}")


def _swap_in(new: str, path: str) -> None:
    """Replace ``path`` (which may be missing) by the folder ``new``."""
    if not os.path.lexists(path):
        os.rename(new, path)
    elif _exchange(new, path):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old checkpoint
    else:
        parent, name = os.path.split(path)
        old = os.path.join(parent, f".{name}.old-{secrets.token_hex(4)}")
        os.rename(path, old)
        try:
            os.rename(new, path)
        except BaseException:
            os.rename(old, path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    _sync(os.path.dirname(path))


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """The folder to write a checkpoint for ``path`` into; it replaces ``path`` when the block ends without an error.

    ``path`` is an absolute path. Where no sibling can be written (a mount point, a read-only parent folder) the block
    writes into ``path`` itself, with a warning, after removing ``path``'s model_index.json so that a cut-short write
    never loads.
    """
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    _recover(path)
    new = os.path.join(parent, f".{name}.tmp-{secrets.token_hex(4)}")
    try:
        if os.path.ismount(path):
            raise OSError(errno.EBUSY, "a mount point cannot be renamed")
        os.mkdir(new)
    except OSError as error:
        warn_caller(
            f"Saving into {path!r} in place ({error.strerror or error}): an interrupted save leaves an incomplete "
            "checkpoint (it has no model_index.json, so it does not load). Save into a subfolder for an all-or-"
            "nothing save."
        )
        os.makedirs(path, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(path, "model_index.json"))
        yield path
        return
    descriptor = _lock(new)
    try:
        yield new
        _sync_tree(new)
        if os.path.isdir(path):
            _carry_over(path, new)
            shutil.copymode(path, new)
        working_directory = os.getcwd()
        _swap_in(new, path)
        if working_directory == path or working_directory.startswith(path + os.sep):
            # the process's current folder was swapped away with the old checkpoint: move into the new one
            os.chdir(working_directory if os.path.isdir(working_directory) else path)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    finally:
        if descriptor is not None:
            os.close(descriptor)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], Any], mode: str = "wb") -> None:
    """Writes ``path`` through ``write(file)`` into the hidden file ``.{name}.tmp`` beside it (parent folders made),
    syncs it to disk, then ``os.replace``s it onto ``path``.

    An interrupted write leaves no truncated ``path``: the old file, if any, stays whole, and the temporary file is
    removed (or, after a kill, overwritten by the next write of ``path``). ``mode`` is ``"wb"`` or ``"w"``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
