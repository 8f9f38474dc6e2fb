"""Curves as the policy database stores them: bounded, packed, and hashed by content.

A trial's LR and loss curves are (step, value) series. Stored as JSON number lists, 10,000 trials
of two 1,000-point curves would take ~400 MB of text, so the database keeps each curve *packed*:

    {"encoding": "varint-f32shuffle-zlib", "n": 1000, "steps": "<base64>", "values": "<base64>"}

``steps``: the first step, then the differences between steps, each as an unsigned LEB128
varint (7 bits a byte, low group first, high bit set on all but the last byte), zlib-compressed,
base64. ``values``: little-endian float32, byte-shuffled (all first bytes, then all second
bytes...), zlib-compressed, base64. Shuffling puts the slowly changing sign and exponent bytes
side by side, which lets zlib shrink a float curve to 1 to 3 bytes a point. Float32 keeps 7 significant digits,
plenty for a plotted curve (summary metrics stay full float64 JSON numbers).

Any curve is also accepted *plain*, ``{"steps": [0, 10, ...], "values": [2.3, 2.1, ...]}``, and
packed on the way in. A curve longer than :data:`MAX_STORED_POINTS` is downsampled keeping the
first and last points and the minimum and maximum of every bucket, so spikes and the best loss
survive. The content digest of a curve is computed over the decoded arrays, never over the
compressed bytes, so two zlib builds that compress differently still agree on a record's hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import zlib
from typing import Any

import numpy as np

from lrbench_gui.core.db.fields import type_name as _type_name

__all__ = [
    "CurveError",
    "Curve",
    "ENCODING",
    "MAX_STORED_POINTS",
    "MAX_INPUT_POINTS",
    "MAX_PACKED_CHARS",
    "pack",
    "unpack",
    "normalize_curve",
    "downsample",
    "finite_curve",
    "curve_digest",
]

ENCODING = "varint-f32shuffle-zlib"
#: Points kept per stored curve.
MAX_STORED_POINTS = 1000
#: Points accepted per curve in an import or an add (then downsampled).
MAX_INPUT_POINTS = 100_000
#: Longest base64 string accepted for a packed array.
MAX_PACKED_CHARS = 2_000_000

_F32 = np.dtype("<f4")
_I64 = np.dtype("<i8")
_F32_MAX = float(np.finfo(np.float32).max)


class CurveError(ValueError):
    """A curve that cannot be stored; ``field`` is relative to the curve (``values[12]``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class Curve:
    """A validated curve: int64 steps (strictly increasing, >= 0) and finite float32 values."""

    __slots__ = ("steps", "values", "_packed")

    def __init__(self, steps: np.ndarray, values: np.ndarray, packed: dict[str, Any] | None = None) -> None:
        self.steps = steps
        self.values = values
        self._packed = packed

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    def packed(self) -> dict[str, Any]:
        """The stored form; a packed input that needed no change is kept byte for byte."""
        if self._packed is None:
            self._packed = pack(self.steps, self.values)
        return self._packed

    def digest(self) -> str:
        return curve_digest(self.steps, self.values)


def _shuffle(arr: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(arr).view(np.uint8).reshape(arr.shape[0], arr.dtype.itemsize)
    return raw.T.tobytes()


def _unshuffle(data: bytes, n: int, dtype: np.dtype) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(dtype.itemsize, n)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(n)


def _varint_encode(values: np.ndarray) -> bytes:
    """Unsigned LEB128 of non-negative int64 values, vectorized."""
    v = values.astype(np.uint64)
    if not len(v) or int(v.max()) < 0x80:
        return v.astype(np.uint8).tobytes()
    nbytes = np.ones(len(v), dtype=np.int64)
    rest = v >> np.uint64(7)
    while rest.any():
        nbytes += rest > 0
        rest >>= np.uint64(7)
    offsets = np.cumsum(nbytes) - nbytes
    out = np.empty(int(nbytes.sum()), dtype=np.uint8)
    for k in range(int(nbytes.max())):
        mask = nbytes > k
        group = ((v[mask] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        more = (nbytes[mask] > k + 1).astype(np.uint8) << 7
        out[offsets[mask] + k] = group | more
    return out.tobytes()


def _varint_decode(raw: bytes, n: int, field: str) -> np.ndarray:
    """Exactly ``n`` LEB128 values (each < 2**63) from ``raw``; CurveError otherwise."""
    b = np.frombuffer(raw, dtype=np.uint8)
    if b.shape[0] == n:  # every value below 128, the usual case
        if n and int(b.max()) >= 0x80:
            raise CurveError(field, f"does not decode to exactly {n} varints")
        return b.astype(_I64)
    last = (b & 0x80) == 0
    ends = np.flatnonzero(last)
    if ends.shape[0] != n or (b.shape[0] and not last[-1]):
        raise CurveError(field, f"does not decode to exactly {n} varints")
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > 9:  # 9 groups of 7 bits hold any value below 2**63
        raise CurveError(field, "holds a step difference of 2**63 or more")
    pos = np.arange(b.shape[0], dtype=np.int64) - np.repeat(starts, lengths)
    parts = (b & 0x7F).astype(_I64) << (7 * pos)
    return np.add.reduceat(parts, starts).astype(_I64)


def _b64z(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def pack(steps: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """The packed form of validated arrays (see the module docstring)."""
    steps = np.asarray(steps, dtype=_I64)
    values = np.asarray(values, dtype=_F32)
    deltas = np.diff(steps, prepend=np.zeros(1, dtype=_I64)).astype(_I64) if len(steps) else steps
    return {
        "encoding": ENCODING,
        "n": int(steps.shape[0]),
        "steps": _b64z(_varint_encode(deltas)),
        "values": _b64z(_shuffle(values)),
    }


def _inflate(text: Any, field: str, max_bytes: int, exact: int | None) -> bytes:
    if not isinstance(text, str):
        raise CurveError(field, f"must be a base64 string, got {_type_name(text)}")
    if len(text) > MAX_PACKED_CHARS:
        raise CurveError(field, f"is {len(text)} characters long; the limit is {MAX_PACKED_CHARS}")
    try:
        compressed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CurveError(field, f"is not valid base64 ({exc})") from None
    inflater = zlib.decompressobj()
    try:
        # max_length caps the output, so a zlib bomb inside a curve inflates no further than this.
        raw = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error as exc:
        raise CurveError(field, f"is not valid zlib data ({exc})") from None
    if len(raw) > max_bytes or (exact is not None and len(raw) != exact) or not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise CurveError(field, "does not decode to the number of points given by n" if exact is not None else "does not decode to n step numbers")
    return raw


def unpack(obj: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The (steps, values) arrays of a stored curve. Trusts the structure (it was validated)."""
    n = int(obj["n"])
    deltas = _varint_decode(zlib.decompress(base64.b64decode(obj["steps"])), n, "steps")
    values = _unshuffle(zlib.decompress(base64.b64decode(obj["values"])), n, _F32)
    return np.cumsum(deltas, dtype=_I64), values


def _check_arrays(steps: np.ndarray, values: np.ndarray) -> None:
    if steps.shape[0] and steps[0] < 0:
        raise CurveError("steps[0]", f"must be >= 0, got {int(steps[0])}")
    if steps.shape[0] > 1:
        bad = np.nonzero(np.diff(steps) <= 0)[0]
        if bad.size:
            i = int(bad[0]) + 1
            raise CurveError(f"steps[{i}]", f"must be greater than the step before ({int(steps[i - 1])}), got {int(steps[i])}")
    finite = np.isfinite(values)
    if not finite.all():
        i = int(np.nonzero(~finite)[0][0])
        raise CurveError(f"values[{i}]", f"must be a finite number, got {values[i]}")


def _plain_list(items: Any, field: str, kind: str) -> np.ndarray:
    if not isinstance(items, list):
        raise CurveError(field, f"must be a list of numbers, got {_type_name(items)}")
    if len(items) > MAX_INPUT_POINTS:
        raise CurveError(field, f"has {len(items)} points; the limit is {MAX_INPUT_POINTS}")
    allowed = {int} if kind == "int" else {int, float}
    if not set(map(type, items)) <= allowed:
        for i, v in enumerate(items):
            if type(v) not in allowed:
                what = "a whole step number" if kind == "int" else "a finite number"
                raise CurveError(f"{field}[{i}]", f"must be {what}, got {_type_name(v)}")
    if kind == "int":
        if items and (max(items) >= 2**62 or min(items) < 0):
            i = next(i for i, v in enumerate(items) if v < 0 or v >= 2**62)
            raise CurveError(f"{field}[{i}]", f"must be a step number in [0, 2**62), got {items[i]}")
        return np.array(items, dtype=_I64)
    arr64 = np.array(items, dtype=np.float64)
    ok = np.isfinite(arr64) & (np.abs(arr64) <= _F32_MAX)
    if not ok.all():
        i = int(np.nonzero(~ok)[0][0])
        v = items[i]
        why = "a finite number" if not math.isfinite(v) else "within the float32 range (|x| <= 3.4e38)"
        raise CurveError(f"{field}[{i}]", f"must be {why}, got {v!r}")
    return arr64.astype(_F32)


def normalize_curve(obj: Any, max_points: int = MAX_STORED_POINTS) -> Curve:
    """Validate a plain or packed curve and bound it to ``max_points``. Raises :class:`CurveError`."""
    if not isinstance(obj, dict):
        raise CurveError("", f"must be an object with steps and values, got {_type_name(obj)}")
    if "encoding" in obj:
        extra = set(obj) - {"encoding", "n", "steps", "values"}
        if extra:
            raise CurveError(sorted(extra)[0], "unknown field in a packed curve (allowed: encoding, n, steps, values)")
        for key in ("n", "steps", "values"):
            if key not in obj:
                raise CurveError(key, "missing required field")
        if obj["encoding"] != ENCODING:
            raise CurveError("encoding", f"unknown curve encoding {obj['encoding']!r} (known: {ENCODING})")
        n = obj["n"]
        if type(n) is not int or not 0 <= n <= MAX_INPUT_POINTS:
            raise CurveError("n", f"must be a whole number in [0, {MAX_INPUT_POINTS}], got {_type_name(n) if type(n) is not int else n}")
        deltas = _varint_decode(_inflate(obj["steps"], "steps", 9 * n, None), n, "steps")
        values = _unshuffle(_inflate(obj["values"], "values", 4 * n, 4 * n), n, _F32)
        if n:
            # Deltas: the first step >= 0, then each step above the one before, so no diff pass.
            if deltas[0] < 0 or (n > 1 and deltas[1:].min() <= 0):
                i = 0 if deltas[0] < 0 else int(np.nonzero(deltas[1:] <= 0)[0][0]) + 1
                raise CurveError(f"steps[{i}]", "steps must start at >= 0 and strictly increase")
            # Every delta is in (0, 2**62] only if the total is; check before summing can wrap.
            if deltas.max() >= 2**62 // max(1, n) and int(deltas.astype(object).sum()) >= 2**62:
                raise CurveError("steps", "step numbers must stay below 2**62")
        steps = np.cumsum(deltas, dtype=_I64)
        if not np.isfinite(values).all():
            i = int(np.nonzero(~np.isfinite(values))[0][0])
            raise CurveError(f"values[{i}]", f"must be a finite number, got {values[i]}")
        if n > max_points:
            steps, values = downsample(steps, values, max_points)
            return Curve(steps, values)
        # Keep the packed strings as they came: a re-export is then byte-identical.
        kept = {"encoding": ENCODING, "n": n, "steps": obj["steps"], "values": obj["values"]}
        return Curve(steps, values, kept)
    extra = set(obj) - {"steps", "values"}
    if extra:
        raise CurveError(sorted(extra)[0], "unknown field in a curve (allowed: steps, values; or a packed curve)")
    for key in ("steps", "values"):
        if key not in obj:
            raise CurveError(key, "missing required field")
    steps = _plain_list(obj["steps"], "steps", "int")
    values = _plain_list(obj["values"], "values", "float")
    if steps.shape[0] != values.shape[0]:
        raise CurveError("values", f"has {values.shape[0]} points but steps has {steps.shape[0]}")
    _check_arrays(steps, values)
    if steps.shape[0] > max_points:
        steps, values = downsample(steps, values, max_points)
    return Curve(steps, values)


def downsample(steps: np.ndarray, values: np.ndarray, max_points: int = MAX_STORED_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points: the first, the last, and each bucket's minimum and maximum
    (the first of equal ones). Vectorized: a 100,000-point curve takes about a millisecond."""
    n = int(steps.shape[0])
    if n <= max_points:
        return steps, values
    if max_points < 4:
        raise ValueError("max_points must be >= 4")
    buckets = (max_points - 2) // 2
    edges = np.linspace(1, n - 1, buckets + 1).astype(np.int64)
    starts = edges[:-1][edges[1:] > edges[:-1]]  # empty buckets dropped: the rest stay contiguous
    rel = int(starts[0])
    part = values[rel : n - 1]
    idx0 = starts - rel
    owner = np.repeat(np.arange(idx0.shape[0], dtype=np.int32), np.diff(np.append(idx0, part.shape[0])))
    pos = np.arange(part.shape[0], dtype=np.int32)
    keep = [np.array([0, n - 1], dtype=np.int64)]
    for reduce in (np.minimum, np.maximum):
        best = reduce.reduceat(part, idx0)
        # the first position of each bucket that holds its extreme (argmin/argmax, bucket-wise)
        first = np.minimum.reduceat(np.where(part == best[owner], pos, part.shape[0]), idx0)
        keep.append(first.astype(np.int64) + rel)
    idx = np.unique(np.concatenate(keep))
    return steps[idx], values[idx]


def finite_curve(steps: Any, values: Any) -> dict[str, list]:
    """A plain curve from a run's raw series, dropping non-finite points (a diverged loss).

    The database refuses NaN and infinity; a recorder calls this so a diverged trial keeps its
    curve up to the last finite point instead of being refused.
    """
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(v) & (np.abs(v) <= _F32_MAX)
    return {"steps": [int(x) for x in s[ok]], "values": [float(x) for x in v[ok]]}


def curve_digest(steps: np.ndarray, values: np.ndarray) -> str:
    """sha256 of the int64 LE steps followed by the float32 LE values."""
    if steps.dtype != _I64 or not steps.flags.c_contiguous:
        steps = np.ascontiguousarray(steps, dtype=_I64)
    if values.dtype != _F32 or not values.flags.c_contiguous:
        values = np.ascontiguousarray(values, dtype=_F32)
    h = hashlib.sha256(steps.data)
    h.update(values.data)
    return h.hexdigest()
