"""The output directory of `python -m serve.batch`: numbered parts, their manifests, resume.

    OUT/part-00000-0000000.parquet   file 0, part 0 (names sort in input order)
    OUT/_parts/part-00000-0000000.json   its manifest: input file, row range, rows, sha256, skipped rows
    OUT/_job.json                    what the job is (model sha256, inputs' identity, plan, options)
    OUT/_manifest.json               written last, when every part is committed
    OUT/_skipped.jsonl               with --on-error skip: one line per skipped row

A part's data file is written to a temporary name (hashed while written) and renamed, then its
manifest is written the same way: the manifest is the commit point, so a killed job leaves
whole parts or none. Parts are fsynced once, before the final manifest (serve/batch/writer.py).
`--resume` keeps a part whose manifest is there and whose bytes still hash to it. Readers of the
directory (pyarrow.dataset, Spark, pandas) skip names starting with `_` or `.`.

The directory may be writable by others, so its state goes through oneneuron/fsio.py: manifests
are written under unpredictable temporary names created exclusively (a planted symlink is never
followed) and read, like parts when hashed, only as regular files opened without following a
symlink, with bounded reads (a FIFO, a device or a link to /dev/zero is refused at once, not read
forever). `--output` is checked before anything is created in it, the lock included.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from oneneuron.errors import InputError, IntegrityError, MissingArtifactError
from oneneuron.fsio import Root, atomic_write_json, atomic_write_with, read_regular, sha256_regular
from serve.batch.writer import PartWriter

logger = logging.getLogger(__name__)

JOB, FINAL, SKIPPED, PARTS, LOCK = "_job.json", "_manifest.json", "_skipped.jsonl", "_parts", "_job.lock"
PART = re.compile(r"^part-\d{5}-\d{7}\.(parquet|csv)$")
PART_MANIFEST = re.compile(r"^part-\d{5}-\d{7}\.json$")
TEMPORARY = re.compile(r"^\..+\.tmp$")
MAX_STATE_BYTES = 1 << 26  # _job.json or one part manifest (its skipped rows included): 64 MiB
MAX_PART_BYTES = 1 << 46  # a part file: far beyond any real part, a bound all the same
_STATE_FIX = "serve.batch never writes one: remove it, or rerun with --overwrite"


def part_name(file_index: int, part: int, fmt: str) -> str:
    return f"part-{file_index:05d}-{part:07d}.{fmt}"


def _ours(entry: Path) -> bool:
    """A name this module writes (never follows a symlink: those are refused before)."""
    name = entry.name
    if entry.is_dir() and not entry.is_symlink():
        if name == PARTS:
            return all(PART_MANIFEST.match(p.name) or TEMPORARY.match(p.name) for p in entry.iterdir())
        return bool(TEMPORARY.match(name))
    return name in (JOB, FINAL, SKIPPED, LOCK) or bool(PART.match(name) or TEMPORARY.match(name))


def prepare(out: Path, identity: dict, input_paths: list[str], resume: bool, overwrite: bool) -> None:
    """Check the output directory and record the job in it; refuse anything we did not write.

    New directory: created. Existing and empty: used. Existing with our files: `--resume`
    continues when `_job.json` describes the same job; `--overwrite` deletes our files only.
    """
    check_output(out, input_paths)
    out.mkdir(parents=True, exist_ok=True)
    entries = [e for e in out.iterdir() if e.name != LOCK]
    links = [e.name for e in entries if e.is_symlink()]
    if links:
        raise InputError(f"--output {out}: contains symlinks {links[:5]}; pass a directory without them")
    foreign = [e.name for e in entries if not _ours(e)]
    if entries and foreign:
        raise InputError(
            f"--output {out}: contains files serve.batch did not write ({', '.join(sorted(foreign)[:5])}); "
            "pass a new or empty directory"
        )
    if entries and resume:
        special = [f"{e.name} (a {k})" for e in _state_entries(out) if (k := _special(e))]
        if special:  # --overwrite removes them (unlinked, never followed or read)
            raise InputError(f"--output {out}: holds {', '.join(special[:5])}; {_STATE_FIX}")
        try:
            previous = json.loads(read_regular(out / JOB, MAX_STATE_BYTES, _STATE_FIX))
        except (OSError, ValueError, IntegrityError):
            raise InputError(f"--output {out}: no readable {JOB} to resume from; use --overwrite") from None
        if not isinstance(previous, dict):
            raise InputError(f"--output {out}: {JOB} is not a job description; use --overwrite")
        changed = sorted(k for k in identity if previous.get("identity", {}).get(k) != identity[k])
        if changed:
            raise InputError(
                f"--output {out}: was written by a different job ({', '.join(changed)} changed); "
                "rerun with the original arguments, or use --overwrite"
            )
        _remove(p for p in out.iterdir() if TEMPORARY.match(p.name))
        with contextlib.suppress(FileNotFoundError):
            (out / FINAL).unlink()  # rewritten when the resumed job finishes
    elif entries and overwrite:
        logger.info("--overwrite: removing %d entries serve.batch wrote in %s", len(entries), out)
        _remove(entries)
    elif entries:
        raise InputError(
            f"--output {out}: already holds a batch job's output; pass --resume to continue it "
            "or --overwrite to replace it"
        )
    (out / PARTS).mkdir(exist_ok=True)
    atomic_write_json(out / JOB, {"identity": identity})


def check_output(out: Path, input_paths: list[str]) -> None:
    """Refuse an `--output` that is a symlink, not a directory, or holds an input; creates nothing."""
    if out.is_symlink():
        raise InputError(f"--output {out}: is a symlink; pass the real directory")
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {out}: exists and is not a directory; pass a new directory")
    resolved = out.resolve()
    inside = [p for p in input_paths if Path(p).is_relative_to(resolved)]
    if inside:
        raise InputError(f"--output {out}: contains the input {inside[0]}; write the output elsewhere")


def _state_entries(out: Path) -> list[Path]:
    """The top-level entries and those of `_parts/` (when it is a real directory)."""
    entries = list(out.iterdir())
    parts_dir = out / PARTS
    if parts_dir.is_dir() and not parts_dir.is_symlink():
        entries += list(parts_dir.iterdir())
    return entries


def _special(entry: Path) -> str | None:
    """What `entry` is when it is neither a regular file nor a real directory (None otherwise)."""
    try:
        mode = os.lstat(entry).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "symlink" if stat.S_ISLNK(mode) else "FIFO, socket or device"


def _remove(entries) -> None:
    for e in entries:
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e)
        else:
            with contextlib.suppress(FileNotFoundError):
                e.unlink()


@contextlib.contextmanager
def locked(out: Path, input_paths: list[str]) -> Iterator[None]:
    """One job at a time per output directory; a second one fails at once instead of interleaving.

    `--output` is checked first (`check_output`): a symlinked one is refused before anything,
    the lock included, is created in its target. The lock is opened through the directory's own
    descriptor, without following a symlink, and must be a regular file."""
    check_output(out, input_paths)
    out.mkdir(parents=True, exist_ok=True)
    try:
        directory = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InputError(f"--output {out}: became a symlink or a file; pass the real directory") from None
        raise
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(LOCK, flags, 0o644, dir_fd=directory)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(f"--output {out}: {LOCK} is a symlink; remove it") from None
            raise
    finally:
        os.close(directory)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"--output {out}: {LOCK} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"--output {out}: another serve.batch job is writing it; wait for it") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _state_path(out: Path, path: Path) -> Path:
    """`path` (in `out` or `out/_parts`), after checking its directory is inside `out`: `_parts`
    swapped for a symlink to elsewhere is refused (`read_regular` checks the last step)."""
    if not Path(os.path.realpath(path.parent)).is_relative_to(Path(os.path.realpath(out))):
        raise IntegrityError(f"{path.parent}: leads outside --output {out}; {_STATE_FIX}")
    return path


def manifest_path(out: Path, file_index: int, part: int, fmt: str) -> Path:
    return out / PARTS / part_name(file_index, part, fmt).replace(f".{fmt}", ".json")


def done(out: Path, file_index: int, part: int, fmt: str) -> dict | None:
    """The committed manifest of a part, or None when it must be (re)computed.

    A manifest or part that is a symlink leading out of the directory, a FIFO or a device is
    refused (IntegrityError) without reading it; both reads are bounded."""
    fixes = f"{_STATE_FIX} (--output {out})"
    try:
        path = _state_path(out, manifest_path(out, file_index, part, fmt))
        meta = json.loads(read_regular(path, MAX_STATE_BYTES, fixes))
        digest = sha256_regular(out / part_name(file_index, part, fmt), MAX_PART_BYTES, fixes)
        return meta if isinstance(meta, dict) and digest == meta["sha256"] else None
    except (MissingArtifactError, ValueError, KeyError, TypeError):
        return None


def open_part(out: Path, file_index: int, part: int, fmt: str) -> PartWriter:
    return PartWriter(out / part_name(file_index, part, fmt), fmt)


def commit_part(
    out: Path,
    writer: PartWriter,
    file_index: int,
    part: int,
    source: str,
    first_row: int,
    rows_in: int,
    skipped: list[dict],
) -> dict:
    """Rename the part into place, then commit it with its manifest; returns the manifest.

    The part is not fsynced here (see serve/batch/writer.py): `done` re-hashes a part before
    trusting it, and `finish` fsyncs everything before the final manifest."""
    meta = {
        "part": writer.path.name,
        "input": source,
        "file_index": file_index,
        "index": part,
        "rows": [first_row, first_row + rows_in],
        "rows_out": writer.rows,
        "sha256": writer.commit(),
        "skipped": skipped,
    }
    # an unpredictable temporary name, created exclusively, then a rename; refused if `_parts`
    # leads out of the directory (oneneuron/fsio.py)
    target = _state_path(out, manifest_path(out, file_index, part, writer.fmt))
    root, rel = Root(out), f"{PARTS}/{target.name}"
    if target.is_symlink():  # planted: removed, never followed (a rename would replace it anyway)
        root.remove(rel)
    root.write_json(rel, meta)
    return meta


def _fsync(paths: list[Path]) -> None:
    """fsync each of `paths` (regular files or directories), never following a symlink or opening
    a FIFO (which would wait for a writer)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise IntegrityError(f"{path}: not a regular file or directory; {_STATE_FIX}")
            os.fsync(fd)
        finally:
            os.close(fd)


def finish(out: Path, identity: dict, metas: list[dict], model: dict, rows: dict[int, int]) -> dict:
    """Check that the parts cover every input row exactly once, then write the final manifest.

    `rows` is each input file's row count (by file index), as the engine read it.
    """
    metas = sorted(metas, key=lambda m: (m["file_index"], m["index"]))
    covered: dict[int, int] = {}
    for m in metas:
        covered[m["file_index"]] = covered.get(m["file_index"], 0) + m["rows"][1] - m["rows"][0]
    if {i: n for i, n in rows.items() if n} != covered or any(
        m["index"] == 0 and m["rows"][0] != 0 for m in metas
    ):
        raise InputError(f"{out}: the parts do not cover the input's rows exactly; use --overwrite")
    for prev, cur in zip(metas, metas[1:], strict=False):
        same = prev["file_index"] == cur["file_index"]
        if same and (cur["index"] != prev["index"] + 1 or cur["rows"][0] != prev["rows"][1]):
            raise InputError(
                f"{out}: parts {prev['part']} and {cur['part']} are not contiguous; use --overwrite"
            )
    # durable before the final manifest says so: every part, its manifest and both directories
    _fsync(
        [out / m["part"] for m in metas]
        + [out / PARTS / (m["part"].rsplit(".", 1)[0] + ".json") for m in metas]
    )
    _fsync([out / PARTS, out])
    skipped = [{"input": m["input"], **s} for m in metas for s in m["skipped"]]
    if skipped:
        lines = "".join(json.dumps(s) + "\n" for s in skipped)
        atomic_write_with(out / SKIPPED, lambda tmp: tmp.write_text(lines))
    rows_in = sum(m["rows"][1] - m["rows"][0] for m in metas)
    final = {
        "model": model,
        "inputs": identity["inputs"],
        "format": identity["format"],
        "batch_rows": identity["batch_rows"],
        "part_rows": identity["part_rows"],
        "rows_in": rows_in,
        "rows_out": sum(m["rows_out"] for m in metas),
        "rows_skipped": sum("row" in s for s in skipped),
        "lines_skipped": sum("line" in s for s in skipped),  # ragged CSV lines: not rows, so not in rows_in
        "parts": [{k: m[k] for k in ("part", "file_index", "rows", "rows_out", "sha256")} for m in metas],
    }
    atomic_write_json(out / FINAL, final)
    return final
