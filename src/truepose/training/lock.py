"""The lock on a run's ``--output_dir``: one ``truepose train`` run writes into a folder at a time. The main process
holds the lock file (JSON: pid, host, start time) for the run; a lock left by a dead process on this host is taken
over."""

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast
from diffusers.utils import logging

logger = logging.get_logger(__name__)

# Held in --output_dir by the main process of the run writing there (JSON: pid, host, start time).
LOCK_NAME = ".truepose-train.lock"


@contextlib.contextmanager
def output_dir_lock(accelerator: Accelerator, output_dir: str) -> Iterator[None]:
    """Hold the lock on ``output_dir`` for the run (removed at its end, also on error). Only the main process takes
    it (one run, one lock, whatever the number of processes); the outcome is broadcast, so every process stops when
    it is refused."""
    path, refusal = None, None
    if accelerator.is_main_process:
        try:
            path = acquire_output_lock(output_dir)
        except (ValueError, OSError) as error:
            refusal = error
    taken = broadcast(torch.tensor([int(refusal is None)], device=accelerator.device), from_process=0)
    if refusal is not None:
        raise refusal
    if not taken.item():
        raise ValueError(f"--output_dir {output_dir!r}: the main process could not lock it (its error says why).")
    try:
        yield
    finally:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def acquire_output_lock(output_dir: str) -> str:
    """Create the lock file of ``output_dir`` atomically (``O_CREAT | O_EXCL``) holding this process's pid, host and
    start time as JSON, and return its path. A stale lock ([`lock_is_stale`]) is moved aside and taken over (logged
    at info level); it is checked to be the very file judged stale, so two runs taking it over at once cannot both
    win.

    Raises:
        ValueError: naming the run (pid, host, start time) that holds the lock.
    """
    path = os.path.join(output_dir, LOCK_NAME)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    for _ in range(3):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            lock = read_lock(path)
            if lock is None:  # released in between
                continue
            text, holder = lock
            if not lock_is_stale(holder):
                raise ValueError(lock_message(output_dir, holder)) from None
            aside = f"{path}.stale-{os.getpid()}"
            try:
                os.replace(path, aside)
            except FileNotFoundError:  # another run moved it first
                continue
            with open(aside) as f:
                moved = f.read()
            if moved != text:  # another run took the stale lock over in between: this is its live lock
                os.replace(aside, path)
                raise ValueError(lock_message(output_dir, (read_lock(path) or ("", {}))[1])) from None
            os.remove(aside)
            logger.info(f"Took over the stale lock {path} of pid {holder['pid']} (started {holder.get('started')}).")
            continue
        with os.fdopen(descriptor, "w") as f:
            json.dump(record, f)
        return path
    raise ValueError(f"--output_dir {output_dir!r}: another run is starting in it at the same moment.")


def read_lock(path: str) -> tuple[str, dict] | None:
    """``(text, holder)`` of the lock file ``path``: holder is its JSON (pid, host, started), or ``{}`` for a lock
    being written or damaged. None when there is no lock."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
    except ValueError:
        holder = {}
    return text, holder if isinstance(holder, dict) else {}


def lock_is_stale(holder: dict) -> bool:
    """Whether a lock was left by a run on this host whose process no longer exists (killed, or out of memory).
    A lock from another host (a shared file system) is never taken for stale: its process cannot be seen."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0 or os.name == "nt":
        return False  # (on Windows os.kill would end the process rather than test it)
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


def lock_message(output_dir: str, holder: dict) -> str:
    """The refusal naming the run that holds the lock on ``output_dir``."""
    path = os.path.join(output_dir, LOCK_NAME)
    run = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
    return (
        f"--output_dir {output_dir!r} is in use by another truepose train run ({run}; lock file {path}). Wait for it "
        "to end or choose another --output_dir; if that run no longer exists (e.g. it ran on another machine), delete "
        "the lock file."
    )
