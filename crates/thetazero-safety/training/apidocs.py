"""Structured benign data from public API documentation, and injections planted in it.

Sources (downloaded with pip by train.py, never at run time):
  botocore 1.44.5 (Apache-2.0): the request and response examples of AWS
      services (``botocore/data/<service>/<version>/examples-1.json``).
  google-api-python-client 2.202.0 (Apache-2.0): the Google APIs discovery
      documents (``googleapiclient/discovery_cache/documents/*.json``), which
      are themselves responses of Google's public discovery API; each schema
      and method object is one document.

Every source (an AWS service, a Google API family such as ``drive`` with all
its versions) falls wholly into train, calibration or held-out, chosen by a
hash of its name, so held-out sources are never seen in training or
calibration.
"""

import hashlib
import json
import random
import zipfile

MAX_DOC_CHARS = 6000
GOOGLE_DOCS_PER_FILE = 6
# Training sources give more documents per file: the content model learns
# from them, and more documentation prose lowers its false positives.
GOOGLE_TRAIN_DOCS_PER_FILE = int(__import__("os").environ.get("TZ_GTRAIN", "48"))


def split_of(source):
    """0-5 train, 6-7 calibration, 8-9 held-out, by a hash of the source name."""
    b = int(hashlib.sha256(source.encode("utf-8")).hexdigest(), 16) % 10
    return "train" if b < 6 else ("calib" if b < 8 else "held_out")


def _small(doc):
    return len(json.dumps(doc, ensure_ascii=False)) <= MAX_DOC_CHARS


def botocore_docs(wheel):
    """(source, kind, doc) for every example input and output, kind in {input, output}."""
    out = []
    z = zipfile.ZipFile(wheel)
    names = sorted(n for n in z.namelist() if n.endswith("/examples-1.json"))
    for n in names:
        service = n.split("/")[2]
        data = json.loads(z.read(n))
        for op in sorted(data.get("examples", {})):
            for ex in data["examples"][op]:
                for kind in ("input", "output"):
                    doc = ex.get(kind)
                    if isinstance(doc, dict) and doc and _small(doc):
                        out.append(("aws:" + service, kind, doc))
    return out


def botocore_prose(wheel):
    """(source, text): the examples' titles and descriptions, explanatory prose."""
    out = []
    z = zipfile.ZipFile(wheel)
    for n in sorted(n for n in z.namelist() if n.endswith("/examples-1.json")):
        service = n.split("/")[2]
        data = json.loads(z.read(n))
        for op in sorted(data.get("examples", {})):
            for ex in data["examples"][op]:
                for key in ("title", "description"):
                    t = ex.get(key)
                    if isinstance(t, str) and t.strip():
                        out.append(("aws:" + service, t))
    return out


def _methods(resources, out):
    for name in sorted(resources or {}):
        r = resources[name]
        for m in sorted(r.get("methods", {})):
            out.append(r["methods"][m])
        _methods(r.get("resources"), out)


def google_docs(wheel, seed):
    """(source, doc): up to GOOGLE_DOCS_PER_FILE schema or method objects per
    discovery document (GOOGLE_TRAIN_DOCS_PER_FILE for training sources)."""
    out = []
    z = zipfile.ZipFile(wheel)
    names = sorted(n for n in z.namelist() if "/discovery_cache/documents/" in n and n.endswith(".json"))
    for n in names:
        fname = n.rsplit("/", 1)[1]
        family = fname.split(".")[0]
        data = json.loads(z.read(n))
        objs = [data["schemas"][k] for k in sorted(data.get("schemas", {}))]
        _methods(data.get("resources"), objs)
        objs = [o for o in objs if isinstance(o, dict) and _small(o)]
        rng = random.Random(f"{seed}:{fname}")
        k = GOOGLE_TRAIN_DOCS_PER_FILE if split_of("google:" + family) == "train" else GOOGLE_DOCS_PER_FILE
        for o in rng.sample(objs, min(k, len(objs))):
            out.append(("google:" + family, o))
    return out


# The Python side of the filter's prose test (src/structure.rs): it only
# chooses which strings training adds, so it need not match bit for bit.
_TRIM = "\"'()[]{}<>,.;:!?*`\u201c\u201d\u2018\u2019\u00ab\u00bb"
_DATA = set("_/=&@#.:%")


def _unspaced(c):
    cp = ord(c)
    return (0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0x3400 <= cp <= 0x4DBF
            or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2FA1F)


def _is_word(t):
    letters = digits = 0
    prev_lower = False
    if "-" in t and any("0" <= c <= "9" for c in t):
        return False
    for c in t:
        if c in _DATA or _unspaced(c):
            return False
        if "A" <= c <= "Z" and prev_lower:
            return False
        prev_lower = "a" <= c <= "z"
        if "0" <= c <= "9":
            digits += 1
        elif c.isalpha():
            letters += 1
    return (letters > 1 or t in ("a", "A", "I")) and digits < letters


def looks_like_prose(s):
    words = toks = uns = 0
    for raw in s.split():
        toks += 1
        uns += sum(1 for c in raw if _unspaced(c))
        if _is_word(raw.strip(_TRIM)):
            words += 1
    extra = (uns + 1) // 2
    words, toks = words + extra, toks + extra
    return words >= 3 and (2 * words >= toks or words >= 8)


def string_values(doc):
    """Every string value (not keys) of a JSON document, in document order."""
    out = []
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
    return out


def prose_values(doc):
    return [s for s in string_values(doc) if looks_like_prose(s)]


def plant(doc, injection, rng):
    """A copy of `doc` with `injection` placed in one string value: the
    value replaced, or the injection appended to it (half and half). None
    when the document has no string value."""
    doc = json.loads(json.dumps(doc))
    slots = []
    stack = [doc]
    while stack:
        v = stack.pop()
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else []
        for k, x in items:
            if isinstance(x, str):
                slots.append((v, k))
            elif isinstance(x, (dict, list)):
                stack.append(x)
    if not slots:
        return None, None
    parent, k = slots[rng.randrange(len(slots))]
    if rng.random() < 0.5 and parent[k].strip():
        parent[k] = parent[k].rstrip() + " " + injection
    else:
        parent[k] = injection
    return doc, parent[k]


def sentences(text):
    """Sentences of `text` with at least four words, split as the filter
    splits JSON prose (src/lib.rs, `sentence_views`): after a newline, and
    after ". ", "! " or "? ". Only to add training text, so it need not
    match bit for bit."""
    import re

    parts = re.split(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n", text)
    out = [p.strip() for p in parts if len(p.split()) >= 4]
    return out if len(out) > 1 else []
