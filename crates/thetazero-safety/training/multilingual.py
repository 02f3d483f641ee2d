"""Harmless text in languages other than English.

The corpora's attack rows include whole corpora of non-English injections
(yanismiraoui is multilingual and all attacks) while their harmless rows are
nearly all English, so a model trained on them alone learns "not English"
as a sign of attack. Two sources correct that:

  Django 5.2.9 (PyPI, BSD-3-Clause): the translation catalogs
      (``django/**/locale/<lang>/LC_MESSAGES/django.po``) of the framework
      and its admin, auth and forms: real interface sentences in 99
      languages ("Forgotten your password?", "Enter a valid value."),
      downloaded by train.py with ``pip download --no-deps``.
  data/multilingual_written.jsonl: harmless messages to an assistant in 16
      languages, about half with a word a naive filter flags in that
      language, written for this crate.
  data/multilingual_attacks_written.jsonl: injections and jailbreaks in
      the same languages (and Arabic), written for this crate: the
      positives that keep the harmless text above from teaching that
      foreign text is harmless.
"""

import json
import os
import random
import re
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DJANGO = ("django", "5.2.9")
WRITTEN = os.path.join(HERE, "data", "multilingual_written.jsonl")
ATTACKS = os.path.join(HERE, "data", "multilingual_attacks_written.jsonl")
# Per language, at most this many catalog strings (the big languages have
# thousands; the point is breadth, not volume).
PER_LANGUAGE = 120
MIN_WORDS = 3
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|%[sd]|\{[a-z_0-9]*\}")


def _entries(po):
    """msgstr texts of a .po catalog (continuation lines joined); plural
    forms and the header entry skipped."""
    out = []
    for block in po.split("\n\n"):
        m = re.search(r'^msgstr "(.*)"((?:\n".*")*)', block, re.M)
        if not m or "msgid_plural" in block:
            continue
        text = m.group(1) + "".join(re.findall(r'^"(.*)"$', m.group(2), re.M))
        text = text.replace('\\"', '"').replace("\\n", " ").strip()
        if text and not text.startswith("Project-Id-Version"):
            out.append(text)
    return out


def django_strings(wheel, seed):
    """Harmless catalog sentences of at least MIN_WORDS words (placeholders
    removed), at most PER_LANGUAGE per language (English left out), sampled
    with `seed`."""
    by_lang = {}
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if not name.endswith("/LC_MESSAGES/django.po"):
                continue
            lang = name.split("/locale/")[1].split("/")[0]
            if lang.startswith("en"):
                continue
            for t in _entries(z.read(name).decode("utf-8", "replace")):
                t = " ".join(PLACEHOLDER.sub("", t).split())
                words = len(t.split())
                cjk = sum(1 for c in t if "\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff")
                if words >= MIN_WORDS or cjk >= 2 * MIN_WORDS:
                    by_lang.setdefault(lang, set()).add(t)
    rng = random.Random(seed)
    out = []
    for lang in sorted(by_lang):
        items = sorted(by_lang[lang])
        rng.shuffle(items)
        out += items[:PER_LANGUAGE]
    return out


def attacks():
    """Injections and jailbreaks in the same 16 languages, written for this
    crate (training positives)."""
    with open(ATTACKS, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def written():
    """The harmless messages written for this crate."""
    with open(WRITTEN, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


if __name__ == "__main__":
    import glob

    w = sorted(glob.glob("/tmp/djw/*.whl"))[0]
    s = django_strings(w, 1)
    print(len(s))
    print(s[:10])
