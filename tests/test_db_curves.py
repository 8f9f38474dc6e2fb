"""Curve packing: exact round trips, bounded size, a digest that ignores how zlib compressed."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest

from lrbench_gui.core.db import curves as dc


@pytest.mark.parametrize(
    "steps",
    [
        [0, 1, 2, 3],
        [5, 200, 70_000, 2**40, 2**61],
        [],
        [127, 128, 16_383, 16_384, 2_000_000],
    ],
)
def test_pack_unpack_round_trip(steps):
    values = np.linspace(-3, 3, len(steps)).astype(np.float32)
    packed = dc.pack(np.array(steps, dtype=np.int64), values)
    assert packed["n"] == len(steps) and packed["encoding"] == dc.ENCODING
    back_steps, back_values = dc.unpack(packed)
    assert back_steps.tolist() == steps and back_values.tolist() == values.tolist()
    curve = dc.normalize_curve(packed)
    assert curve.packed() == packed  # kept as it came


def test_plain_and_packed_forms_have_the_same_digest():
    steps, values = list(range(0, 500, 5)), [float(v) for v in np.exp(-np.arange(100) / 30)]
    plain = dc.normalize_curve({"steps": steps, "values": values})
    packed = dc.normalize_curve(plain.packed())
    assert plain.digest() == packed.digest()


def test_digest_does_not_depend_on_the_compressor():
    steps = np.arange(0, 1000, 10, dtype=np.int64)
    values = np.random.default_rng(0).random(100).astype(np.float32)
    a = dc.pack(steps, values)
    b = dict(a, values=base64.b64encode(zlib.compress(zlib.decompress(base64.b64decode(a["values"])), 1)).decode())
    assert a["values"] != b["values"]
    assert dc.normalize_curve(a).digest() == dc.normalize_curve(b).digest()


def test_a_typical_curve_packs_small():
    steps = np.arange(0, 10_000, 10, dtype=np.int64)
    loss = (0.3 + 2 * np.exp(-steps / 2000) + np.random.default_rng(1).normal(0, 0.02, len(steps))).astype(np.float32)
    packed = dc.pack(steps, loss)
    plain = len(str(steps.tolist())) + len(str(loss.astype(float).tolist()))
    packed_size = len(packed["steps"]) + len(packed["values"])
    assert packed_size < 4.5 * 1000 and packed_size * 5 < plain  # noisy float32 mantissas stay ~3 bytes


def test_downsample_keeps_ends_and_extremes():
    steps = np.arange(20_000, dtype=np.int64)
    values = np.sin(steps / 300.0).astype(np.float32)
    values[7777] = 50.0
    values[12_345] = -50.0
    s, v = dc.downsample(steps, values, 1000)
    assert len(s) <= 1000 and s[0] == 0 and s[-1] == 19_999
    assert 7777 in s and 12_345 in s and np.all(np.diff(s) > 0)
    assert dc.downsample(steps[:10], values[:10], 1000)[0].tolist() == list(range(10))


@pytest.mark.parametrize(
    "curve, field, fragment",
    [
        ({"steps": [0, 1], "values": [1.0, float("nan")]}, "values[1]", "finite"),
        ({"steps": [0, 1], "values": [1.0, 1e39]}, "values[1]", "float32 range"),
        ({"steps": [0, 0], "values": [1.0, 2.0]}, "steps[1]", "greater than"),
        ({"steps": [-1], "values": [1.0]}, "steps[0]", "[0, 2**62)"),
        ({"steps": [0.5], "values": [1.0]}, "steps[0]", "whole step number"),
        ({"steps": [0]}, "values", "missing"),
        ({"steps": [0], "values": [1], "x": 1}, "x", "unknown field"),
        ({"encoding": "other", "n": 1, "steps": "", "values": ""}, "encoding", "unknown curve encoding"),
        ({"encoding": dc.ENCODING, "n": -1, "steps": "", "values": ""}, "n", "whole number"),
        ({"encoding": dc.ENCODING, "n": 2, "steps": base64.b64encode(zlib.compress(b"\x00\x00")).decode(), "values": base64.b64encode(zlib.compress(b"\0" * 8)).decode()}, "steps[1]", "strictly increase"),
        ({"encoding": dc.ENCODING, "n": 2, "steps": base64.b64encode(zlib.compress(b"\x00")).decode(), "values": base64.b64encode(zlib.compress(b"\0" * 8)).decode()}, "steps", "does not decode"),
        ({"encoding": dc.ENCODING, "n": 1, "steps": base64.b64encode(zlib.compress(b"\x80" * 10 + b"\x01")).decode(), "values": ""}, "steps", "does not decode"),
        ({"encoding": dc.ENCODING, "n": 1, "steps": base64.b64encode(zlib.compress(b"\x00")).decode(), "values": base64.b64encode(zlib.compress(np.array([np.inf], "<f4").tobytes())).decode()}, "values[0]", "finite"),
        ({"encoding": dc.ENCODING, "n": 1, "steps": "x" * (dc.MAX_PACKED_CHARS + 1), "values": ""}, "steps", "the limit"),
    ],
)
def test_bad_curves(curve, field, fragment):
    with pytest.raises(dc.CurveError) as info:
        dc.normalize_curve(curve)
    assert info.value.field == field and fragment in info.value.message


def test_finite_curve_drops_the_diverged_tail():
    out = dc.finite_curve([0, 1, 2, 3], [2.0, 1.0, float("nan"), float("inf")])
    assert out == {"steps": [0, 1], "values": [2.0, 1.0]}
