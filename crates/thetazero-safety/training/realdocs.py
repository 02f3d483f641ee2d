"""Real technical prose: README and changelog sections of crates.io and PyPI packages.

What agents fetch and pass around is full of it: issue and pull-request
bodies, release notes, READMEs returned by a repository API, documentation
pages. API reference prose (apidocs.py) is terse; this is the long,
markdown-formatted kind, with code, links, version numbers and imperative
sentences ("Run `cargo build`", "Ignore the warning if ...").

Sources, downloaded by train.py, never at run time:
  realdocs-crates.txt: crates.io packages (name, version, sha256 of the
      .crate file), read from Cargo's download cache when present and
      otherwise downloaded from crates.io; each file is checked against its
      sha256. From each crate the top-level README*.md, CHANGELOG*.md,
      CHANGES*.md, RELEASES*.md and HISTORY*.md.
  realdocs-pypi.txt: PyPI packages (name, version, sha256 of the
      description, licence), their wheels downloaded with
      `pip download --no-deps`; the description (the README) of each
      wheel's METADATA, checked against its sha256. Permissive licences
      only.
Each file is split into sections at markdown and reStructuredText headings.

Every package falls wholly into train, calibration or held-out by a hash of
its name (apidocs.split_of), and a section whose text already occurs in an
earlier split is dropped from the later ones (package families share README
text).
"""

import email
import glob
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

import apidocs

HERE = os.path.dirname(os.path.abspath(__file__))
LIST = os.path.join(HERE, "realdocs-crates.txt")
PYPI_LIST = os.path.join(HERE, "realdocs-pypi.txt")
DOC_FILE = re.compile(r"(README|CHANGELOG|CHANGES|RELEASES|HISTORY)[^/]*\.md$", re.I)
# Sections shorter than this carry no prose; longer ones are cut (the
# filter scores text of up to 2 KB whole and everything in windows).
MIN_SECTION_CHARS = 40
MAX_SECTION_CHARS = 4000
# At most this many sections of one file, so long changelogs do not crowd
# out the other crates.
MAX_SECTIONS_PER_FILE = 30


def pinned():
    """(name, version, sha256) of every pinned crate."""
    out = []
    with open(LIST, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                name, version, sha = line.split()
                out.append((name, version, sha))
    return out


def _crate_bytes(name, version, sha):
    """The .crate file: Cargo's cache if it has it, else a download cache in
    the temp directory, else crates.io. Checked against `sha`."""
    fname = f"{name}-{version}.crate"
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    candidates = []
    reg = os.path.join(home, "registry", "cache")
    if os.path.isdir(reg):
        candidates += [os.path.join(reg, d, fname) for d in sorted(os.listdir(reg))]
    dl = os.path.join(tempfile.gettempdir(), "tz-safety-crates")
    candidates.append(os.path.join(dl, fname))
    for p in candidates:
        if os.path.exists(p):
            data = open(p, "rb").read()
            if hashlib.sha256(data).hexdigest() == sha:
                return data
    url = f"https://static.crates.io/crates/{name}/{fname}"
    with urllib.request.urlopen(url, timeout=60) as r:
        data = r.read()
    if hashlib.sha256(data).hexdigest() != sha:
        raise SystemExit(f"{fname}: sha256 mismatch")
    os.makedirs(dl, exist_ok=True)
    with open(os.path.join(dl, fname), "wb") as fh:
        fh.write(data)
    return data


# Before a markdown heading of level 1 to 3, or a reStructuredText title
# (a line underlined with = - ~ ^ or ").
HEADING = re.compile(r"\n(?=#{1,3} |[^\n]+\n[=\-~^\"]{3,}[ \t]*\n)")


def sections(text):
    """Sections of a markdown or reStructuredText file, split before each
    heading, stripped, cut to MAX_SECTION_CHARS; short ones dropped."""
    out = []
    for s in HEADING.split(text.replace("\r\n", "\n")):
        s = s.strip()
        if len(s) >= MIN_SECTION_CHARS:
            out.append(s[:MAX_SECTION_CHARS])
    return out[:MAX_SECTIONS_PER_FILE]


def crate_files():
    """(crate name, file name, licence, text) of every documentation file of
    every pinned crate, in list order."""
    import io

    out = []
    for name, version, sha in pinned():
        data = _crate_bytes(name, version, sha)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
            members = sorted(tf.getmembers(), key=lambda m: m.name)
            licence = ""
            for m in members:
                if m.name.count("/") == 1 and m.name.endswith("/Cargo.toml"):
                    toml = tf.extractfile(m).read().decode("utf-8", "replace")
                    found = re.search(r'^license\s*=\s*"([^"]+)"', toml, re.M)
                    licence = found.group(1) if found else "see crate"
            for m in members:
                if m.isfile() and m.name.count("/") == 1 and DOC_FILE.match(m.name.split("/")[1]):
                    text = tf.extractfile(m).read().decode("utf-8", "replace")
                    out.append((name, m.name.split("/")[1], licence, text))
    return out


def pypi_pinned():
    """(name, version, sha256 of the description, licence) of every pinned
    PyPI package."""
    out = []
    with open(PYPI_LIST, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                name, version, sha, licence = line.split()
                out.append((name, version, sha, licence.replace("_", " ")))
    return out


def _description(wheel):
    """The description (long_description) in a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.message_from_bytes(z.read(meta))
    body = msg.get_payload()
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return body or msg.get("Description", "") or ""


def pypi_files():
    """(package, "README", licence, description) of every pinned PyPI
    package, downloaded once into the temp directory."""
    dest = os.path.join(tempfile.gettempdir(), "tz-safety-pypi")
    os.makedirs(dest, exist_ok=True)
    pinned = pypi_pinned()

    def wheel(name, version):
        stem = re.sub(r"[-_.]+", "_", name).lower()
        found = [w for w in glob.glob(os.path.join(dest, "*.whl")) if os.path.basename(w).lower().startswith(f"{stem}-{version}-")]
        return sorted(found)[0] if found else None

    missing = [f"{n}=={v}" for n, v, _, _ in pinned if wheel(n, v) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--ignore-requires-python", "--only-binary=:all:", "-d", dest] + missing, check=True)
    out = []
    for name, version, sha, licence in pinned:
        text = _description(wheel(name, version))
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != sha:
            raise SystemExit(f"{name} {version}: description sha256 mismatch")
        out.append((name, "README", licence, text))
    return out


def _document(kind, section, rng, i):
    """`section` as the string value of a response an agent might fetch: a
    release, an issue, a pull request, a file's metadata or a comment."""
    title = section.splitlines()[0].lstrip("# ").strip()[:100]
    login = rng.choice(["octo-dev", "release-bot", "maintainer", "alice", "bob", "ci"])
    if kind == "release":
        return {"id": 10_000 + i, "tag_name": f"v{rng.randrange(6)}.{rng.randrange(40)}.{rng.randrange(10)}", "name": title, "draft": False, "prerelease": rng.random() < 0.1, "body": section, "author": {"login": login, "type": "User"}, "created_at": "2026-03-0%dT12:00:00Z" % (1 + i % 9)}
    if kind == "issue":
        return {"id": 20_000 + i, "number": 1 + i % 900, "title": title, "state": rng.choice(["open", "closed"]), "body": section, "user": {"login": login}, "labels": [{"name": rng.choice(["bug", "docs", "enhancement", "question"])}], "comments": rng.randrange(12)}
    if kind == "pull":
        return {"number": 1 + i % 900, "title": title, "body": section, "head": {"ref": f"feature-{i}"}, "base": {"ref": "main"}, "merged": rng.random() < 0.5, "draft": False}
    if kind == "comment":
        return {"id": 30_000 + i, "body": section, "user": {"login": login}, "author_association": rng.choice(["OWNER", "MEMBER", "CONTRIBUTOR", "NONE"])}
    return {"name": "README.md", "path": "README.md", "type": "file", "size": len(section.encode("utf-8")), "encoding": "utf-8", "content": section}


def sets():
    """{"train", "calib", "held_out"} -> list of (crate, section), and the
    licence tally {licence: crates}."""
    out = {sp: [] for sp in ("train", "calib", "held_out")}
    licences = {}
    files = [("crate:" + n, f, lic, t) for n, f, lic, t in crate_files()]
    files += [("pypi:" + n, f, lic, t) for n, f, lic, t in pypi_files()]
    for name, _fname, licence, text in files:
        sp = apidocs.split_of(name)
        licences.setdefault(licence, set()).add(name)
        out[sp] += [(name, s) for s in sections(text)]
    seen = set()
    for sp in ("train", "calib", "held_out"):
        kept = []
        for name, s in out[sp]:
            k = " ".join(s.split()).lower()
            if k not in seen:
                seen.add(k)
                kept.append((name, s))
        out[sp] = kept
    return out, {k: len(v) for k, v in sorted(licences.items())}


def documents(items, seed):
    """Each (crate, section) as a JSON response of one of five shapes."""
    rng = random.Random(seed)
    kinds = ["release", "issue", "pull", "comment", "file"]
    return [(name, _document(rng.choice(kinds), s, rng, i)) for i, (name, s) in enumerate(items)]


def paragraphs(text):
    """Paragraphs of at least four words (blank-line separated)."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.split()) >= 4]


def training_text(items):
    """Harmless training strings from (crate, section) pairs: each section
    cut to 2,000 characters (the filter scores up to 2 KB whole), its
    paragraphs and its sentences."""
    out = set()
    for _, s in items:
        out.add(s[:2000])
        out |= set(paragraphs(s))
        out |= set(apidocs.sentences(s))
    return sorted(out)


def planted_text(items, attacks, seed, view=lambda text, attack: text):
    """Training positives: for each (package, section), one of its
    paragraphs (or its first 600 characters) with an attack row placed
    after it, before it, or between two of its sentences, passed through
    `view(text, attack)` (train.py keeps the attack's local view)."""
    rng = random.Random(seed)
    out = []
    for _, s in items:
        paras = paragraphs(s) or [s[:600]]
        p = rng.choice(paras)[:600]
        attack = rng.choice(attacks)
        r = rng.random()
        if r < 0.4:
            text = p + "\n\n" + attack
        elif r < 0.6:
            text = attack + "\n\n" + p
        else:
            cut = [m.end() for m in re.finditer(r"[.!?]\s", p)]
            at = rng.choice(cut) if cut else len(p)
            text = p[:at] + attack + " " + p[at:]
        out.append(view(text, attack))
    return sorted(set(out))


if __name__ == "__main__":
    s, lic = sets()
    print({k: len(v) for k, v in s.items()})
    print(json.dumps(lic, indent=1))
