#!/usr/bin/env python3
"""Builds development sets of real documents and of requests sent as JSON,
from what this machine has installed; never trained or calibrated on, and
not committed (they depend on the machine).

Writes training/eval/dev/ (ignored by git):
  docs_dev.jsonl    up to 3,000 sections of Debian's /usr/share/doc (README,
                    NEWS, changelog entries), of the installed Python
                    packages' descriptions that realdocs-pypi.txt does not
                    pin, and of global npm packages' READMEs; each as a JSON
                    response (training/realdocs.py) and as plain text, on
                    `fetched`; labels benign_dev_<source>[_text]
  requests_dev.jsonl  training/dev/trigger_dev.jsonl and
                    multilingual_dev.jsonl (written for this crate by
                    another author than the training sets) as a prose
                    value of a JSON execution input, on `input`

Usage:  python3 training/dev_docs.py
Then:   cargo run --release -p thetazero-safety --example eval -- training/eval/dev/*_dev.jsonl training/dev/*.jsonl
"""

import glob
import gzip
import json
import os
import random
import re
import site
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import realdocs  # noqa: E402

OUT = os.path.join(HERE, "eval", "dev")


def installed_pypi(pinned):
    out = []
    for sp in site.getsitepackages():
        for p in sorted(glob.glob(os.path.join(sp, "*.dist-info"))):
            name = re.sub(r"-\d.*$", "", os.path.basename(p)).lower().replace("_", "-")
            if name in pinned or not os.path.exists(os.path.join(p, "METADATA")):
                continue
            import email

            m = email.message_from_bytes(open(os.path.join(p, "METADATA"), "rb").read())
            body = m.get_payload() or ""
            out += [("pypi-dev:" + name, s) for s in realdocs.sections(body if isinstance(body, str) else "")]
    return out


def debian():
    out = []
    for d in sorted(glob.glob("/usr/share/doc/*/")):
        pkg = os.path.basename(d.rstrip("/"))
        for f in sorted(glob.glob(d + "*")):
            b = os.path.basename(f)
            try:
                if b.startswith("README") and not b.endswith(".gz"):
                    t = open(f, errors="replace").read()
                elif b in ("README.gz", "README.md.gz", "NEWS.gz", "NEWS.Debian.gz", "changelog.Debian.gz", "changelog.gz", "NEWS.md.gz"):
                    t = gzip.open(f).read().decode("utf-8", "replace")
                else:
                    continue
            except (OSError, UnicodeError, EOFError):
                continue
            if "changelog" in b:
                entries = re.split(r"\n(?=\S+ \([^)]*\) [^;]*; urgency=)", t)[:8]
                secs = [e.strip()[:4000] for e in entries if len(e.strip()) > 40]
            else:
                secs = realdocs.sections(t)
                if len(secs) <= 1:
                    secs = [p.strip()[:4000] for p in re.split(r"\n\s*\n", t) if len(p.strip()) > 120][:10]
            out += [("deb:" + pkg, s) for s in secs[:10]]
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    pinned = {n.lower().replace("_", "-") for n, _, _, _ in realdocs.pypi_pinned()}
    items = installed_pypi(pinned) + debian()
    for p in sorted(glob.glob("/usr/lib/node_modules/**/README.md", recursive=True)):
        items += [("npm:" + p, s) for s in realdocs.sections(open(p, errors="replace").read())]
    rng = random.Random(11)
    rng.shuffle(items)
    items = items[:3000]
    docs = realdocs.documents(items, 5)
    with open(os.path.join(OUT, "docs_dev.jsonl"), "w", encoding="utf-8") as fh:
        for (src, d), (_, s) in zip(docs, items):
            label = "benign_dev_" + src.split(":")[0]
            fh.write(json.dumps({"json": d, "label": label, "channel": "fetched"}, ensure_ascii=False) + "\n")
            fh.write(json.dumps({"text": s, "label": label + "_text", "channel": "fetched"}, ensure_ascii=False) + "\n")
    keys = ["question", "prompt", "message", "query", "task", "text"]
    with open(os.path.join(OUT, "requests_dev.jsonl"), "w", encoding="utf-8") as fh:
        for name, label in (("trigger_dev", "benign_trigger_json"), ("multilingual_dev", "benign_multi_json")):
            for line in open(os.path.join(HERE, "dev", name + ".jsonl"), encoding="utf-8"):
                t = json.loads(line)["text"]
                fh.write(json.dumps({"json": {rng.choice(keys): t, "user_id": "u_%d" % rng.randrange(1000)}, "label": label, "channel": "input"}, ensure_ascii=False) + "\n")
    print(f"{OUT}: docs_dev.jsonl {2 * len(items)} lines, requests_dev.jsonl")


if __name__ == "__main__":
    main()
