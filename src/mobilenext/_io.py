"""Writing files the way a careful user needs: atomically, never over an existing file unless asked, with the
permissions the user's umask gives.

One policy for every command that writes a file (run checkpoints and records, exports, conversions, pictures,
drawn detections, benchmark tables): an existing file is replaced only with ``--overwrite``, and never when it
is one of the command's own inputs; the checks run before any work (:func:`check_output_file`) and again at the
moment of writing (:func:`atomic_path`), so a file created meanwhile by someone else is not lost either. A write
that the file system refuses (a full disk, a read-only folder, no permission, a quota) is one sentence naming the
file, the folder and the cause (:class:`WriteError`), and leaves no temp file and the previous file whole. Run
folders have their own rules (``engine.run_folder``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import ConfigError, MobileNeXtError

__all__ = [
    "OutputExistsError",
    "WriteError",
    "add_overwrite_flag",
    "atomic_path",
    "check_output_file",
    "disk_problem",
    "is_temp_file",
    "mirrored_outputs",
]

_TEMP_MARK = ".tmp"

# What the file system says, and how we say it ({folder}: the folder written to).
_DISK_ERRNOS = {
    errno.ENOSPC: "no space left on the device holding {folder}",
    errno.EDQUOT: "the disk quota of {folder} is exhausted",
    errno.EROFS: "{folder} is on a read-only file system",
    errno.EACCES: "no permission to write in {folder}",
    errno.EPERM: "no permission to write in {folder}",
    errno.EFBIG: "the file is larger than the file system or a limit allows",
}
# The same causes as some writers report them without an errno (safetensors' Rust I/O errors, torch.save's C++
# writer), by the operating system's words or codes.
_DISK_WORDS = {
    "no space left on device": errno.ENOSPC,
    "code: 28,": errno.ENOSPC,
    "storagefull": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "read-only file system": errno.EROFS,
    "code: 30,": errno.EROFS,
    "permission denied": errno.EACCES,
    "file too large": errno.EFBIG,
}
_NEARLY_FULL = 1 << 20  # bytes: a failed write on a device with less free space than this was a full disk


class OutputExistsError(MobileNeXtError, FileExistsError):
    """An output file exists and the user did not ask to replace it."""


class WriteError(MobileNeXtError, OSError):
    """The file system refused a write: a full disk, a read-only folder, no permission, a quota."""


def disk_problem(error: BaseException, folder: Path) -> str | None:
    """What the file system refused, in words (see ``_DISK_ERRNOS``), if ``error`` (or what caused it) is such a
    refusal; ``None`` for any other failure. Writers that lose the errno (torch.save's C++ writer says only
    "unexpected pos") are recognised by a device left (nearly) full."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        code = getattr(error, "errno", None)
        if code not in _DISK_ERRNOS:
            text = str(error).lower()
            code = next((c for words, c in _DISK_WORDS.items() if words in text), None)
        if code in _DISK_ERRNOS:
            return _DISK_ERRNOS[code].format(folder=folder)
        error = error.__cause__ or error.__context__
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < _NEARLY_FULL:
            return _DISK_ERRNOS[errno.ENOSPC].format(folder=folder)
    return None


def _exists_message(path: Path) -> str:
    return f"{path} exists; pass --overwrite to replace it, or choose another output."


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True, inputs: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it becomes ``path`` only if the block succeeds.

    The file gets the mode a plain ``open(path, "w")`` would (0666 less the umask), not the 0600 of a temp
    file. With ``overwrite=False`` an existing ``path`` is never replaced, even one created while the block ran;
    one of ``inputs`` never. A refusal of the file system, when the temp file is made, written or renamed, is a
    :class:`WriteError` naming the cause; the previous ``path`` is then as it was.
    """
    path = Path(path)
    _check_target(path, overwrite, inputs)
    existed = path.exists()
    try:
        # Hidden, marked, and with the real suffix: exporters that judge a file by its name (torch.export's .pt2)
        # see the right one.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{_TEMP_MARK}{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as error:
        raise _write_error(path, error, existed) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            _rename_no_replace(Path(tmp), path)
    except MobileNeXtError:
        raise
    except Exception as error:
        if disk_problem(error, path.parent) is None:
            raise
        raise _write_error(path, error, existed) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _write_error(path: Path, error: BaseException, existed: bool) -> WriteError:
    cause = disk_problem(error, path.parent) or str(error)
    kept = f"the previous {path.name} is kept" if existed else "nothing was written"
    return WriteError(f"cannot write {path}: {cause}; {kept}.")


def _check_target(path: Path, overwrite: bool, inputs: Iterable[str | Path]) -> None:
    if not path.parent.is_dir():
        raise MobileNeXtError(f"cannot write {path}: folder {path.parent} does not exist; create it first.")
    if path.is_dir():
        raise MobileNeXtError(f"cannot write {path}: it is a folder; give a file name.")
    for source in inputs:
        if _same_file(path, Path(source)):
            raise ConfigError(f"{path} is one of this command's inputs ({source}); write to another file.")
    if not overwrite and path.exists():
        raise OutputExistsError(_exists_message(path))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (links and relative spellings included)."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def is_temp_file(path: Path) -> bool:
    """A temp file :func:`atomic_path` left behind when a kill interrupted the write (the real file is intact)."""
    return path.name.startswith(".") and _TEMP_MARK in path.name


def _rename_no_replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists: a hard link fails on an existing name, atomically."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(_exists_message(path)) from None
    except OSError:  # a file system without hard links: check, then rename (a small race, no better option)
        if path.exists():
            raise OutputExistsError(_exists_message(path)) from None
        os.replace(tmp, path)
    else:
        tmp.unlink()


def check_output_file(
    path: str | Path, overwrite: bool = False, suffixes: str | Sequence[str] = (), inputs: Iterable[str | Path] = ()
) -> Path:
    """Check, before any work, that ``path`` can be written: a file name (not a folder) with one of
    ``suffixes``, in an existing folder, none of the command's ``inputs``, not an existing file unless
    ``overwrite``. Returns it as a Path."""
    path = Path(path)
    suffixes = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the name of the file to write.")
    if suffixes and not path.name.endswith(suffixes):
        raise ConfigError(f"{path} should end in {' or '.join(suffixes)}: that is the kind of file written.")
    _check_target(path, overwrite, inputs)
    return path


def mirrored_outputs(inputs: Sequence[Path], folder: Path, suffix: str) -> list[Path]:
    """One output path in ``folder`` per input file, with ``suffix``.

    Names stay flat (``x.jpg`` -> ``folder/x.png``) while they are unique. When inputs share a name, outputs
    mirror the inputs' paths relative to their common folder (``a/x.jpg``, ``b/x.jpg`` -> ``folder/a/x.png``,
    ``folder/b/x.png``), and inputs that differ only in extension keep it (``x.jpg.png``, ``x.png.png``).
    """
    flat = [folder / f"{file.stem}{suffix}" for file in inputs]
    if len(set(flat)) == len(flat):
        return flat
    absolute = [Path(file).resolve() for file in inputs]
    common = Path(os.path.commonpath([p.parent for p in absolute]))
    relative = [p.relative_to(common) for p in absolute]
    stems = [rel.with_suffix("") for rel in relative]
    clashes = {s for s in stems if stems.count(s) > 1}
    return [
        folder / (rel.parent / f"{rel.name if stem in clashes else stem.name}{suffix}")
        for rel, stem in zip(relative, stems)
    ]


def add_overwrite_flag(parser) -> None:
    """The one ``--overwrite`` flag of every command that writes a file the user names."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file (without it, an existing file is an error)",
    )
