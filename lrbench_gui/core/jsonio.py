"""Reading untrusted JSON files within bounds: size, nesting depth, values, string length.

``json.loads`` builds every object before anything can be checked: a 20 MB gzip of ``[],[],...``
becomes 80 million lists (4 GB) and a spec nested 10,000 deep raises RecursionError. Here the
bytes are streamed (gunzipped through a capped stream when they are gzip) and *scanned* as they
arrive, before any Python object is built: :class:`JSONScanner` tracks strings and escapes with
numpy over each chunk, and refuses, naming the offset, a byte that cannot be JSON there (a NUL,
``/dev/zero``...), nesting deeper than ``max_depth``, more than ``max_values`` values (commas
plus containers: what the parsed objects would cost), or a string longer than ``max_string``.
Only a file that passes is parsed, with duplicate keys refused and NaN/Infinity kept as markers
(or refused) by the caller's hooks.

Sources: a regular file, a FIFO or pipe (``/dev/stdin`` from a shell pipe: streamed under the
same caps), never a character or block device (``/dev/zero``, a terminal) or a folder.

:func:`read_json_bounded` is the reader for spec and trial files (the CLI and the trial
loader); :func:`read_bytes_bounded` the streaming part that the export reader
(:mod:`lrbench_gui.core.db.document`) builds on. Every refusal is one line, a
:class:`JSONBoundsError` naming the file.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "JSONBoundsError",
    "JSONScanner",
    "read_bytes_bounded",
    "read_json_bounded",
    "parse_bounded",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_JSON_VALUES",
    "MAX_JSON_STRING",
]

#: defaults of :func:`read_json_bounded` (a spec or trial file is a few KB)
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 1_000_000
MAX_JSON_STRING = 1024 * 1024
CHUNK = 1 << 20

# Bytes the scanner lets through outside strings: white space and printable ASCII. Binary
# bytes (NUL, other controls, DEL, anything >= 0x80) are refused at once; a printable byte
# JSON does not allow there is left for the parser, whose message gives its line and column.
_OUTSIDE = np.zeros(256, dtype=bool)
_OUTSIDE[0x20:0x7F] = True
for _c in b"\t\r\n":
    _OUTSIDE[_c] = True
_QUOTE, _BACKSLASH = 0x22, 0x5C


class JSONBoundsError(ValueError):
    """A file refused before (or while) it is parsed; ``str()`` is one line naming it
    (``name: message``)."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")


class JSONScanner:
    """Feed it the bytes of one JSON text, chunk by chunk; it raises :class:`JSONBoundsError`
    as soon as they break a bound, before anything is parsed.

    It is not a validator (``json.loads`` reports malformed text afterwards, with line and
    column); it only guarantees that what reaches the parser is bounded. ``records`` counts the
    containers opened at depth 2: the records of an export document's tables.
    """

    def __init__(self, name: str, *, max_depth: int, max_values: int, max_string: int) -> None:
        self.name = name
        self.max_depth = max_depth
        self.max_values = max_values
        self.max_string = max_string
        self.offset = 0
        self.depth = 0
        self.values = 0
        self.records = 0
        self.in_string = False
        self.string_start = 0  # offset of the open string's quote
        self.backslashes = 0  # backslashes ending the previous chunk

    def _fail(self, message: str) -> None:
        raise JSONBoundsError(self.name, message)

    def feed(self, chunk: bytes) -> None:
        n = len(chunk)
        if not n:
            return
        b = np.frombuffer(chunk, dtype=np.uint8)
        if self.offset == 0 and chunk[:3] == b"\xef\xbb\xbf":
            b = b.copy()
            b[:3] = 0x20  # a UTF-8 byte order mark reads as white space
        bs = b == _BACKSLASH
        quotes = b == _QUOTE
        if bs.any() or self.backslashes:
            pos = np.arange(n, dtype=np.int64)
            last_other = np.maximum.accumulate(np.where(bs, -1, pos))
            run = np.empty(n, dtype=np.int64)  # backslashes right before each byte
            run[0] = self.backslashes
            run[1:] = pos[1:] - 1 - last_other[:-1]
            run[1:] += np.where(last_other[:-1] < 0, self.backslashes, 0)
            quotes &= (run & 1) == 0
            self.backslashes = int(run[-1] + 1) if bs[-1] else 0
        qpos = np.flatnonzero(quotes)
        # inside[i]: byte i is inside a string (an opening quote counts as inside, a closing one not)
        parity = np.cumsum(quotes, dtype=np.int32)
        inside = ((parity + int(self.in_string)) & 1).astype(bool)
        inside |= quotes & ~inside  # a closing quote: part of its string, not structure
        outside = ~inside
        bad_out = outside & ~_OUTSIDE[b]
        bad_in = inside & (b < 0x20)
        if bad_out.any() or bad_in.any():
            i = int(np.flatnonzero(bad_out | bad_in)[0])
            where = "inside a string" if bad_in[i] else "outside a string"
            self._fail(f"is not JSON text (byte 0x{int(b[i]):02x} {where} at offset {self.offset + i})")
        self._strings(qpos, n)
        opens = outside & ((b == 0x5B) | (b == 0x7B))
        closes = outside & ((b == 0x5D) | (b == 0x7D))
        if opens.any() or closes.any():
            step = opens.astype(np.int64) - closes.astype(np.int64)
            depth = self.depth + np.cumsum(step)
            top = int(depth.max())
            if top > self.max_depth:
                i = int(np.flatnonzero(depth > self.max_depth)[0])
                self._fail(f"nests deeper than {self.max_depth} levels (at offset {self.offset + i}); refused before parsing")
            self.records += int(np.count_nonzero(opens & (depth == 3)))
            self.depth = int(depth[-1])
        self.values += int(np.count_nonzero(opens)) + int(np.count_nonzero(outside & (b == 0x2C)))
        if self.values > self.max_values:
            self._fail(f"holds more than {self.max_values:,} JSON values; refused before parsing")
        self.offset += n

    def _strings(self, qpos: np.ndarray, n: int) -> None:
        """Carry the open string across chunks and bound each string's length."""
        q = qpos.astype(np.int64) + self.offset
        if self.in_string:
            q = np.concatenate((np.array([self.string_start], dtype=np.int64), q))
        self.in_string = bool(len(q) % 2)
        if self.in_string:
            self.string_start = int(q[-1])
            q = q[:-1]
        if len(q) and int((q[1::2] - q[0::2]).max()) - 1 > self.max_string:
            self._fail(f"holds a string longer than {self.max_string:,} bytes; refused before parsing")
        if self.in_string and self.offset + n - self.string_start - 1 > self.max_string:
            self._fail(f"holds a string longer than {self.max_string:,} bytes; refused before parsing")

    def finish(self) -> None:
        """After the last chunk (an unterminated string was bounded as it grew)."""


def _source(path: Path, name: str) -> tuple[Any, bool]:
    """An open binary file for ``path`` and whether it is a regular file; refuse devices."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise JSONBoundsError(name, f"cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise JSONBoundsError(name, "is a folder, not a file")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        what = "a terminal" if os.path.realpath(path).startswith("/dev/pts") or path.name in ("tty", "stdin") else "a device"
        raise JSONBoundsError(name, f"is {what}, not a file; give a file, or pipe one in")
    try:
        return open(path, "rb"), stat.S_ISREG(st.st_mode)
    except OSError as exc:
        raise JSONBoundsError(name, f"cannot be read: {exc.strerror or exc}") from None


def read_bytes_bounded(
    path: Path,
    *,
    max_bytes: int,
    scanner: JSONScanner | None = None,
    gzip_ok: bool = True,
    max_ratio: float | None = None,
    ratio_after: int = 0,
    name: str | None = None,
) -> bytes:
    """The bytes of ``path`` (gunzipped when they start with the gzip magic and ``gzip_ok``),
    read in chunks, each fed to ``scanner``; refused in one line past ``max_bytes`` (checked
    while decompressing), past ``max_ratio`` (decompressed/compressed, once past
    ``ratio_after`` bytes), or when the scanner refuses them."""
    path = Path(path)
    name = name or str(path)
    f, regular = _source(path, name)
    with f:
        head = f.read(2)
        is_gz = gzip_ok and head == b"\x1f\x8b"
        if path.name.endswith(".gz") and not is_gz:
            raise JSONBoundsError(name, "is named .gz but is not a gzip file")
        if regular and not is_gz:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise JSONBoundsError(name, f"is {size} bytes; the limit is {max_bytes}")
        chunks: list[bytes] = []
        total = 0

        def take(chunk: bytes) -> None:
            nonlocal total
            total += len(chunk)
            if total > max_bytes:
                what = "decompresses to" if is_gz else "holds"
                raise JSONBoundsError(name, f"{what} more than {max_bytes} bytes{' (a size bomb?)' if is_gz else ''}; refused")
            if scanner is not None:
                scanner.feed(chunk)
            chunks.append(chunk)

        if is_gz:
            raw = _Prefixed(head, f)
            try:
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:  # type: ignore[arg-type]
                    while chunk := gz.read(CHUNK):
                        take(chunk)
                        if max_ratio is not None and total > ratio_after and total > max_ratio * max(1, raw.consumed):
                            raise JSONBoundsError(name, f"decompresses more than {max_ratio:g} times its size (a size bomb?); refused")
            except (OSError, EOFError, zlib.error) as exc:
                raise JSONBoundsError(name, f"is not a valid gzip file ({exc or type(exc).__name__}); truncated?") from None
        else:
            if head:
                take(head)
            while chunk := f.read(CHUNK):
                take(chunk)
    if scanner is not None:
        scanner.finish()
    return b"".join(chunks)


class _Prefixed:
    """A read-only stream of ``head`` then the rest of ``f`` (a pipe cannot seek back)."""

    def __init__(self, head: bytes, f: Any) -> None:
        self._head = head
        self._f = f
        self.consumed = 0

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head, b""
            if n is not None and n >= 0 and n > len(out):
                out += self._f.read(n - len(out))
        else:
            out = self._f.read(n)
        self.consumed += len(out)
        return out

    def readable(self) -> bool:
        return True


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _DuplicateKey(key)
    return d


def _no_constant(text: str) -> Any:
    raise _DuplicateKey.__base__(f"{text} is not a JSON number")  # ValueError


def parse_bounded(
    data: bytes,
    name: str,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """``json.loads`` of scanned bytes, every failure one :class:`JSONBoundsError` line.

    By default an object naming a key twice and NaN/Infinity are refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JSONBoundsError(name, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook or _unique_pairs, parse_constant=parse_constant or _no_constant)
    except _DuplicateKey as exc:
        key = str(exc.args[0])
        shown = key if len(key) <= 60 else key[:57] + "..."
        raise JSONBoundsError(name, f"an object names the key {shown!r} more than once") from None
    except json.JSONDecodeError as exc:
        hint = " (the file ends too early: truncated?)" if exc.pos >= len(exc.doc) - 1 else ""
        raise JSONBoundsError(name, f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}") from None
    except (ValueError, RecursionError) as exc:
        raise JSONBoundsError(name, f"{str(exc)[:200] or 'nests too deeply'}") from None


def read_json_bounded(
    path: str | os.PathLike,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    max_values: int = MAX_JSON_VALUES,
    max_string: int = MAX_JSON_STRING,
    name: str | None = None,
    parse_constant: Callable[[str], Any] | None = None,
) -> Any:
    """Read a small untrusted JSON file (a policy spec, a trial file) within bounds.

    Refuses in one line (:class:`JSONBoundsError`, naming the file): a device, a folder, more
    than ``max_bytes`` (a pipe is read until then, no further), nesting deeper than
    ``max_depth``, more than ``max_values`` values, a string longer than ``max_string`` bytes,
    bytes that are not JSON text, non-UTF-8 text, malformed JSON, a key named twice in one
    object, NaN or Infinity (``parse_constant=float`` keeps those as floats, for a caller whose
    own validation names the field). Nothing is built before the bounds hold.
    """
    p = Path(path)
    label = name or str(p)
    scanner = JSONScanner(label, max_depth=max_depth, max_values=max_values, max_string=max_string)
    data = read_bytes_bounded(p, max_bytes=max_bytes, scanner=scanner, gzip_ok=False, name=label)
    return parse_bounded(data, label, parse_constant=parse_constant)
