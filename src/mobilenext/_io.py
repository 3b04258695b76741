"""Writing files the way a careful user needs: atomically, never over an existing file unless asked, with the
permissions the user's umask gives.

One policy for every command that writes a file (exports, conversions, pictures, drawn detections, benchmark
tables): an existing file is replaced only with ``--overwrite``; the check runs before any work
(:func:`check_output_file`) and again at the moment of writing (:func:`atomic_path`), so a file created
meanwhile by someone else is not lost either. Run folders have their own rules (``engine.run_folder``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import ConfigError, MobileNeXtError

__all__ = [
    "OutputExistsError",
    "add_overwrite_flag",
    "atomic_path",
    "check_output_file",
    "is_temp_file",
    "mirrored_outputs",
]

_TEMP_MARK = ".tmp"


class OutputExistsError(MobileNeXtError, FileExistsError):
    """An output file exists and the user did not ask to replace it."""


def _exists_message(path: Path) -> str:
    return f"{path} exists; pass --overwrite to replace it, or choose another output."


def _umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it becomes ``path`` only if the block succeeds.

    The file gets the mode a plain ``open(path, "w")`` would (0666 less the umask), not the 0600 of a temp
    file. With ``overwrite=False`` an existing ``path`` is never replaced, even one created while the block ran.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise MobileNeXtError(f"cannot write {path}: folder {path.parent} does not exist; create it first.")
    if path.is_dir():
        raise MobileNeXtError(f"cannot write {path}: it is a folder; give a file name.")
    if not overwrite and path.exists():
        raise OutputExistsError(_exists_message(path))
    # Hidden, marked, and with the real suffix: exporters that judge a file by its name (torch.export's .pt2)
    # see the right one.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{_TEMP_MARK}{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        if overwrite:
            os.replace(tmp, path)
        else:
            _rename_no_replace(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def check_output_file(path: str | Path, overwrite: bool = False, suffixes: str | Sequence[str] = ()) -> Path:
    """Check, before any work, that ``path`` can be written: a file name (not a folder) with one of
    ``suffixes``, in an existing folder, not an existing file unless ``overwrite``. Returns it as a Path."""
    path = Path(path)
    suffixes = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the name of the file to write.")
    if suffixes and not path.name.endswith(suffixes):
        raise ConfigError(f"{path} should end in {' or '.join(suffixes)}: that is the kind of file written.")
    if not path.parent.is_dir():
        raise MobileNeXtError(f"cannot write {path}: folder {path.parent} does not exist; create it first.")
    if path.exists() and not overwrite:
        raise OutputExistsError(_exists_message(path))
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
