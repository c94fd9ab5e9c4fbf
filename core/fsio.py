"""Atomic writes, content hashes and the artifacts-directory lock.

Every file the pipeline writes goes to a temporary name in the destination directory and
is renamed into place, so a crash never leaves a half-written file where a good one was.
Inside a `transaction` the renames wait until the block ends and then happen together, from
a journal, so a crash never leaves new files beside an old manifest either.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_CHUNK = 1 << 20
JOURNAL = ".commit.json"  # the renames a transaction is committing (see `transaction`)
# (directory, [(staged temporary, final path), ...]) of the transaction in progress, if any.
_PENDING: contextvars.ContextVar[tuple[Path, list[tuple[Path, Path]]] | None] = contextvars.ContextVar(
    "fsio_pending", default=None
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hex sha256 of a directory: every file's relative path and content hash, sorted."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file.relative_to(path).as_posix().encode())
        h.update(b"\0")
        h.update(sha256_file(file).encode())
        h.update(b"\n")
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory tree (see `sha256_tree`)."""
    return sha256_tree(path) if path.is_dir() else sha256_file(path)


def size_of(path: Path) -> int:
    """Size in bytes of a file, or the sum over a directory tree."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are read by servers and other users
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if _defer(Path(tmp), path):
            return
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: object) -> None:
    """Write `obj` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write(tmp_path)` produce a file or directory, then move it to `path` atomically.

    Used for writers that insist on a path of their own (keras `model.save`, `torch.save`);
    inside a `transaction` the rename waits for the commit. A directory cannot replace a
    non-empty directory in one rename, so the old one is first renamed aside and removed only
    after the new one is in place. (Exports use `store_immutable` instead.)
    """
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    target = tmp / path.name
    deferred = False
    try:
        write(target)
        if target.is_file():
            with open(target, "rb") as f:
                os.fsync(f.fileno())
        deferred = _defer(target, path)
        if deferred:
            return
        if target.is_dir():
            old = None
            if path.exists():
                old = tmp / "old"
                os.replace(path, old)
            os.replace(target, path)
        else:
            os.replace(target, path)
        _fsync_dir(path.parent)
    finally:
        if not deferred:
            shutil.rmtree(tmp, ignore_errors=True)


def _defer(staged_tmp: Path, path: Path) -> bool:
    """Inside a transaction on `path`'s directory, record the rename for the commit instead."""
    current = _PENDING.get()
    if current is None or not path.resolve().is_relative_to(current[0]):
        return False
    current[1].append((staged_tmp, path))
    return True


def staged(path: Path) -> Path:
    """Where `path`'s newest content is: its staged temporary inside a transaction, else `path`."""
    current = _PENDING.get()
    for tmp, final in reversed(current[1] if current else []):
        if final == Path(path):
            return tmp
    return Path(path)


@contextlib.contextmanager
def transaction(directory: Path) -> Iterator[None]:
    """Stage every atomic write into `directory` made in the block; commit them all at the end.

    The commit writes a journal (`.commit.json`: the renames, in order, the manifest or
    record last), then renames everything into place and removes the journal. A writer
    killed before the journal exists leaves only temporaries (removed by the next `locked`);
    killed during the renames, the next `locked` finishes them from the journal. Readers see
    old or new files only, except in the few milliseconds of the renames themselves.
    Hold `locked(directory)` around it.
    """
    directory = Path(directory).resolve()
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set((directory, pending))
    try:
        yield
    except BaseException:
        _PENDING.reset(token)
        for tmp, final in pending:
            if tmp.parent != final.parent:  # atomic_write_with's own temporary directory
                shutil.rmtree(tmp.parent, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        raise
    _PENDING.reset(token)
    if not pending:
        return
    renames = [
        [os.path.relpath(tmp.resolve(), directory), os.path.relpath(final.resolve(), directory)]
        for tmp, final in pending
    ]
    atomic_write_bytes(directory / JOURNAL, json.dumps({"renames": renames}).encode())
    roll_forward(directory)


def roll_forward(directory: Path) -> int:
    """Finish the renames of a committed transaction (its journal), if any; returns how many were done."""
    journal = Path(directory) / JOURNAL
    if not journal.exists():
        return 0
    try:
        renames = json.loads(journal.read_text())["renames"]
    except (ValueError, KeyError, TypeError):
        journal.unlink()  # written atomically, so never torn; a foreign file: nothing to finish
        return 0
    done = 0
    for tmp_rel, final_rel in renames:
        tmp, final = Path(directory) / tmp_rel, Path(directory) / final_rel
        if not tmp.exists() and not tmp.is_symlink():
            continue  # renamed before a crash
        holder = tmp.parent if tmp.parent != final.parent else None  # atomic_write_with's directory
        if tmp.is_dir() and final.exists():  # a directory cannot replace a non-empty one: set it aside
            os.replace(
                final,
                (holder or Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")))
                / "old",
            )
        os.replace(tmp, final)
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)
        done += 1
    _fsync_dir(Path(directory))
    journal.unlink()
    _fsync_dir(Path(directory))
    return done


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (a `.lock` file in it) for the block.

    Two exports into the same directory run one after the other instead of interleaving
    their manifest updates. Every writer holds it, so temporaries left by a killed run can
    be removed on entry: nobody else is writing.
    """
    with open(Path(directory) / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            roll_forward(Path(directory))  # a writer killed mid-commit: finish its renames first
            remove_stale_temporaries(Path(directory))
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Delete `.<name>.<random>.tmp` files and dirs that a killed writer left behind."""
    removed = []
    for path in directory.glob(".*.tmp"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        removed.append(path.name)
    return removed


def versioned_name(name: str, sha256: str) -> str:
    """`keras_linear.onnx` + hash -> `keras_linear.<12 hex>.onnx` (the hash goes after the first dot)."""
    stem, _, rest = name.partition(".")
    return f"{stem}.{sha256[:12]}.{rest}" if rest else f"{stem}.{sha256[:12]}"


def store_immutable(directory: Path, name: str, write: Callable[[Path], None]) -> tuple[Path, str]:
    """Let `write(tmp)` produce a file or directory, then move it to its content-addressed name.

    Returns (path, sha256). A stored version is never modified afterwards, so a manifest
    naming it stays true whatever happens to later writes.
    """
    directory = Path(directory)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}.", suffix=".tmp"))
    try:
        target = tmp / name
        write(target)
        if target.is_file():
            with open(target, "rb") as f:
                os.fsync(f.fileno())
        digest = sha256_path(target)
        final = directory / versioned_name(name, digest)
        if not final.exists():  # same content already stored: keep the existing one
            os.replace(target, final)
            _fsync_dir(directory)
        return final, digest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def point_alias(directory: Path, alias: str, target: Path) -> None:
    """Make `directory/alias` name `target` atomically: a hard link for a file, a symlink for a dir."""
    directory = Path(directory)
    current = directory / alias
    if current.exists() and os.path.samefile(current, target):
        return  # already points there (rename of two links to one inode would be a no-op)
    link = directory / f".{alias}.{os.getpid()}.alias.tmp"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    if target.is_dir():
        os.symlink(target.name, link)
        old = directory / alias
        if old.is_dir() and not old.is_symlink():  # a real directory from an older layout
            shutil.rmtree(old)
    else:
        os.link(target, link)
    os.replace(link, directory / alias)
