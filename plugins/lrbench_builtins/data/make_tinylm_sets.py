"""Make the shipped evaluation sets of tinylm-pretrain's synthetic language (``_corpus.py``):

* ``tinylm-mc.jsonl``: multiple choice (question, choices, answer, kind). Words ("the old" ->
  " foxes" or one of three misspellings: what a model learns first), subject-verb agreement
  ("the old foxes" -> " sleep." or " sleeps.", some with a prepositional phrase whose noun has
  the other number, as in the corpus) and arithmetic ("12+7=" -> four sums, one right);
* ``tinylm-gen.jsonl``: generation (prompt, reference): arithmetic, scored by exact match with
  stop ";" ("12+7=" -> "19").

Everything the items say is what the corpus's grammar makes predictable: agreement of the verb
with the subject's number (never with a distractor's), intransitive verbs of the subject's
semantic group, sums in the corpus's number range. Run from anywhere:
``python plugins/lrbench_builtins/data/make_tinylm_sets.py``; the output is a pure function of the
seed below, so rerunning rewrites the same files.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # lrbench_builtins importable from a checkout

from lrbench_builtins.tasks._corpus import _ADJECTIVES, _DET_PLURAL, _DET_SINGULAR, _NOUNS, _PREPOSITIONS, _VERBS  # noqa: E402

SEED = 20260
N_WORDS, N_AGREEMENT, N_ARITH_MC, N_GEN = 50, 50, 30, 50


def _noun_phrase(rng: random.Random, plural: bool, adjective: float = 0.4) -> tuple[str, int]:
    nouns = [n for n in _NOUNS if n[0] != n[1]]  # "sheep" has no number to agree with
    sing, plur, group = rng.choice(nouns)
    det = rng.choice(_DET_PLURAL if plural else _DET_SINGULAR)
    adj = rng.choice(_ADJECTIVES) + " " if rng.random() < adjective else ""
    first = (adj or (plur if plural else sing))[:1]
    if det == "a" and first in "aeiou":
        det = "an"
    return f"{det} {adj}{plur if plural else sing}", group


def _misspell(rng: random.Random, word: str) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    while True:
        w = list(word)
        i = rng.randrange(1, len(w))
        if rng.random() < 0.5 and i < len(w) - 1:
            w[i], w[i + 1] = w[i + 1], w[i]
        else:
            w[i] = rng.choice(letters)
        if "".join(w) != word:
            return "".join(w)


def words(rng: random.Random) -> dict:
    plural = rng.random() < 0.5
    subject, _ = _noun_phrase(rng, plural, adjective=0.0)
    det, noun = subject.split(" ", 1)
    adj = rng.choice(_ADJECTIVES)
    if det in ("a", "an"):
        det = "an" if adj[0] in "aeiou" else "a"
    right = f" {noun}"
    wrong: set[str] = set()
    while len(wrong) < 3:
        wrong.add(f" {_misspell(rng, noun)}")
    choices = [right, *sorted(wrong)]
    rng.shuffle(choices)
    return {"question": f"{det} {adj}", "choices": choices, "answer": choices.index(right), "kind": "words"}


def agreement(rng: random.Random) -> dict:
    plural = rng.random() < 0.5
    subject, group = _noun_phrase(rng, plural)
    if rng.random() < 0.3:  # a distractor of the other number, as in "the dog near the cats"
        pp, _ = _noun_phrase(rng, not plural, 0.0)
        subject += f" {rng.choice(_PREPOSITIONS)} {pp}"
    verbs = [(s, p) for s, p, transitive, groups in _VERBS if not transitive and group in groups]
    sing, plur = rng.choice(verbs)
    choices = [f" {sing}.", f" {plur}."]
    rng.shuffle(choices)
    right = f" {plur if plural else sing}."
    return {"question": subject, "choices": choices, "answer": choices.index(right), "kind": "agreement"}


def _sum(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    if rng.random() < 0.3:
        a, b = max(a, b), min(a, b)
        return f"{a}-{b}=", a - b
    return f"{a}+{b}=", a + b


def arithmetic_mc(rng: random.Random) -> dict:
    question, c = _sum(rng)
    wrong = set()
    while len(wrong) < 3:
        d = c + rng.choice([-10, -2, -1, 1, 2, 10, 11, -11])
        if d >= 0 and d != c:
            wrong.add(d)
    choices = [f"{v};" for v in [c, *sorted(wrong)]]
    rng.shuffle(choices)
    return {"question": question, "choices": choices, "answer": choices.index(f"{c};"), "kind": "arithmetic"}


def main(folder: Path = HERE) -> None:
    """Write both sets into ``folder`` (default: next to this script, where ``builtin:`` finds them)."""
    rng = random.Random(SEED)
    mc = [words(rng) for _ in range(N_WORDS)] + [agreement(rng) for _ in range(N_AGREEMENT)] + [arithmetic_mc(rng) for _ in range(N_ARITH_MC)]
    rng.shuffle(mc)  # kinds mixed, so a limit of N items samples every kind
    gen = []
    for _ in range(N_GEN):
        prompt, c = _sum(rng)
        gen.append({"prompt": prompt, "reference": str(c)})
    for name, rows in (("tinylm-mc", mc), ("tinylm-gen", gen)):
        with (Path(folder) / f"{name}.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
            for row in rows:
                fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        print(f"wrote {Path(folder) / (name + '.jsonl')}: {len(rows)} records")


if __name__ == "__main__":
    main()
