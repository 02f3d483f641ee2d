"""The second-stage injection scorer: a small network over hashed n-grams.

The fast layers (patterns, the linear prompt and content models) decide
clear cases. A text view whose fast injection score lies in the borderline
band around the threshold is judged by this model instead: the same folded
tokens and hashed features as the fast models (featurize.py), folded into
2^16 buckets, an embedding bag of 32 dimensions (the L2-normalised counts
weigh the buckets' rows), a ReLU and a logistic output. Unlike the linear
models it can combine evidence (an order addressed to a model *and* an
exfiltration target) instead of adding it up.

Trained with numpy alone (minibatch Adam, fixed seed, float64, single
thread order), so two runs give the same weights. Stored as i8 rows with one
f32 scale per hidden unit; the dot products are integers, so Python and Rust
agree up to the final float arithmetic, which both do in the same order.

File layout (little-endian): magic ``TZSEC001``, ``u32`` bucket bits,
``u32`` hidden size H, H ``f32`` scales, H ``f32`` hidden biases, H ``f32``
output weights, ``f32`` output bias, then 2^bits rows of H ``i8``.
"""

import math
import struct

import numpy as np
import scipy.sparse as sp

import featurize as fz

BITS = 16
BUCKETS = 1 << BITS
HIDDEN = 32
MAGIC = b"TZSEC001"


def fold(x):
    """A 2^18-bucket feature matrix (featurize, normalised) folded to 2^16."""
    x = x.tocsr()
    y = sp.csr_matrix((x.data, x.indices & (BUCKETS - 1), x.indptr), shape=(x.shape[0], BUCKETS))
    y.sum_duplicates()
    return y


class Net:
    def __init__(self, w1, b1, w2, b2):
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, b2

    def logits(self, x):
        h = np.maximum(x @ self.w1 + self.b1, 0.0)
        return h @ self.w2 + self.b2


def train(x, y, weights, seed, epochs=4, batch=512, lr=2e-3, l2=1e-5):
    """Weighted, class-balanced logistic loss; returns a float64 Net."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    pos = w[y == 1].sum()
    neg = w[y == 0].sum()
    w = np.where(y == 1, w * (pos + neg) / (2 * pos), w * (pos + neg) / (2 * neg))
    params = [
        rng.normal(0, 0.05, (BUCKETS, HIDDEN)),
        np.zeros(HIDDEN),
        rng.normal(0, 0.3, HIDDEN),
        np.zeros(1),
    ]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    b1_, b2_ = 0.9, 0.999
    for ep in range(epochs):
        order = rng.permutation(n)
        total = 0.0
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            xb, yb, wb = x[idx], y[idx], w[idx]
            w1, b1, w2, b2 = params
            pre = xb @ w1 + b1
            h = np.maximum(pre, 0.0)
            z = h @ w2 + b2[0]
            p = 1.0 / (1.0 + np.exp(-z))
            total += float(np.sum(wb * (np.logaddexp(0, z) - yb * z)))
            g = wb * (p - yb) / wb.sum()
            gw2 = h.T @ g
            gb2 = np.array([g.sum()])
            gh = np.outer(g, w2) * (pre > 0)
            gw1 = np.asarray(xb.T @ gh) + l2 * w1
            gb1 = gh.sum(axis=0)
            t += 1
            for i, gp in enumerate((gw1, gb1, gw2, gb2)):
                m[i] = b1_ * m[i] + (1 - b1_) * gp
                v[i] = b2_ * v[i] + (1 - b2_) * gp * gp
                mh = m[i] / (1 - b1_**t)
                vh = v[i] / (1 - b2_**t)
                params[i] -= lr * mh / (np.sqrt(vh) + 1e-8)
        print(f"  [second stage] epoch {ep + 1}: loss {total / w.sum():.4f}")
    return Net(*params)


class Quantised:
    """The network exactly as the crate stores and scores it."""

    def __init__(self, net):
        self.scale = (np.abs(net.w1).max(axis=0) / 127.0).astype(np.float32)
        self.scale[self.scale == 0] = np.float32(1.0)
        self.q = np.clip(np.rint(net.w1 / self.scale.astype(np.float64)), -127, 127).astype(np.int8)
        self.b1 = net.b1.astype(np.float32)
        self.w2 = net.w2.astype(np.float32)
        self.b2 = np.float32(net.b2[0])

    def shift(self, delta):
        self.b2 = np.float32(float(self.b2) + delta)

    def logit_features(self, counts, norm):
        """The crate's rule: integer sums per hidden unit, then f64 in unit order."""
        if norm == 0.0:
            acc = [0] * HIDDEN
        else:
            acc = [0] * HIDDEN
            for b, c in counts.items():
                row = self.q[b & (BUCKETS - 1)]
                for k in range(HIDDEN):
                    acc[k] += int(row[k]) * c
        out = float(self.b2)
        for k in range(HIDDEN):
            hk = float(self.b1[k]) + (float(self.scale[k]) * acc[k] / norm if norm != 0.0 else 0.0)
            if hk > 0.0:
                out += float(self.w2[k]) * hk
        return out

    def logit(self, text):
        counts, norm = fz.featurize(text)
        return self.logit_features(counts, norm)

    def logits_fast(self, x16):
        """Vectorised scores of a folded matrix (for calibration); equal to
        `logit` up to float rounding."""
        w1 = self.q.astype(np.float64) * self.scale.astype(np.float64)
        h = np.maximum(x16 @ w1 + self.b1.astype(np.float64), 0.0)
        return h @ self.w2.astype(np.float64) + float(self.b2)

    def score(self, text):
        return 1.0 / (1.0 + math.exp(-self.logit(text)))

    def write(self, path):
        with open(path, "wb") as fh:
            fh.write(MAGIC)
            fh.write(struct.pack("<II", BITS, HIDDEN))
            fh.write(self.scale.astype("<f4").tobytes())
            fh.write(self.b1.astype("<f4").tobytes())
            fh.write(self.w2.astype("<f4").tobytes())
            fh.write(struct.pack("<f", float(self.b2)))
            fh.write(self.q.astype("i1").tobytes())
