"""A seeded synthetic language for tiny language models, generated with numpy only.

The corpus mixes two kinds of items, one after another in a character stream:

* sentences of a small probabilistic grammar: noun phrases with stacked adjectives, an optional
  relative clause (``that sees the dogs``) and prepositional phrase (``near the dogs``),
  singular/plural agreement of determiner, noun and verb across those distractors, ``a``/``an``
  before a vowel, irregular plurals (``mouse``/``mice``), verbs that prefer subjects of one
  semantic group (animals run and swim, people sing and build, things fall and shine), and
  transitive verbs that take an object;
* arithmetic: ``47+117=164;``, ``80-12=68;``, ``9*7=63;``.

Items end with ``.`` or ``;``; about one in ten ends a paragraph with a newline.

A *version* shifts the distribution the way a new data crawl would: the word frequencies of every
word class are permuted, and the share of arithmetic (25-35%), of multiplication, the number range
and the grammar's rates (adjectives, clauses, adverbs) change. Version 0 is the canonical
language. The words and the grammar stay the same in every version, so a model trained on one
version has something to transfer to the next.

Everything is a pure function of ``(seed, version)``: :func:`generate` builds the stream with
vectorised numpy (several million characters a second) and returns token ids of the fixed
character vocabulary :data:`VOCAB` (special tokens, newline, printable ASCII).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "SPECIAL_TOKENS",
    "UNK_ID",
    "VOCAB",
    "Language",
    "language",
    "generate",
    "generate_bytes",
    "generate_text",
    "encode",
    "decode",
    "instruction_records",
]

#: Special tokens, first in the vocabulary: padding, unknown, begin and end of sequence.
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
#: The character vocabulary: special tokens, newline, then printable ASCII (space to ``~``).
VOCAB: tuple[str, ...] = SPECIAL_TOKENS + ("\n",) + tuple(chr(c) for c in range(32, 127))
UNK_ID = 1

_BYTE_TO_ID = np.full(256, UNK_ID, dtype=np.uint8)
_BYTE_TO_ID[10] = VOCAB.index("\n")
_BYTE_TO_ID[32:127] = np.arange(VOCAB.index(" "), VOCAB.index(" ") + 95, dtype=np.uint8)
_ID_TO_BYTE = np.zeros(len(VOCAB), dtype=np.uint8)
_ID_TO_BYTE[_BYTE_TO_ID[10]] = 10
_ID_TO_BYTE[_BYTE_TO_ID[32:127]] = np.arange(32, 127, dtype=np.uint8)

# Nouns as (singular, plural, semantic group); groups: 0 animals, 1 people, 2 things.
_NOUNS = [
    ("cat", "cats", 0), ("dog", "dogs", 0), ("bird", "birds", 0), ("fox", "foxes", 0),
    ("mouse", "mice", 0), ("horse", "horses", 0), ("wolf", "wolves", 0), ("sheep", "sheep", 0),
    ("goose", "geese", 0), ("owl", "owls", 0),
    ("child", "children", 1), ("man", "men", 1), ("woman", "women", 1), ("teacher", "teachers", 1),
    ("farmer", "farmers", 1), ("king", "kings", 1), ("queen", "queens", 1), ("baby", "babies", 1),
    ("box", "boxes", 2), ("tree", "trees", 2), ("river", "rivers", 2), ("house", "houses", 2),
    ("stone", "stones", 2), ("city", "cities", 2), ("garden", "gardens", 2), ("leaf", "leaves", 2),
    ("apple", "apples", 2), ("egg", "eggs", 2),
]
# Verbs as (third person singular, plural, transitive, groups that prefer it).
_VERBS = [
    ("sleeps", "sleep", False, (0,)), ("runs", "run", False, (0, 1)), ("swims", "swim", False, (0,)),
    ("flies", "fly", False, (0,)), ("sings", "sing", False, (1, 0)), ("laughs", "laugh", False, (1,)),
    ("cries", "cry", False, (1,)), ("waits", "wait", False, (1,)), ("falls", "fall", False, (2,)),
    ("shines", "shine", False, (2,)), ("grows", "grow", False, (2,)), ("moves", "move", False, (2, 0)),
    ("sees", "see", True, (0, 1)), ("chases", "chase", True, (0,)), ("eats", "eat", True, (0, 1)),
    ("follows", "follow", True, (0,)), ("likes", "like", True, (1,)), ("has", "have", True, (1, 2)),
    ("finds", "find", True, (1,)), ("watches", "watch", True, (1,)), ("builds", "build", True, (1,)),
    ("carries", "carry", True, (1,)), ("holds", "hold", True, (2,)), ("covers", "cover", True, (2,)),
]
_ADJECTIVES = [
    "big", "small", "old", "young", "red", "green", "happy", "quiet", "dark", "bright", "tall",
    "little", "brown", "cold", "warm", "odd", "empty", "angry",
]
_ADVERBS = ["quickly", "slowly", "often", "quietly", "again", "today", "here", "always"]
_PREPOSITIONS = ["near", "under", "behind", "with", "above", "beside", "from", "by"]
_DET_SINGULAR = ["the", "a", "this", "every", "one"]
_DET_PLURAL = ["the", "some", "these", "many", "two", "all"]
_GROUPS = 3
_MAX_NUMBER = 1999  # largest number any version writes (999 + 999 + 1)
_WIDTH = 21  # slots in one item row, the widest sentence plus the paragraph slot
_BLOCK_ITEMS = 2048  # items generated at a time (~60k characters)


@dataclass(frozen=True)
class Language:
    """The distribution of one version: word-table ids and probabilities (all numpy arrays)."""

    version: int
    arith_share: float
    mul_share: float
    sub_share: float
    number_max: int
    p_plural: float
    p_adj: float
    p_adj2: float
    p_rel: float
    p_pp: float
    p_adv: float
    p_paragraph: float
    # word-table ids
    noun_ids: np.ndarray  # (nouns, 2): singular, plural
    noun_group: np.ndarray
    verb_ids: np.ndarray  # (verbs, 2)
    verb_transitive: np.ndarray
    adj_ids: np.ndarray
    adv_ids: np.ndarray
    prep_ids: np.ndarray
    det_sing_ids: np.ndarray
    det_plur_ids: np.ndarray
    a_id: int
    an_id: int
    that_id: int
    num_ids: np.ndarray  # the word id of each number 0.._MAX_NUMBER
    op_ids: np.ndarray  # +, -, *
    eq_id: int
    semi_id: int
    period_id: int
    newline_id: int
    vowel_initial: np.ndarray  # per word id
    # cumulative probabilities for inverse-CDF sampling
    cdf_noun: np.ndarray
    cdf_adj: np.ndarray
    cdf_adv: np.ndarray
    cdf_prep: np.ndarray
    cdf_det_sing: np.ndarray
    cdf_det_plur: np.ndarray
    cdf_verb_by_group: np.ndarray  # (groups, verbs)
    cdf_trans_by_group: np.ndarray  # (groups, verbs), transitive verbs only
    # the word table: bytes of every word, start and length of each
    buf: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray


def _zipf(n: int, order: np.ndarray, exponent: float = 1.0) -> np.ndarray:
    """Zipf probabilities over ``n`` items, the item ``order[k]`` getting rank ``k``."""
    p = np.empty(n)
    p[order] = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


def _cdf(p: np.ndarray) -> np.ndarray:
    c = np.cumsum(p, axis=-1)
    c[..., -1] = 1.0 + 1e-9  # a uniform draw always falls inside
    return c


@lru_cache(maxsize=64)
def language(version: int) -> Language:
    """The language of ``version`` (cached; version 0 is the canonical one)."""
    if version < 0:
        raise ValueError(f"version must be >= 0, got {version}")
    rng = np.random.default_rng([0x5EED, version])
    if version == 0:
        knobs = dict(arith_share=0.30, mul_share=0.20, sub_share=0.30, number_max=199, p_plural=0.40,
                     p_adj=0.35, p_adj2=0.25, p_rel=0.15, p_pp=0.30, p_adv=0.30)

        def perm(n: int) -> np.ndarray:
            return np.arange(n)
    else:
        u = rng.random(9)
        knobs = dict(
            arith_share=0.25 + 0.10 * u[0], mul_share=0.10 + 0.30 * u[1], sub_share=0.20 + 0.20 * u[2],
            number_max=int((99, 199, 499, 999)[int(u[3] * 4)]), p_plural=0.30 + 0.20 * u[4],
            p_adj=0.20 + 0.30 * u[5], p_adj2=0.15 + 0.20 * u[6], p_rel=0.08 + 0.15 * u[7],
            p_pp=0.20 + 0.20 * u[8], p_adv=0.20 + 0.20 * rng.random(),
        )
        perm = rng.permutation

    words: list[str] = []
    index: dict[str, int] = {}

    def wid(text: str) -> int:
        if text not in index:
            index[text] = len(words)
            words.append(text)
        return index[text]

    # Words carry their trailing space; "." and "\n" later remove the space in front of them.
    noun_ids = np.array([[wid(s + " "), wid(p + " ")] for s, p, _ in _NOUNS])
    noun_group = np.array([g for _, _, g in _NOUNS])
    verb_ids = np.array([[wid(s + " "), wid(p + " ")] for s, p, _, _ in _VERBS])
    verb_transitive = np.array([t for _, _, t, _ in _VERBS])
    adj_ids = np.array([wid(a + " ") for a in _ADJECTIVES])
    adv_ids = np.array([wid(a + " ") for a in _ADVERBS])
    prep_ids = np.array([wid(p + " ") for p in _PREPOSITIONS])
    det_sing_ids = np.array([wid(d + " ") for d in _DET_SINGULAR])
    det_plur_ids = np.array([wid(d + " ") for d in _DET_PLURAL])
    an_id, that_id = wid("an "), wid("that ")
    num_ids = np.array([wid(str(n)) for n in range(_MAX_NUMBER + 1)])
    op_ids = np.array([wid("+"), wid("-"), wid("*")])
    eq_id, semi_id, period_id, newline_id = wid("="), wid("; "), wid(". "), wid("\n")

    encoded = [w.encode("ascii") for w in words]
    lengths = np.array([len(b) for b in encoded], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    buf = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    vowel_initial = np.array([w[:1] in "aeiou" for w in words])

    n_verbs = len(_VERBS)
    verb_order = perm(n_verbs)
    verb_base = _zipf(n_verbs, verb_order, 0.8)
    by_group = np.zeros((_GROUPS, n_verbs))
    trans_by_group = np.zeros((_GROUPS, n_verbs))
    for g in range(_GROUPS):
        prefers = np.array([g in groups for *_, groups in _VERBS], dtype=float)
        p = 0.85 * prefers * verb_base / (prefers * verb_base).sum() + 0.15 / n_verbs
        by_group[g] = p / p.sum()
        pt = p * verb_transitive
        trans_by_group[g] = pt / pt.sum()

    return Language(
        version=version,
        p_paragraph=0.1,
        **knobs,
        noun_ids=noun_ids, noun_group=noun_group, verb_ids=verb_ids, verb_transitive=verb_transitive,
        adj_ids=adj_ids, adv_ids=adv_ids, prep_ids=prep_ids, det_sing_ids=det_sing_ids,
        det_plur_ids=det_plur_ids, a_id=index["a "], an_id=an_id, that_id=that_id, num_ids=num_ids,
        op_ids=op_ids, eq_id=eq_id, semi_id=semi_id, period_id=period_id, newline_id=newline_id,
        vowel_initial=vowel_initial,
        cdf_noun=_cdf(_zipf(len(_NOUNS), perm(len(_NOUNS)))),
        cdf_adj=_cdf(_zipf(len(_ADJECTIVES), perm(len(_ADJECTIVES)))),
        cdf_adv=_cdf(_zipf(len(_ADVERBS), perm(len(_ADVERBS)))),
        cdf_prep=_cdf(_zipf(len(_PREPOSITIONS), perm(len(_PREPOSITIONS)))),
        cdf_det_sing=_cdf(_zipf(len(_DET_SINGULAR), perm(len(_DET_SINGULAR)), 0.7)),
        cdf_det_plur=_cdf(_zipf(len(_DET_PLURAL), perm(len(_DET_PLURAL)), 0.7)),
        cdf_verb_by_group=_cdf(by_group),
        cdf_trans_by_group=_cdf(trans_by_group),
        buf=buf, starts=starts, lengths=lengths,
    )


def _draw(rng: np.random.Generator, cdf: np.ndarray, k: int) -> np.ndarray:
    """``k`` indices drawn from one cumulative distribution."""
    return np.searchsorted(cdf, rng.random(k), side="right")


def _draw_rows(rng: np.random.Generator, cdfs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One index per entry of ``rows``, each from the distribution ``cdfs[row]``."""
    u = rng.random(len(rows))
    return (u[:, None] >= cdfs[rows]).sum(axis=1)


def _noun_phrase(rng: np.random.Generator, lang: Language, k: int, p_adj: float, p_adj2: float):
    """Columns (det, adj1, adj2, noun) of ``k`` noun phrases, with their number and noun index."""
    noun = _draw(rng, lang.cdf_noun, k)
    plural = rng.random(k) < lang.p_plural
    noun_word = lang.noun_ids[noun, plural.astype(np.int64)]
    det = np.where(
        plural,
        lang.det_plur_ids[_draw(rng, lang.cdf_det_plur, k)],
        lang.det_sing_ids[_draw(rng, lang.cdf_det_sing, k)],
    )
    has_adj = rng.random(k) < p_adj
    adj1 = np.where(has_adj, lang.adj_ids[_draw(rng, lang.cdf_adj, k)], -1)
    adj2 = lang.adj_ids[_draw(rng, lang.cdf_adj, k)]
    adj2 = np.where(has_adj & (rng.random(k) < p_adj2) & (adj2 != adj1), adj2, -1)
    following = np.where(has_adj, adj1, noun_word)
    det = np.where((det == lang.a_id) & lang.vowel_initial[following], lang.an_id, det)
    return np.stack([det, adj1, adj2, noun_word], axis=1), plural, noun


def _sentences(rng: np.random.Generator, lang: Language, k: int) -> np.ndarray:
    empty = np.full(k, -1)
    subj, plural, noun = _noun_phrase(rng, lang, k, lang.p_adj, lang.p_adj2)
    form = plural.astype(np.int64)
    group = lang.noun_group[noun]
    # relative clause: "that" + a transitive verb agreeing with the subject + an object
    has_rel = rng.random(k) < lang.p_rel
    rel_verb = lang.verb_ids[_draw_rows(rng, lang.cdf_trans_by_group, group), form]
    rel_obj, _, _ = _noun_phrase(rng, lang, k, 0.0, 0.0)
    rel = np.where(
        has_rel[:, None],
        np.column_stack([np.full(k, lang.that_id), rel_verb, rel_obj[:, 0], rel_obj[:, 3]]),
        -1,
    )
    # prepositional phrase, whose noun's number is a distractor for agreement
    has_pp = (rng.random(k) < lang.p_pp) & ~has_rel
    pp_np, _, _ = _noun_phrase(rng, lang, k, lang.p_adj * 0.5, 0.0)
    pp = np.where(has_pp[:, None], np.column_stack([lang.prep_ids[_draw(rng, lang.cdf_prep, k)], pp_np[:, [0, 1, 3]]]), -1)
    verb = _draw_rows(rng, lang.cdf_verb_by_group, group)
    verb_word = lang.verb_ids[verb, form]
    obj_np, _, _ = _noun_phrase(rng, lang, k, lang.p_adj * 0.5, 0.0)
    obj = np.where(lang.verb_transitive[verb][:, None], obj_np[:, [0, 1, 3]], -1)
    adv = np.where(rng.random(k) < lang.p_adv, lang.adv_ids[_draw(rng, lang.cdf_adv, k)], -1)
    period = np.full(k, lang.period_id)
    return np.column_stack([subj, rel, pp, verb_word, obj, adv, period])


def _arithmetic(rng: np.random.Generator, lang: Language, k: int) -> np.ndarray:
    u = rng.random(k)
    op = np.where(u < lang.mul_share, 2, np.where(u < lang.mul_share + lang.sub_share, 1, 0))
    a = rng.integers(0, lang.number_max + 1, k)
    b = rng.integers(0, lang.number_max + 1, k)
    mul = op == 2
    a = np.where(mul, a % min(lang.number_max + 1, 100), a)
    b = np.where(mul, rng.integers(0, 13, k), b)
    sub = op == 1
    a, b = np.where(sub & (b > a), b, a), np.where(sub & (b > a), a, b)
    c = np.where(op == 0, a + b, np.where(sub, a - b, a * b))
    cols = [lang.num_ids[a], lang.op_ids[op], lang.num_ids[b], np.full(k, lang.eq_id), lang.num_ids[c],
            np.full(k, lang.semi_id)]
    return np.column_stack(cols)


def _items(rng: np.random.Generator, lang: Language, k: int) -> np.ndarray:
    """Word-table ids of ``k`` items, flattened, empty slots removed."""
    rows = np.full((k, _WIDTH), -1, dtype=np.int64)
    sentences = _sentences(rng, lang, k)
    rows[:, : sentences.shape[1]] = sentences
    arith = rng.random(k) < lang.arith_share
    n_arith = int(arith.sum())
    rows[arith] = -1
    rows[arith, :6] = _arithmetic(rng, lang, n_arith)
    rows[:, -1] = np.where(rng.random(k) < lang.p_paragraph, lang.newline_id, -1)
    ids = rows.ravel()
    return ids[ids >= 0]


def _spell(lang: Language, ids: np.ndarray) -> np.ndarray:
    """The bytes of a word-id sequence (a ragged gather), without a space before ``.`` or ``\\n``."""
    lengths = lang.lengths[ids]
    offsets = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    index = np.arange(total, dtype=np.int64) - np.repeat(offsets - lang.starts[ids], lengths)
    out = lang.buf[index]
    keep = np.ones(total, dtype=bool)
    keep[:-1] = ~((out[:-1] == 32) & ((out[1:] == 46) | (out[1:] == 10)))
    return out[keep]


def _rng(seed: int | tuple[int, ...], version: int) -> np.random.Generator:
    parts = list(seed) if isinstance(seed, tuple) else [seed]
    return np.random.default_rng([*(int(p) for p in parts), int(version), 0xC0FFEE])


def generate_bytes(seed: int | tuple[int, ...], version: int, n_chars: int) -> np.ndarray:
    """``n_chars`` ASCII bytes of the corpus of ``(seed, version)``; ``seed`` may be a tuple of
    ints (a stream and a chunk index, say), every combination giving an independent stream. A
    shorter stream is a prefix of a longer one."""
    lang = language(version)
    rng = _rng(seed, version)
    parts, have = [], 0
    while have < n_chars:  # fixed blocks, so a shorter stream is a prefix of a longer one
        chunk = _spell(lang, _items(rng, lang, _BLOCK_ITEMS))
        parts.append(chunk)
        have += len(chunk)
    return np.concatenate(parts)[:n_chars]


def generate(seed: int | tuple[int, ...], version: int, n_chars: int) -> np.ndarray:
    """``n_chars`` token ids (uint8, ids into :data:`VOCAB`) of the corpus of ``(seed, version)``."""
    return _BYTE_TO_ID[generate_bytes(seed, version, n_chars)]


def generate_text(seed: int | tuple[int, ...], version: int, n_chars: int) -> str:
    """The same stream as :func:`generate`, as a string."""
    return generate_bytes(seed, version, n_chars).tobytes().decode("ascii")


def encode(text: str) -> np.ndarray:
    """Token ids of ``text`` in :data:`VOCAB` (characters outside it become ``<unk>``)."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.where(points < 128, _BYTE_TO_ID[np.minimum(points, 127)], UNK_ID).astype(np.uint8)


def decode(ids: np.ndarray) -> str:
    """The text of token ids of :data:`VOCAB` (special tokens are dropped)."""
    ids = np.asarray(ids)
    ids = ids[ids >= len(SPECIAL_TOKENS)]
    return _ID_TO_BYTE[ids].tobytes().decode("ascii")


def instruction_records(seed: int, version: int, n: int) -> list[dict[str, str]]:
    """``n`` Alpaca-style records (instruction, input, output) drawn from the corpus of
    ``(seed, version)``: arithmetic to compute, and sentences to complete from their first half."""
    records: list[dict[str, str]] = []
    text = generate_text((seed, 0x1A57), version, 64 * n + 256)
    items = [s.strip() for s in text.replace("\n", " ").replace(";", ";|").replace(".", ".|").split("|")]
    for item in items[1:-1]:  # the first and last items may be cut
        if item.endswith(";"):
            question, answer = item[:-1].split("=")
            records.append({"instruction": "compute", "input": question, "output": answer})
        elif item.endswith("."):
            words = item[:-1].split(" ")
            half = max(1, len(words) // 2)
            records.append({"instruction": "complete the sentence", "input": " ".join(words[:half]),
                            "output": " ".join(words[half:]) + "."})
        if len(records) == n:
            return records
    raise AssertionError("the corpus gave fewer items than expected")  # pragma: no cover
