"""Atomic file output: a reader never sees a half-written file.

Every writer goes to a temporary file in the destination directory, fsyncs it, renames
it over the target (rename is atomic on POSIX within one filesystem) and fsyncs the
directory, so that after a crash the target is either the complete new file, the
previous one, or absent. A failed write (out of disk, quota, file size limit, an error
in the producer) removes the temporary file and leaves the target untouched; running
out of space is reported as a :class:`~pipeline.errors.PipelineError` naming the target.

All bytes go through :func:`_write_chunk`, one place to observe (and, in the tests,
fail) the low-level write. Directories (model and checkpoint directories) are built in
a temporary sibling and renamed into place the same way (:func:`atomic_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io as _io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from pipeline.errors import PipelineError

# Write failures that mean "the disk (or the quota, or the file size limit) is full".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded", "File too large")


def _write_chunk(fd: int, data: memoryview) -> int:
    """The one low-level write: ``os.write`` (may write fewer bytes than given)."""
    return os.write(fd, data)


def is_out_of_space(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS:
        return True
    return any(text in str(err) for text in _NO_SPACE_TEXT)


def _out_of_space_error(target: Path, err: BaseException) -> PipelineError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
    return PipelineError(f"cannot write {target}: {reason} (out of disk space?); nothing was written there")


class HashingWriter(_io.RawIOBase):
    """A write-only binary stream over a file descriptor that hashes what it writes.

    Producers that take a file object (``torch.save``, pyarrow, matplotlib) write through
    it; the first OSError is kept in ``error`` because some producers (``torch.save``)
    replace it by a less telling exception of their own.
    """

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd
        self._pos = 0
        self.sha256 = hashlib.sha256()
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += _write_chunk(self._fd, view[done:])
        except OSError as err:
            self.error = self.error or err
            raise
        self.sha256.update(view)
        self._pos += len(view)
        return len(view)


def fsync_dir(path: str | os.PathLike) -> None:
    """Persist a directory's entries (a rename into it) on filesystems that need it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - e.g. a platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _temp_sibling(target: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    For producers that insist on a path; :func:`atomic_stream` is preferred (its bytes go
    through :func:`_write_chunk`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temp_sibling(target, suffix)
    try:
        yield tmp_path
        _commit(tmp_path, target)
    except Exception as err:
        if is_out_of_space(err):
            raise _out_of_space_error(target, err) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _commit(tmp_path: Path, target: Path) -> None:
    with open(tmp_path, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
    os.replace(tmp_path, target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_stream(target: str | os.PathLike, suffix: str = "") -> Iterator[HashingWriter]:
    """Yield a binary stream to a temporary file beside ``target``; rename it on success.

    After the block, ``stream.sha256.hexdigest()`` is the hash of the bytes written.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temp_sibling(target, suffix)
    fd = os.open(tmp_path, os.O_WRONLY | os.O_TRUNC)
    stream = HashingWriter(fd)
    try:
        try:
            yield stream
        except Exception as err:
            # A producer may hide our OSError behind its own exception: report the cause.
            if stream.error is not None and stream.error is not err:
                raise stream.error from err
            raise
        os.fsync(fd)
        os.close(fd)
        fd = -1
        _commit(tmp_path, target)
    except Exception as err:
        if is_out_of_space(err):
            raise _out_of_space_error(target, err) from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
        stream.close()
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(target: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` atomically; returns its sha256."""
    with atomic_stream(target) as fh:
        fh.write(data)
    return fh.sha256.hexdigest()


def write_text(target: str | os.PathLike, text: str) -> str:
    """Write ``text`` (UTF-8) atomically; returns its sha256."""
    return write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any) -> str:
    return write_text(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)


def write_parquet(target: str | os.PathLike, frame, metadata: dict[bytes, bytes] | None = None) -> str:
    """Write a pandas DataFrame to Parquet atomically (no index column); returns the sha256.

    Deterministic: the same frame gives the same bytes (pyarrow embeds only its own and
    pandas' version, no timestamp). ``metadata`` adds key-value pairs to the file's schema
    metadata (e.g. the machine the rows were computed on: pipeline/machine.py).
    """
    with atomic_stream(target, suffix=".parquet") as fh:
        if metadata:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
            pq.write_table(table, fh)
        else:
            frame.to_parquet(fh, index=False)
    return fh.sha256.hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``target``; on success its files are
    fsynced and it replaces ``target`` (a previous ``target`` is removed only after the
    new one is in place). On failure the temporary directory is removed and ``target``
    is untouched. Used for model directories, whose files a library writes itself.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        for f in sorted(tmp.rglob("*")):
            if f.is_file() and not f.is_symlink():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        replace_dir(tmp, target)
    except Exception as err:
        if is_out_of_space(err):
            raise _out_of_space_error(target, err) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is moved aside first, then removed."""
    old = None
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_temps(directory: str | os.PathLike, name: str) -> None:
    """Remove temporary siblings a killed writer of ``directory/name`` left behind."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for stale in directory.glob(f".{name}.*"):
        if not stale.name.endswith((".tmp", ".old")):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed derived from the given parts; identical on every machine and run."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex digest of a JSON-serialisable object (keys sorted)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def guard(action: Callable[[], Any], target: str | os.PathLike) -> Any:
    """Run ``action`` (a write to ``target`` that is not ours, e.g. ``save_pretrained``),
    turning running out of space into a PipelineError naming ``target``."""
    try:
        return action()
    except Exception as err:
        if is_out_of_space(err):
            raise _out_of_space_error(Path(target), err) from None
        raise
