"""A trial's identity in every panel: its colour and its label.

Qt-free (tests and the CLI may import it). A trial's colour comes from a hash of its id, and a
study's trial ids are ``{study}-{key}`` with the tuner's key, which a resumed study asks again:
the same trial has the same colour in Live, Results, Methods and Watch, after a restart and
after a resume. The palette's colours have a contrast of at least 3:1 on both the light and the
dark background, so no curve is pale on white or dim on black.

The labels are :mod:`lrbench_gui.core.labels` (Qt-free, the database's table rows use them
too), re-exported here: :func:`trial_label` in full on hover and in details, and
:func:`short_labels` in tables, short but distinguishing.
"""

from __future__ import annotations

import hashlib
import re

from lrbench_gui.core.labels import record_id, short_labels, trial_key, trial_keys, trial_label

__all__ = ["PALETTE", "trial_colour", "trial_label", "short_labels", "trial_key", "trial_keys", "record_id"]

#: mid-lightness colours of distinct hues (OKLCH lightness 0.55-0.66), readable on white and on
#: the dark plots' #15181c; the first eight are the more saturated
PALETTE = (
    "#3280dd", "#d55753", "#399e43", "#9065d0", "#d77600", "#009ca6", "#c35aa4", "#939300",
    "#0082ad", "#af4f71", "#008b61", "#6466bb", "#a27000", "#009284", "#9558a3", "#5a8325",
)


#: a study's numbered trial: ``{study}-r0003`` (random), ``g0012`` (grid), ``b0004`` (bayes),
#: ``h003.r1`` (halving: config 3 at rung 1), ``bo-02``
_NUMBERED = re.compile(r"^(?P<study>.+)-(?P<kind>[A-Za-z]{1,3})-?(?P<n>\d+)(?:\.r\d+)?$")


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2s(text.encode("utf-8"), digest_size=4).digest(), "big")


def trial_colour(trial_id: str) -> str:
    """The colour of a trial: the same for the same id in every panel, process and resume.

    A numbered trial of a study takes the colour after its predecessor's, from a start the
    study's id hashes to: a study's first eight trials get the eight saturated hues, the next
    eight the eight others, so no two of its first 16 share one (a plain hash of each id gives
    two of eight trials one colour more often than not); any other id is hashed whole."""
    trial_id = str(trial_id)
    m = _NUMBERED.match(trial_id)
    if m is None:
        return PALETTE[_hash(trial_id) % len(PALETTE)]
    n = int(m["n"])
    return PALETTE[(_hash(m["study"] + "-" + m["kind"]) + n) % 8 + 8 * ((n // 8) % 2)]
