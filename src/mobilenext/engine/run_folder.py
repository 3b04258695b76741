"""A run's output folder: whose it is, what it may overwrite, and what its ``log.txt`` says about it.

The rules, for training, detection and search alike:

- A new run gets a new folder. Without ``--output`` its name is ``runs/<prefix>-<date>-<time>``, created
  exclusively (a second run started in the same second gets ``-2``), so two runs never share one.
- A folder that holds anything (another run, a user's files) is used only to *continue* it: with ``--resume``.
  Anything else is refused in one sentence before a file is touched.
- While a run writes, it holds a lock on ``.lock`` in its folder; a second process that wants the same folder
  is told which process has it. The file goes when the run ends; the operating system drops the lock when the
  process ends, however it ends, so a killed run leaves at most an unlocked file, which the next run reuses.
- ``log.txt`` records every start, every resume, and why the run stopped: finished, interrupted (Ctrl-C or
  SIGTERM), or the error that ended it.

Under DDP only rank 0 touches the folder; it shares the outcome (the path, or the error) with the other
ranks so that every rank stops together instead of waiting for a peer that gave up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch.distributed as torch_dist

from .._io import is_temp_file
from ..errors import ConfigError, MobileNeXtError, RunTerminated
from .checkpoint import LAST, remove_stale_temp_files
from .distributed import DistInfo
from .records import log_file

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["RUNS_ROOT", "RunFolderError", "RunTerminated", "open_run"]

log = logging.getLogger("mobilenext")

RUNS_ROOT = Path("runs")
LOCK_NAME = ".lock"


class RunFolderError(ConfigError):
    """The output folder cannot be used: it holds another run, it is a file, or another process writes it."""


def _new_folder(runs_root: Path, prefix: str) -> Path:
    """``runs_root/<prefix>-<date>-<time>``, created exclusively: a name taken in the same second gets ``-2``..."""
    runs_root.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    for attempt in range(1, 10_000):
        path = runs_root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunFolderError(f"could not create a new run folder named {stem}-N in {runs_root}.")


def _user_entries(folder: Path) -> list[str]:
    """What a folder holds besides our lock and the temp files of an interrupted write."""
    return sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME and not is_temp_file(p))


def _choose_folder(output: str | None, resume: str | None, prefix: str, runs_root: Path) -> tuple[Path, bool]:
    """(folder, created here). Resuming without ``--output`` continues the checkpoint's own folder."""
    if output:
        return Path(output), False
    if resume == "auto":
        runs = sorted(runs_root.glob(f"{prefix}-*/{LAST}"), key=lambda p: p.stat().st_mtime)
        if runs:  # the newest run of the same model (or task) continues
            return runs[-1].parent, False
    elif resume:
        return Path(resume).parent, False
    return _new_folder(runs_root, prefix), True


def _lock(folder: Path) -> int:
    """Hold an exclusive lock on ``folder/.lock``; the file records the holder's process id for the message."""
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise _in_use(folder, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _in_use(folder: Path, holder: str) -> RunFolderError:
    return RunFolderError(
        f"{folder} is in use by another run (process {holder or 'unknown'}); wait for it to finish or choose "
        "another --output."
    )


def _lock_holder(folder: Path) -> str | None:
    """The process id recorded by the run that holds ``folder``'s lock now, or None when no run does (the test
    takes a shared lock, which fails while another process holds the exclusive one, and writes nothing)."""
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    finally:
        os.close(fd)


def _refuse_if_used(folder: Path, locked_by_us: bool = False) -> None:
    holder = None if locked_by_us or not folder.is_dir() else _lock_holder(folder)
    if holder is not None:  # another run is writing here now: that, not its files, is the thing to say
        raise _in_use(folder, holder)
    entries = _user_entries(folder) if folder.is_dir() else []
    if entries:
        what = "a run" if LAST in entries or "args.yaml" in entries else "files"
        raise RunFolderError(
            f"{folder} already holds {what} ({', '.join(entries[:4])}{', ...' if len(entries) > 4 else ''}); "
            "continue it with --resume auto, or choose a new or empty --output."
        )


def _claim(output: str | None, resume: str | None, prefix: str, runs_root: Path) -> tuple[Path, int]:
    folder, created = _choose_folder(output, resume, prefix, runs_root)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--output {folder} is a file; give a folder for the run.")
    new_run = not (created or resume)
    if new_run:
        _refuse_if_used(folder)  # before the lock file, so a refused folder is left exactly as it was
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock(folder)
    try:
        if new_run:
            _refuse_if_used(folder, locked_by_us=True)  # again under the lock: another run may have started in between
    except RunFolderError:
        os.close(fd)
        raise
    remove_stale_temp_files(folder)
    return folder, fd


def _share(dist: DistInfo, value: str, failed: bool) -> tuple[str, bool]:
    """Rank 0's folder (or error) to every rank."""
    if not (dist.distributed and torch_dist.is_initialized()):
        return value, failed
    message = [(value, failed)]
    torch_dist.broadcast_object_list(message, src=0, device=dist.device if dist.device.type == "cuda" else None)
    return message[0]


# How long a SIGTERM waits for the run to reach Python code (where it stops cleanly) before the process exits
# anyway: a long native call (an allocation, a kernel) cannot be interrupted. Checkpoints are written atomically,
# so a hard exit loses nothing but the step in progress.
SIGTERM_GRACE_S = 10.0
_watching = False  # a watchdog runs in this process (its forked children must not feed it)


def _forget_watchdog_in_child() -> None:
    """After a fork (loader workers): the child's own SIGTERM must not wake the parent's watchdog through the
    inherited wake-up pipe."""
    if _watching:
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_watchdog_in_child)


class _SigtermWatchdog:
    """Python runs a signal handler only between bytecodes, so a run stuck in one long native call would ignore
    SIGTERM. The C-level handler still writes the signal number to the wake-up pipe at once: a thread reading
    it gives the run ``SIGTERM_GRACE_S`` to stop by itself, then releases the folder, logs why and exits (143)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder, self.done = folder, threading.Event()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.thread = threading.Thread(target=self._watch, name="mobilenext-sigterm", daemon=True)

    @classmethod
    def start(cls, folder: Path | None) -> _SigtermWatchdog | None:
        global _watching
        watchdog = cls(folder)
        previous = signal.set_wakeup_fd(watchdog.write_fd, warn_on_full_buffer=False)
        if previous != -1:  # the pipe is someone else's (an event loop): leave it to them
            signal.set_wakeup_fd(previous)
            watchdog._close()
            return None
        _watching = True
        watchdog.thread.start()
        return watchdog

    def _watch(self) -> None:
        while not self.done.is_set():
            ready, _, _ = select.select([self.read_fd], [], [], 0.5)
            if ready and signal.SIGTERM in os.read(self.read_fd, 64) and not self.done.wait(SIGTERM_GRACE_S):
                self._exit()

    def _exit(self) -> None:
        message = (
            f"stopped: terminated (SIGTERM) inside a long operation that did not return within {SIGTERM_GRACE_S:g} "
            "s; continue with --resume auto"
        )
        if self.folder is not None:
            with contextlib.suppress(OSError):
                (self.folder / LOCK_NAME).unlink()
            with contextlib.suppress(OSError), open(self.folder / "log.txt", "a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        with contextlib.suppress(OSError):
            os.write(2, f"mobilenext: {message}\n".encode())
        os._exit(143)

    def stop(self) -> None:
        global _watching
        self.done.set()
        signal.set_wakeup_fd(-1)
        _watching = False
        self.thread.join()
        self._close()

    def _close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def _sigterm_as_interrupt(folder: Path | None = None) -> Iterator[None]:
    """SIGTERM stops the run as Ctrl-C does (logged, resumable), also inside a long native call (the watchdog)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def handler(signum, frame):
        raise RunTerminated("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, handler)
    watchdog = _SigtermWatchdog.start(folder)
    try:
        yield
    finally:
        if watchdog is not None:
            watchdog.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_reason(error: BaseException) -> str:
    if isinstance(error, RunTerminated):
        return "stopped: terminated (SIGTERM); continue with --resume auto"
    if isinstance(error, KeyboardInterrupt):
        return "stopped: interrupted (Ctrl-C); continue with --resume auto"
    if isinstance(error, MobileNeXtError):
        return f"stopped: {error}"
    return f"stopped by an error: {type(error).__name__}: {error}"


def _to_file_only(handler: logging.Handler, message: str, level: int = logging.INFO) -> None:
    handler.handle(log.makeRecord(log.name, level, __file__, 0, message, None, None))


@contextlib.contextmanager
def open_run(
    output: str | None, resume: str | None, prefix: str, dist: DistInfo, runs_root: Path = RUNS_ROOT
) -> Iterator[Path]:
    """Claim the run's folder (see the module doc) for the block; yields its path on every rank."""
    folder, fd, error = "", -1, ""
    if dist.is_main:
        try:
            path, fd = _claim(output, resume, prefix, runs_root)
            folder = str(path)
        except MobileNeXtError as e:
            error = str(e)
        except OSError as e:  # e.g. no permission: still shared, so the other ranks stop too instead of waiting
            error = f"cannot use the run folder ({e.strerror}: {e.filename})."
    folder_or_error, failed = _share(dist, error or folder, bool(error))
    if failed:
        raise RunFolderError(folder_or_error)
    path = Path(folder_or_error)
    try:
        with (
            log_file(path / "log.txt" if dist.is_main else None) as handler,
            _sigterm_as_interrupt(path if dist.is_main else None),
        ):
            if handler is not None:
                _to_file_only(handler, f"started in {path} by process {os.getpid()}{' (resuming)' if resume else ''}")
            try:
                yield path
            except BaseException as e:
                if handler is not None:  # the console shows the error already; the log file keeps it
                    _to_file_only(handler, _stop_reason(e), logging.ERROR)
                raise
    finally:
        if fd >= 0:
            # The file goes first: a loader worker forked during the run shares the locked descriptor and may
            # outlive this block for a moment; the next run then locks a new file instead of waiting on it.
            with contextlib.suppress(OSError):
                (path / LOCK_NAME).unlink()
            os.close(fd)  # releases the lock (once no worker holds the descriptor)
