"""Text folding and hashed n-gram features for the safety model.

This file is the Python twin of ``src/features.rs``: both must produce the
same tokens and the same buckets for every input, or the weights trained here
mean something else at run time. Change one, change the other, and rerun
``train.py`` so the parity fixture is rewritten.
"""

import math
import unicodedata

N_BITS = 18
N_BUCKETS = 1 << N_BITS
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1
CHAR_NGRAMS = (3, 4, 5)
MAX_TOKEN_CHARS = 64
# Word-level features (unigrams, bigrams, content-word bigrams) count this
# many times each; character n-grams count once. There are about three
# character n-grams per character, so without the weight they drown out the
# words.
WORD_WEIGHT = 3


def _load_confusables():
    # The table is shared with Rust through src/confusables.tsv so the two
    # sides cannot drift apart.
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "src", "confusables.tsv")
    table = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            src, dst = line.split("\t")[:2]
            table[chr(int(src, 16))] = dst
    return table


CONFUSABLES = _load_confusables()


def _load_stopwords():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "src", "stopwords.txt")
    with open(path, encoding="utf-8") as fh:
        return frozenset(l.strip() for l in fh if l.strip() and not l.startswith("#"))


STOPWORDS = _load_stopwords()
LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g", "\u20ac": "e"}
# Symbols written for letters ("$y$+€m", "byp@ss", "|gnore", "!mport"). They
# are separators unless they sit in a run of word characters that has a
# letter in it; there they become letters, so "$5", "a + b" and "| x |" are
# left alone. A word-final "!" is punctuation ("hello!"), and so is a
# word-final "+" after one character or another "+" ("A+", "C++"); after
# longer words it stands for "t" ("ro0+").
LEET_SYMBOLS = {"@": "a", "$": "s", "+": "t", "|": "i", "!": "i"}


def is_invisible(cp):
    return (
        cp == 0x00AD
        or cp == 0x034F
        or cp == 0x061C
        or cp in (0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFFA0, 0xFEFF)
        or 0x200B <= cp <= 0x200F
        or 0x202A <= cp <= 0x202E
        or 0x2060 <= cp <= 0x206F
        or 0xFE00 <= cp <= 0xFE0F
        or 0xE0000 <= cp <= 0xE0FFF
    )


def is_combining(cp):
    return (
        0x0300 <= cp <= 0x036F
        or 0x1AB0 <= cp <= 0x1AFF
        or 0x1DC0 <= cp <= 0x1DFF
        or 0x20D0 <= cp <= 0x20FF
        or 0xFE20 <= cp <= 0xFE2F
    )


def is_separator(cp):
    if cp < 0x80:
        c = chr(cp)
        return not (("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9"))
    return (
        cp <= 0xBF
        or cp in (0xD7, 0xF7)
        or 0x2000 <= cp <= 0x206F
        or 0x2190 <= cp <= 0x2BFF
        or 0x3000 <= cp <= 0x303F
        or 0x1F000 <= cp <= 0x1FAFF
    )


def clean(text):
    """Invisible characters out, NFKC, combining marks out."""
    text = "".join(c for c in text if not is_invisible(ord(c)))
    text = unicodedata.normalize("NFKC", text)
    return "".join(c for c in text if not is_combining(ord(c)))


def fold_token(tok):
    # Look-alikes are folded only where that cannot damage real words: when
    # the token already mixes in Latin letters, or every letter of it has a
    # Latin twin (a Cyrillic word spelled only with look-alikes reads as
    # Latin to a person anyway).
    has_latin = any(("a" <= c <= "z") or ("A" <= c <= "Z") for c in tok)
    if has_latin or all(c in CONFUSABLES or ("0" <= c <= "9") for c in tok):
        tok = "".join(CONFUSABLES.get(c, c) for c in tok)
    tok = "".join(c.lower() for c in tok)
    # Leetspeak is undone only inside tokens that mix letters and digits, so
    # numbers stay numbers.
    if any("a" <= c <= "z" for c in tok) and any(c in LEET for c in tok):
        tok = "".join(LEET.get(c, c) for c in tok)
    return tok[:MAX_TOKEN_CHARS]


def is_unspaced(cp):
    """Han and kana: written without spaces, one character is about a
    syllable or a morpheme, so each is a token of its own (text that
    separates them with backslashes or spaces already gives those tokens)."""
    return (
        0x3040 <= cp <= 0x30FF
        or 0x31F0 <= cp <= 0x31FF
        or 0x3400 <= cp <= 0x4DBF
        or 0x4E00 <= cp <= 0x9FFF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x2FA1F
    )


def _is_letter(c):
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or c in CONFUSABLES


def _run_tokens(run, out):
    """Tokens of one run of word characters and leet symbols."""
    if any(_is_letter(c) for c in run):
        run = run.rstrip("!")
        if run.endswith("+") and (len(run) < 3 or run[-2] == "+"):
            run = run.rstrip("+")
        out.append(fold_token("".join(LEET_SYMBOLS.get(c, c) for c in run)))
        return
    cur = []
    for c in run:
        if c in LEET_SYMBOLS:
            if cur:
                out.append(fold_token("".join(cur)))
                cur = []
        else:
            cur.append(c)
    if cur:
        out.append(fold_token("".join(cur)))


def tokens(text):
    out = []
    cur = []
    for c in clean(text):
        cp = ord(c)
        if c in LEET_SYMBOLS or not (is_separator(cp) or is_unspaced(cp)):
            cur.append(c)
            continue
        if cur:
            _run_tokens("".join(cur), out)
            cur = []
        if is_unspaced(cp):
            out.append(c)
    if cur:
        _run_tokens("".join(cur), out)
    return out


_HASH_CACHE = {}


def fnv1a(data):
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def feature_hash(key):
    h = _HASH_CACHE.get(key)
    if h is None:
        h = fnv1a(key.encode("utf-8"))
        if len(_HASH_CACHE) < 4_000_000:
            _HASH_CACHE[key] = h
    return h


def feature_keys(toks):
    keys = ["w:" + t for t in toks]
    keys += ["b:" + a + " " + b for a, b in zip(toks, toks[1:])]
    # Bigrams of content words: function words skipped, so "show me your
    # setup" and "show the setup" share "show setup".
    content = [t for t in toks if t not in STOPWORDS]
    keys += ["s:" + a + " " + b for a, b in zip(content, content[1:])]
    s = " " + " ".join(toks) + " "
    for n in CHAR_NGRAMS:
        for i in range(0, len(s) - n + 1):
            keys.append("c:" + s[i : i + n])
    return keys


def featurize(text):
    """Returns ({bucket: signed count}, l2 norm)."""
    counts = {}
    for key in feature_keys(tokens(text)):
        h = feature_hash(key)
        bucket = h & (N_BUCKETS - 1)
        sign = -1 if (h >> 63) & 1 else 1
        weight = 1 if key[0] == "c" else WORD_WEIGHT
        counts[bucket] = counts.get(bucket, 0) + sign * weight
    norm = math.sqrt(sum(float(v) * float(v) for v in counts.values()))
    return counts, norm
