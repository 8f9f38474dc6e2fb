"""A trial's identity: one label source, distinguishing short labels, one stable colour."""

from __future__ import annotations

import subprocess
import sys

from lrbench_gui.core.records import spec_label
from lrbench_gui.qt.identity import PALETTE, short_labels, trial_colour, trial_key, trial_label


def _luminance(hex_colour: str) -> float:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_palette_reads_on_both_themes_and_colours_are_stable_across_processes():
    assert len(set(PALETTE)) == len(PALETTE) >= 12
    for colour in PALETTE:
        assert _contrast(colour, "#ffffff") >= 2.9, colour  # the light plots' background
        assert _contrast(colour, "#15181c") >= 3.0, colour  # the dark plots' background
    ids = [f"study-{i}" for i in range(40)]
    here = [trial_colour(t) for t in ids]
    assert len(set(here)) >= 10  # spread over the palette, not one colour
    # a study's numbered trials (random r0000..., grid, bayes, halving configs) never share a
    # colour among their first 16; a halving config keeps its colour from rung to rung
    for pattern in ("s-1a2b3c-r{:04d}", "s-9f8e7d-g{:04d}", "s-000000-h{:03d}.r0", "s-abc-bo-{:02d}"):
        assert len({trial_colour(pattern.format(i)) for i in range(16)}) == 16, pattern
    assert trial_colour("s-0-h003.r0") == trial_colour("s-0-h003.r2")
    code = "from lrbench_gui.qt.identity import trial_colour; print(' '.join(trial_colour(f'study-{i}') for i in range(40)))"
    # a new process has another str hash seed: the colour must not depend on it
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123"}).stdout.split()
    assert other == here


def test_labels_are_the_same_with_or_without_the_registry(registry):
    from lrbench_gui.core.spec import parse_spec

    for name in sorted(registry.policies):  # lr_range's LR is its min_lr either way
        spec = parse_spec({"name": name}, registry).to_json()
        assert spec_label(spec, registry) == spec_label(spec), name


def test_short_labels_name_what_differs(registry):
    step = {"name": "step", "params": {"lr": 0.1, "gamma": 0.5, "step_size": 30}}
    records = [
        {"id": "s-a", "policy": step, "seed": 0},
        {"id": "s-b", "policy": {**step, "params": {**step["params"], "gamma": 0.1}}, "seed": 0},
        {"id": "s-c", "policy": {"name": "cosine", "params": {"lr": 0.1}}},
    ]
    # a horizon study: one LR, two horizons, two seeds; the warmup follows the horizon
    for h in (100, 1000):
        for s in (0, 1):
            records.append({"id": f"hz-h{h}-lr1e-3-s{s}", "seed": s, "budget": {"steps": h},
                            "policy": {"name": "cosine", "params": {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": h // 20}}})
    records += [{"trial": "x-1", "policy": {"name": "fixed", "params": {"lr": 0.1}}},
                {"trial": "x-2", "policy": {"name": "fixed", "params": {"lr": 0.1}}}]
    labels = short_labels(records, registry)
    assert labels["s-a"] == "step(lr=0.1, gamma=0.5)" and labels["s-b"] == "step(lr=0.1, gamma=0.1)"
    assert labels["s-c"] == "cosine(lr=0.1)"  # alone: the plain label
    assert labels["hz-h100-lr1e-3-s0"] == "cosine(lr=0.001) @100 steps seed 0"
    assert labels["hz-h1000-lr1e-3-s1"] == "cosine(lr=0.001) @1000 steps seed 1"  # not warmup_steps
    assert labels["x-1"] == "fixed(lr=0.1) · 1" and labels["x-2"] == "fixed(lr=0.1) · 2"
    assert len(set(labels.values())) == len(labels)
    full = trial_label(records[0], registry)
    assert full.startswith("step(lr=0.1, gamma=0.5, step_size=30)") and "seed 0" in full
    assert trial_label(records[0], registry, short=True) == spec_label(step, registry)
    assert trial_key("hz-h100-lr1e-3-s0", "hz") == "h100-lr1e-3-s0"


def test_a_composition_label_shows_the_stage_parameter_that_differs(registry):
    def seq(lr: float) -> dict:
        return {"sequence": [{"name": "constant_warmup", "params": {"lr": 0.01, "warmup_steps": 10}},
                             {"name": "cosine", "params": {"lr": lr}}], "boundaries": [100]}

    labels = short_labels([{"id": "c-1", "policy": seq(0.01)}, {"id": "c-2", "policy": seq(0.001)}], registry)
    assert labels == {"c-1": "constant_warmup -> cosine @100 (1.lr=0.01)",
                      "c-2": "constant_warmup -> cosine @100 (1.lr=0.001)"}
