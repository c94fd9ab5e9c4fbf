"""Every file operation on an artifacts directory, confined to it: `Root(dir)`.

Names come in relative to the directory (one name, or a few safe components); each is checked
once (no absolute path, no '..', only `[A-Za-z0-9_.-]` components) and resolved with symlinks
followed; anything that lands outside the directory is refused before a byte is read or written.
Files are opened only when they are regular files (a SavedModel: a directory), never a FIFO or a
device, and without following a symlink at the last step.

Writes are atomic: a temporary name in the directory, fsync, rename. Exports store immutable,
content-addressed versions (`store_immutable`) and commit by renaming the manifest; training commits
several files through a journal (`transaction`). Every writer holds the directory lock (`locked`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from oneneuron.errors import IntegrityError, LockTimeoutError, MissingArtifactError
from oneneuron.fixes import fix

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
JOURNAL = ".commit.json"  # the renames a transaction is committing (see `Root.transaction`)
LOCK = ".lock"
LOCK_TIMEOUT = 300.0  # seconds a writer waits for another writer's lock (--lock-timeout)
_COMPONENT = re.compile(r"[A-Za-z0-9_.-]{1,255}")
# `<model>.<12 hex>.<format suffix>`: a stored version written by `store_immutable`.
VERSIONED = re.compile(r"^(?P<model>[A-Za-z0-9][A-Za-z0-9_-]*)\.[0-9a-f]{12}(\..+)?$")


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hex sha256 of a directory: every regular file's relative path and content hash, sorted.

    Symlinks inside are never followed (rglob does not descend into them) and count as their target text.
    """
    h = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_symlink() or p.is_file()):
        h.update(file.relative_to(path).as_posix().encode())
        h.update(b"\0")
        h.update((("->" + os.readlink(file)) if file.is_symlink() else sha256_file(file)).encode())
        h.update(b"\n")
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of a directory tree (see `sha256_tree`)."""
    return sha256_tree(path) if Path(path).is_dir() else sha256_file(path)


def size_of(path: Path) -> int:
    """Size in bytes of a file, or the sum over a directory tree."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_regular(path: Path, limit: int, what_fixes: str) -> tuple[int, os.stat_result]:
    """An open descriptor of `path` and its fstat, when `path` is a regular file of at most `limit`
    bytes inside its own directory (a symlink at the last step, a FIFO or a device is refused)."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(Path(os.path.realpath(path.parent))):
        raise IntegrityError(
            f"{path}: a symlink leading outside {path.parent}; replace it with the file; {what_fixes}"
        )
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MissingArtifactError(f"{path}: not found; {what_fixes}") from None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise IntegrityError(f"{path}: a symlink (swapped in while read); {what_fixes}") from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = f"{path}: not a regular file (a {kind_of(info.st_mode)}); {what_fixes}"
    elif info.st_size > limit:
        problem = f"{path}: {info.st_size:,} bytes, more than the limit of {limit:,}; {what_fixes}"
    if problem is not None:
        os.close(fd)
        raise IntegrityError(problem)
    return fd, info


def read_regular(path: Path, limit: int, what_fixes: str) -> bytes:
    """Read at most `limit` bytes of `path`, which must be a regular file inside its own directory."""
    fd, _ = _open_regular(path, limit, what_fixes)
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1)[:limit]


def sha256_regular(path: Path, limit: int, what_fixes: str) -> str:
    """Hex sha256 of `path` under `read_regular`'s rules, reading no more than the size it had when
    opened (a file that grows while hashed cannot keep the reader going)."""
    fd, info = _open_regular(path, limit, what_fixes)
    h, left = hashlib.sha256(), info.st_size
    with os.fdopen(fd, "rb", buffering=0) as f:
        while left > 0 and (block := f.read(min(_CHUNK, left))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def copy_regular_tree(source: Path, target: Path, limit: int, what_fixes: str) -> None:
    """Copy the directory `source` to `target` (new), each file with `read_regular`; a symlink, FIFO
    or device inside is refused, never followed."""
    source, target = Path(source), Path(target)
    target.mkdir(mode=0o700)
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        here = target / Path(dirpath).relative_to(source)
        for name in dirnames + filenames:
            if os.path.islink(os.path.join(dirpath, name)):
                raise IntegrityError(f"{Path(dirpath) / name}: a symlink inside {source}; {what_fixes}")
        for name in dirnames:
            (here / name).mkdir(mode=0o700)
        for name in filenames:
            try:
                data = read_regular(Path(dirpath) / name, limit, what_fixes)
            except MissingArtifactError:  # listed, then gone: the directory is changing under us
                raise IntegrityError(
                    f"{Path(dirpath) / name}: removed while {source} was being copied; {what_fixes}"
                ) from None
            (here / name).write_bytes(data)


def _holds(path: Path, digest: str) -> bool:
    """Whether `path` is a real file or directory (not a symlink, FIFO or device) of hash `digest`."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    return (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) and sha256_path(path) == digest


def kind_of(mode: int) -> str:
    """What a file of `st_mode` `mode` is, in words: "directory", "FIFO", ..."""
    for test, name in (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symlink"),
    ):
        if test(mode):
            return name
    return "special file"


class Root:
    """One artifacts directory; every read, write, rename, link and delete in it goes through here."""

    def __init__(self, directory: Path | str):
        self.dir = Path(directory)
        self.real = Path(os.path.realpath(self.dir))

    def __repr__(self) -> str:
        return f"Root({str(self.dir)!r})"

    # -- names ---------------------------------------------------------------------------------
    def _parts(self, rel: str | Path) -> list[str]:
        text = rel.as_posix() if isinstance(rel, Path) else rel
        parts = text.split("/") if isinstance(text, str) else []
        if (
            not parts
            or len(parts) > 8
            or not all(_COMPONENT.fullmatch(p) and p not in (".", "..") for p in parts)
        ):
            raise IntegrityError(
                f"{self.dir}: {str(rel)[:120]!r} is not a safe relative name inside the "
                "directory (expected names of letters, digits, '_', '.', '-', no '..' and no '/' "
                f"at the start); {fix('export', self.dir)}"
            )
        return parts

    def _inside(self, path: Path) -> Path:
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(self.real):
            raise IntegrityError(
                f"{path}: leads outside {self.dir} (to {real}); nothing outside the artifacts "
                f"directory is read or written; replace it; {fix('export', self.dir)}"
            )
        return path

    def path(self, rel: str | Path) -> Path:
        """`dir/rel` after checking `rel` is relative, safe, and resolves inside the directory."""
        return self._inside(self.dir.joinpath(*self._parts(rel)))

    def existing(
        self, rel: str, kind: str = "file", named_in: str = "manifest.json", fix_key: str = "export"
    ) -> Path:
        """`path(rel)`, which must exist and be a regular file (`kind` "file") or a directory ("dir")."""
        path = self.path(rel)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise MissingArtifactError(
                f"{path}: named in {self.dir / named_in} but missing; {fix(fix_key, self.dir)}"
            ) from None
        ok = stat.S_ISDIR(info.st_mode) if kind == "dir" else stat.S_ISREG(info.st_mode)
        if not ok:
            raise IntegrityError(
                f"{path}: a {kind_of(info.st_mode)}, expected a "
                f"{'directory' if kind == 'dir' else 'regular file'}; {fix('export', self.dir)}"
            )
        return path

    def read_bytes(self, rel: str, limit: int = 1 << 31) -> bytes:
        return read_regular(self.existing(rel), limit, fix("export", self.dir))

    # -- writes --------------------------------------------------------------------------------
    def write_bytes(self, rel: str, data: bytes) -> Path:
        """Write `data` to `rel` via a temporary file in the directory, fsync and a rename."""
        path = self.path(rel)
        self._rename_into_place(self._staged_bytes(path, data), path)
        return path

    def write_json(self, rel: str, obj: object) -> Path:
        return self.write_bytes(rel, json_bytes(obj))

    def _staged_bytes(self, path: Path, data: bytes) -> Path:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are read by servers and other users
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return Path(tmp)

    def _rename_into_place(self, tmp: Path, path: Path) -> None:
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    def write_with(self, rel: str, write: Callable[[Path], None]) -> Path:
        """Let `write(tmp)` produce `rel`'s new file (for writers that insist on a path), then rename it."""
        path = self.path(rel)
        holder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            target = holder / path.name
            write(target)
            with open(target, "rb") as f:
                os.fsync(f.fileno())
            os.replace(target, path)
            _fsync_dir(path.parent)
        finally:
            shutil.rmtree(holder, ignore_errors=True)
        return path

    def store_immutable(self, name: str, write: Callable[[Path], None]) -> tuple[str, str]:
        """Let `write(tmp)` produce a file or directory; move it to its content-addressed name.

        Returns (relative name, sha256). A stored version is never modified afterwards, so a
        manifest naming it stays true whatever happens to later writes.
        """
        self.path(name)  # the name itself must be safe
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=f".{name}.", suffix=".tmp"))
        try:
            target = tmp / name
            write(target)
            if target.is_file():
                with open(target, "rb") as f:
                    os.fsync(f.fileno())
            digest = sha256_path(target)
            rel = versioned_name(name, digest)
            final = self.path(rel)
            if not _holds(final, digest):  # keep an existing copy only if it is real and of this hash
                if final.exists() or final.is_symlink():  # a FIFO, a link or other bytes under its name
                    self.remove(rel)
                os.replace(target, final)
                _fsync_dir(self.dir)
            return rel, digest
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def point_alias(self, alias: str, target_rel: str) -> None:
        """Point `alias` at the stored version `target_rel`: a hard link, or a symlink for a dir."""
        current, target = self.path(alias), self.path(target_rel)
        if current.exists() and os.path.samefile(current, target):
            return  # already points there (rename of two links to one inode would be a no-op)
        link = self.dir / f".{alias}.{os.getpid()}.alias.tmp"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        if target.is_dir():
            os.symlink(target.name, link)
            if current.is_dir() and not current.is_symlink():  # a real directory from an older layout
                shutil.rmtree(current)
        else:
            os.link(target, link)
        os.replace(link, current)

    def remove(self, rel: str) -> None:
        """Delete `rel`: a file or symlink is unlinked (never followed); a real directory is removed."""
        path = self.dir.joinpath(*self._parts(rel))
        self._inside(path.parent)  # the last component itself is never followed
        if path.is_symlink() or not path.is_dir():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            shutil.rmtree(path)

    # -- lock and transactions -----------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the directory's exclusive lock (`.lock`, a regular file) for the block.

        Waits at most `timeout` seconds (default `LOCK_TIMEOUT`) for another writer, saying once
        who holds it; then raises LockTimeoutError. On entry, finishes a commit a killed writer
        left (its journal) and removes stale temporaries: nobody else is writing.
        """
        timeout = LOCK_TIMEOUT if timeout is None else timeout
        path = self.dir / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IntegrityError(
                    f"{path}: is a symlink; the lock must be a regular file in the directory; "
                    f"{fix('lock', self.dir)}"
                ) from None
            raise
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IntegrityError(f"{path}: not a regular file; {fix('lock', self.dir)}")
            self._acquire(fd, timeout)
            os.ftruncate(fd, 0)
            os.pwrite(
                fd, f"{os.getpid()} {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}\n".encode(), 0
            )
            try:
                self.roll_forward()  # a writer killed mid-commit: finish its renames first
                self.remove_stale_temporaries()
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd: int, timeout: float) -> None:
        deadline, said = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                holder = _lock_holder(fd)
                if not said:
                    logger.warning("waiting for the lock on %s held by %s", self.dir, holder)
                    said = True
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"{self.dir}: the directory lock is held by {holder} for more than "
                        f"--lock-timeout {timeout:g} s; wait for that process to finish, stop it, or pass a "
                        "larger --lock-timeout"
                    ) from None
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Stage writes on the yielded `Transaction`; commit them all together when the block ends.

        The commit writes a journal (`.commit.json`: the renames, in order, the record last), then
        renames everything into place and removes the journal. A writer killed before the journal
        exists leaves only temporaries (removed by the next `locked`); killed during the renames,
        the next `locked` finishes them from the journal. Hold `locked()` around it.
        """
        txn = Transaction(self)
        try:
            yield txn
        except BaseException:
            txn.discard()
            raise
        if txn.pending:
            renames = [
                [os.path.relpath(tmp, self.dir), os.path.relpath(final, self.dir)]
                for tmp, final in txn.pending
            ]
            self.write_bytes(JOURNAL, json.dumps({"renames": renames}).encode())
            self.roll_forward()

    def _journal_renames(self) -> list[tuple[Path, Path]]:
        journal = self.dir / JOURNAL
        bad = (
            f"{journal}: not a journal this toolkit wrote; it was left in place and not executed; "
            f"{fix('journal', self.dir)}"
        )
        try:
            renames = json.loads(read_regular(journal, 1 << 20, fix("journal", self.dir)))["renames"]
            pairs = [(str(a), str(b)) for a, b in renames]
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(bad) from None
        try:
            return [(self.path(a), self.path(b)) for a, b in pairs]
        except IntegrityError as exc:
            raise IntegrityError(f"{bad} ({exc})") from None

    def roll_forward(self) -> int:
        """Finish the renames of a committed transaction (its journal), if any; returns how many were done."""
        journal = self.dir / JOURNAL
        if not journal.exists() and not journal.is_symlink():
            return 0
        done = 0
        for tmp, final in self._journal_renames():
            if not tmp.exists() and not tmp.is_symlink():
                continue  # renamed before a crash
            holder = tmp.parent if tmp.parent != final.parent else None  # a staged directory's own temp dir
            if tmp.is_dir() and final.exists():  # a directory cannot replace a non-empty one: set it aside
                aside = holder or Path(
                    tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
                )
                os.replace(final, aside / "old")
            os.replace(tmp, final)
            if holder is not None:
                shutil.rmtree(holder, ignore_errors=True)
            done += 1
        _fsync_dir(self.dir)
        journal.unlink()
        _fsync_dir(self.dir)
        return done

    def remove_stale_temporaries(self) -> list[str]:
        """Delete `.<name>.<random>.tmp` files and dirs that a killed writer left behind."""
        removed = []
        for path in self.dir.glob(".*.tmp"):
            self.remove(path.name)
            removed.append(path.name)
        return removed


def _lock_holder(fd: int) -> str:
    """Who holds the flock on `fd`'s file: "pid N (since T)".

    The pid comes from the kernel's lock table (/proc/locks), not from `.lock`'s text, which a
    holder writes only after taking the lock and anyone can overwrite (issue 19). fcntl's F_GETLK
    and F_OFD_GETLK cannot answer: on Linux they see POSIX and OFD locks, never flock's. The time
    is `.lock`'s, shown only when its pid is the holder's; without /proc the file's pid is shown.
    """
    text = os.pread(fd, 200, 0).decode(errors="replace").split()
    written, since = (text + ["?", "?"])[:2]
    info = os.fstat(fd)
    key = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as f:  # "1: FLOCK  ADVISORY  WRITE 4321 fe:00:2188531 0 EOF"
            held = [
                p for _, kind, _, _, p, k, *_ in (line.split() for line in f) if (kind, k) == ("FLOCK", key)
            ]
    except (OSError, ValueError):
        held = []
    if not held:
        return f"pid {written} (since {since}, as {LOCK} says)"
    return f"pid {held[0]} (since {since})" if held[0] == written else f"pid {held[0]}"


@contextlib.contextmanager
def removing_new_dirs_on_error(base: Path) -> Iterator[None]:
    """On an error in the block, remove the directories under `base` (and `base`) that the block
    created and left empty: a failed write (a full disk) leaves no trace."""
    base = Path(base)
    before = {p for p in base.rglob("*") if p.is_dir()} | ({base} if base.exists() else set())
    try:
        yield
    except BaseException:
        created = [p for p in base.rglob("*") if p.is_dir() and not p.is_symlink() and p not in before]
        for d in sorted(created, key=lambda p: -len(p.parts)) + ([base] if base not in before else []):
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty
        raise


class Transaction:
    """Writes staged for one commit (see `Root.transaction`); nothing is visible until it commits."""

    def __init__(self, root: Root):
        self.root = root
        self.pending: list[tuple[Path, Path]] = []  # (staged temporary, final path)

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self.root.path(rel)
        self.pending.append((self.root._staged_bytes(path, data), path))

    def write_json(self, rel: str, obj: object) -> None:
        self.write_bytes(rel, json_bytes(obj))

    def stage(self, rel: str, write: Callable[[Path], None]) -> None:
        """Let `write(tmp)` produce `rel`'s new file or directory (for writers that insist on a path)."""
        path = self.root.path(rel)
        holder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        target = holder / path.name
        try:
            write(target)
            if target.is_file():
                with open(target, "rb") as f:
                    os.fsync(f.fileno())
        except BaseException:
            shutil.rmtree(holder, ignore_errors=True)
            raise
        self.pending.append((target, path))

    def staged(self, rel: str) -> Path:
        """Where `rel`'s newest content is: its staged temporary in this transaction, else the file."""
        path = self.root.path(rel)
        for tmp, final in reversed(self.pending):
            if final == path:
                return tmp
        return path

    def discard(self) -> None:
        for tmp, final in self.pending:
            if tmp.parent != final.parent:  # a staged file or directory's own temporary directory
                shutil.rmtree(tmp.parent, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        self.pending.clear()


def json_bytes(obj: object) -> bytes:
    """The bytes `write_json` writes for `obj` (two-space indented JSON and a newline)."""
    return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()


def versioned_name(name: str, sha256: str) -> str:
    """`keras_linear.onnx` + hash -> `keras_linear.<12 hex>.onnx` (the hash goes after the first dot)."""
    stem, _, rest = name.partition(".")
    return f"{stem}.{sha256[:12]}.{rest}" if rest else f"{stem}.{sha256[:12]}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (a file of its own directory; for outputs outside artifacts)."""
    Root(Path(path).parent).write_bytes(Path(path).name, data)


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Let `write(tmp)` produce the file `path` (a file of its own directory), atomically."""
    Root(Path(path).parent).write_with(Path(path).name, write)


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_bytes(path, json_bytes(obj))
