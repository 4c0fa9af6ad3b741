"""A deterministic synthetic token language whose best possible loss is known exactly.

Each sequence is a run of blocks: a marker token (NEW or COPY) followed by `block_len` tokens.
A NEW block is text from a sparse first-order Markov chain (each token has a few possible
successors with Dirichlet-drawn probabilities), started from the chain's stationary law; a COPY
block repeats the most recent NEW block of the same sequence. The first block is always NEW.
Predicting well therefore needs the previous token (a bigram table) and recall across up to a
whole context (induction / copying), which is what attention learns.

Because sequences are sampled whole (windows start at a sequence start), the conditional entropy
of every position given everything before it is exact, and its mean over the predicted positions
is the process's loss floor: no model can have a lower expected cross-entropy on this data. On a
finite eval set the exact floor is the Bayes-optimal model's loss on those very tokens
(`true_nll`), which is what the run reports (docs/design.md, "Loss floor and gap").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lionbench.files import lionbench_cache

# Bumped whenever the generator or the cache's contents change, so that stale caches are never
# reused (2: the val set's per-token Bayes-optimal losses are cached with it).
GENERATOR_VERSION = 2


@dataclass(frozen=True)
class TokenLanguage:
    """Parameters of the process; `vocab_size` includes the two marker tokens."""

    vocab_size: int
    successors: int
    concentration: float
    block_len: int
    new_prob: float
    seed: int

    @property
    def n_text(self) -> int:
        return self.vocab_size - 2

    @property
    def new_marker(self) -> int:
        return self.vocab_size - 2

    @property
    def copy_marker(self) -> int:
        return self.vocab_size - 1


@dataclass
class Chain:
    successors: np.ndarray  # [n, K] int64, next-token candidates (duplicates merged, prob 0)
    cum_probs: np.ndarray  # [n, K] float64, cumulative probabilities per row
    stationary: np.ndarray  # [n] float64, an invariant law of the chain
    entropy_stationary: float  # H(stationary), nats: the first token of a NEW block
    entropy_rate: float  # E_stationary[H(next | token)], nats: the later tokens of a NEW block


def build_chain(lang: TokenLanguage) -> Chain:
    n, k = lang.n_text, lang.successors
    rng = np.random.Generator(np.random.PCG64(lang.seed))
    succ = rng.integers(0, n, size=(n, k))
    probs = rng.dirichlet(np.full(k, lang.concentration), size=n)
    # Sort candidates per row and merge repeated successors into one entry.
    order = np.argsort(succ, axis=1, kind="stable")
    succ = np.take_along_axis(succ, order, axis=1)
    probs = np.take_along_axis(probs, order, axis=1)
    for j in range(k - 1, 0, -1):
        dup = succ[:, j] == succ[:, j - 1]
        probs[dup, j - 1] += probs[dup, j]
        probs[dup, j] = 0.0
    # Invariant law by power iteration on the lazy chain (same invariant law, aperiodic).
    pi = np.full(n, 1.0 / n)
    for _ in range(100_000):
        moved = np.bincount(succ.ravel(), weights=(pi[:, None] * probs).ravel(), minlength=n)
        new = 0.5 * pi + 0.5 * moved
        done = np.abs(new - pi).sum() < 1e-14
        pi = new / new.sum()
        if done:
            break
    row_entropy = -np.sum(
        np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1)), 0), axis=1
    )
    return Chain(
        successors=succ,
        cum_probs=np.cumsum(probs, axis=1),
        stationary=pi,
        entropy_stationary=float(-np.sum(pi[pi > 0] * np.log(pi[pi > 0]))),
        entropy_rate=float(np.dot(pi, row_entropy)),
    )


def position_entropies(lang: TokenLanguage, chain: Chain, length: int) -> np.ndarray:
    """Exact H(x_t | x_<t) in nats for t = 1 .. length-1 of a sequence of `length` tokens."""
    q = lang.new_prob
    h_marker = 0.0 if q in (0.0, 1.0) else -(q * math.log(q) + (1 - q) * math.log(1 - q))
    out = np.empty(length - 1)
    for t in range(1, length):
        block, offset = divmod(t, lang.block_len + 1)
        if offset == 0:
            out[t - 1] = h_marker
            continue
        h_new = chain.entropy_stationary if offset == 1 else chain.entropy_rate
        out[t - 1] = h_new if block == 0 else q * h_new
    return out


def loss_floor(lang: TokenLanguage, chain: Chain, length: int) -> float:
    """Best achievable mean next-token cross-entropy (nats) on sequences of `length` tokens."""
    return float(position_entropies(lang, chain, length).mean())


def true_nll(lang: TokenLanguage, chain: Chain, x: np.ndarray) -> np.ndarray:
    """-log Pr(x_t | x_<t) under the process, [n_seq, length - 1]: what a Bayes-optimal model
    loses on each predicted token of these very sequences (docs/design.md, "Loss floor"). A
    marker costs -log q or -log(1 - q), the first token of a NEW block -log pi, a later one
    -log P(prev, token); a COPY block's tokens are certain given the context."""
    n_seq, length = x.shape
    t = np.arange(1, length)
    block, offset = divmod(t, lang.block_len + 1)
    starts = block * (lang.block_len + 1)
    new = x[:, starts] == lang.new_marker  # the kind of each predicted position's block
    prob = np.ones((n_seq, length - 1))
    marker = offset == 0
    prob[:, marker] = np.where(x[:, t[marker]] == lang.new_marker, lang.new_prob, 1 - lang.new_prob)
    first = offset == 1
    prob[:, first] = np.where(new[:, first], chain.stationary[x[:, t[first]]], 1.0)
    later = offset > 1
    tl = t[later]
    trans = transition_probs(chain, x[:, tl - 1], x[:, tl])
    prob[:, later] = np.where(new[:, later], trans, 1.0)
    return -np.log(prob)


def transition_probs(chain: Chain, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """P(prev -> nxt) from the chain's sparse rows (0 where nxt is no successor of prev)."""
    cum = chain.cum_probs[prev]  # [..., K]
    probs = np.diff(cum, axis=-1, prepend=0.0)
    hit = chain.successors[prev] == nxt[..., None]
    return np.where(hit, probs, 0.0).sum(axis=-1)


def generate(
    lang: TokenLanguage, chain: Chain, n_seq: int, length: int, rng: np.random.Generator
) -> np.ndarray:
    """Sample `n_seq` sequences of `length` tokens, vectorised over sequences."""
    rows = np.arange(n_seq)
    out = np.empty((n_seq, length), dtype=np.int64)
    is_new = np.ones(n_seq, dtype=bool)
    last_new_start = np.zeros(n_seq, dtype=np.int64)
    cum_pi = np.cumsum(chain.stationary)
    for t in range(length):
        block, offset = divmod(t, lang.block_len + 1)
        if offset == 0:
            is_new = np.ones(n_seq, dtype=bool) if block == 0 else rng.random(n_seq) < lang.new_prob
            out[:, t] = np.where(is_new, lang.new_marker, lang.copy_marker)
            last_new_start = np.where(is_new, t, last_new_start)
            continue
        u = rng.random(n_seq)
        if offset == 1:
            fresh = np.minimum(np.searchsorted(cum_pi, u * cum_pi[-1]), lang.n_text - 1)
        else:
            prev = out[:, t - 1]
            cum = chain.cum_probs[prev]
            pick = np.minimum((u[:, None] * cum[:, -1:] > cum).sum(axis=1), lang.successors - 1)
            fresh = chain.successors[prev, pick]
        copied = out[rows, np.minimum(last_new_start + offset, t - 1)]
        out[:, t] = np.where(is_new, fresh, copied)
    return out


@dataclass
class BuiltinTokens:
    train: np.ndarray  # [n_train, length] uint16
    val: np.ndarray  # [n_val, length] uint16
    loss_floor: float  # the process's: expected over sequences (`loss_floor`)
    info: dict
    val_nll: np.ndarray  # [n_val, length - 1] float64: `true_nll` of the val sequences


def cache_dir() -> Path:
    return lionbench_cache("builtin_tokens")


def load(lang: TokenLanguage, length: int, n_train: int, n_val: int) -> BuiltinTokens:
    """Train and val sequences of `length` tokens, generated once and cached on disk."""
    key = json.dumps([GENERATOR_VERSION, asdict(lang), length, n_train, n_val], sort_keys=True)
    path = cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                info = json.loads(str(z["info"]))
                floor = float(z["floor"])
                return BuiltinTokens(z["train"], z["val"], floor, info, z["val_nll"])
        except Exception:  # a torn, empty or foreign cache file: make it again
            path.unlink(missing_ok=True)
    chain = build_chain(lang)
    rng = np.random.Generator(np.random.PCG64([lang.seed, 1]))
    train = generate(lang, chain, n_train, length, rng).astype(np.uint16)
    val = generate(lang, chain, n_val, length, rng).astype(np.uint16)
    floor = loss_floor(lang, chain, length)
    val_nll = true_nll(lang, chain, val)
    info = {
        "entropy_stationary": chain.entropy_stationary,
        "entropy_rate": chain.entropy_rate,
        "generator_version": GENERATOR_VERSION,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    np.savez(tmp, train=train, val=val, floor=floor, info=json.dumps(info), val_nll=val_nll)
    os.replace(tmp, path)
    return BuiltinTokens(train, val, floor, info, val_nll)
