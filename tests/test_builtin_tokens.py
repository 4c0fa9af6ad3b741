"""The builtin token language: its chain, its samples, its exact loss floor and its cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lionbench.data import builtin_tokens as bt
from lionbench.data.builtin_tokens import TokenLanguage

TINY = TokenLanguage(
    vocab_size=12, successors=3, concentration=0.5, block_len=5, new_prob=0.4, seed=0
)
# conf/recipe_scale/gpt2_smoke.yaml's process
SMOKE = TokenLanguage(
    vocab_size=126, successors=8, concentration=0.5, block_len=7, new_prob=0.5, seed=20230213
)
# conf/recipe/gpt2.yaml's process (scale=full)
FULL = TokenLanguage(
    vocab_size=2048, successors=8, concentration=0.5, block_len=16, new_prob=0.5, seed=20230213
)


def dense(lang: TokenLanguage, chain: bt.Chain) -> np.ndarray:
    """The transition matrix P[i, j] = Pr(next = j | current = i), built densely."""
    n, k = lang.n_text, lang.successors
    probs = np.diff(chain.cum_probs, axis=1, prepend=0.0)
    P = np.zeros((n, n))
    np.add.at(P, (np.repeat(np.arange(n), k), chain.successors.ravel()), probs.ravel())
    return P


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lang",
    [
        TINY,
        SMOKE,
        FULL,
        TokenLanguage(20, 2, 0.1, 3, 0.5, seed=7),  # very sparse, very peaked
        TokenLanguage(30, 30, 5.0, 3, 0.5, seed=3),  # dense rows, many merged duplicates
    ],
    ids=["tiny", "smoke", "full", "sparse", "dense"],
)
def test_chain_stationary_law_is_invariant(lang):
    chain = bt.build_chain(lang)
    n, k = lang.n_text, lang.successors
    assert chain.successors.shape == (n, k) and chain.cum_probs.shape == (n, k)
    assert chain.successors.min() >= 0 and chain.successors.max() < n
    probs = np.diff(chain.cum_probs, axis=1, prepend=0.0)
    assert (probs >= 0).all()
    np.testing.assert_allclose(chain.cum_probs[:, -1], 1.0, rtol=0, atol=1e-12)
    # duplicates merged: a successor listed twice in a row keeps its mass in one entry
    assert (np.diff(chain.successors, axis=1) >= 0).all()  # sorted per row
    dup = np.diff(chain.successors, axis=1) == 0
    assert (probs[:, 1:][dup] == 0).all()

    P = dense(lang, chain)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    pi = chain.stationary
    assert pi.shape == (n,) and (pi >= 0).all()
    assert pi.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.abs(pi @ P - pi).max() < 1e-10

    # the entropies it reports, recomputed from the dense matrices
    h_pi = -sum(x * np.log(x) for x in pi if x > 0)
    row_h = np.array([-sum(x * np.log(x) for x in row if x > 0) for row in P])
    assert chain.entropy_stationary == pytest.approx(h_pi, rel=1e-10)
    assert chain.entropy_rate == pytest.approx(float(pi @ row_h), rel=1e-10)
    assert 0 < chain.entropy_rate < chain.entropy_stationary <= np.log(n) + 1e-12


def test_chain_is_deterministic_in_the_seed():
    a, b = bt.build_chain(SMOKE), bt.build_chain(SMOKE)
    assert np.array_equal(a.successors, b.successors)
    assert np.array_equal(a.cum_probs, b.cum_probs)
    c = bt.build_chain(TokenLanguage(**{**SMOKE.__dict__, "seed": 1}))
    assert not np.array_equal(a.successors, c.successors)


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------


def block_kinds(lang: TokenLanguage, x: np.ndarray) -> np.ndarray:
    """[n_seq, n_blocks] True where the block is NEW."""
    return x[:, :: lang.block_len + 1] == lang.new_marker


def check_structure(lang: TokenLanguage, chain: bt.Chain, x: np.ndarray) -> None:
    n_seq, length = x.shape
    stride = lang.block_len + 1
    assert x.dtype == np.int64
    assert x.min() >= 0 and x.max() < lang.vocab_size
    is_marker_pos = np.arange(length) % stride == 0
    markers = x[:, is_marker_pos]
    assert np.isin(markers, [lang.new_marker, lang.copy_marker]).all()
    assert (x[:, ~is_marker_pos] < lang.n_text).all()  # text tokens never use the markers
    assert (x[:, 0] == lang.new_marker).all()  # the first block is always NEW

    P = dense(lang, chain)
    pi = chain.stationary
    new = block_kinds(lang, x)
    for i in range(n_seq):
        last_new = None
        for b in range(new.shape[1]):
            start = b * stride
            text = x[i, start + 1 : start + stride]
            if new[i, b]:
                last_new = text
                if len(text):
                    assert pi[text[0]] > 0
                assert (P[text[:-1], text[1:]] > 0).all(), "a transition the chain cannot make"
            else:
                assert last_new is not None
                assert np.array_equal(text, last_new[: len(text)]), "COPY != last NEW block"


@pytest.mark.parametrize("new_prob", [0.4, 0.0, 1.0])
def test_generate_structure(new_prob):
    lang = TokenLanguage(**{**TINY.__dict__, "new_prob": new_prob})
    chain = bt.build_chain(lang)
    length = 4 * (lang.block_len + 1) + 3  # ends inside a block
    x = bt.generate(lang, chain, 400, length, np.random.default_rng(5))
    assert x.shape == (400, length)
    check_structure(lang, chain, x)
    later = block_kinds(lang, x)[:, 1:]
    if new_prob == 0.0:
        assert not later.any()
    elif new_prob == 1.0:
        assert later.all()
    else:  # the marker frequency is new_prob (binomial, 4 standard errors)
        se = np.sqrt(new_prob * (1 - new_prob) / later.size)
        assert abs(later.mean() - new_prob) < 4 * se


def test_generate_smoke_language_structure():
    chain = bt.build_chain(SMOKE)
    x = bt.generate(SMOKE, chain, 200, 33, np.random.default_rng(0))
    check_structure(SMOKE, chain, x)


def true_nll(lang: TokenLanguage, chain: bt.Chain, x: np.ndarray) -> np.ndarray:
    """-log Pr(x_t | x_<t) under the true process, [n_seq, length - 1], vectorised."""
    n_seq, length = x.shape
    stride = lang.block_len + 1
    q = lang.new_prob
    P = dense(lang, chain)
    pi = chain.stationary
    t = np.arange(length)
    block, offset = t // stride, t % stride
    new = block_kinds(lang, x)[:, block]  # [n_seq, length]: the kind of each position's block

    prob = np.ones((n_seq, length))
    marker = (offset == 0) & (block > 0)
    prob[:, marker] = np.where(x[:, marker] == lang.new_marker, q, 1 - q)
    first = offset == 1
    prob[:, first] = np.where(new[:, first], pi[x[:, first]], 1.0)
    later = np.flatnonzero(offset > 1)
    trans = P[x[:, later - 1], x[:, later]]
    prob[:, later] = np.where(new[:, later], trans, 1.0)
    # COPY positions have probability 1 only if they really are copies: checked separately
    assert (prob > 0).all()
    return -np.log(prob[:, 1:])


@pytest.mark.parametrize(
    "lang, length",
    [
        (TINY, 4 * 6 + 3),
        (TokenLanguage(**{**TINY.__dict__, "new_prob": 0.0}), 20),
        (TokenLanguage(**{**TINY.__dict__, "new_prob": 1.0}), 20),
        (SMOKE, 33),
    ],
    ids=["tiny", "all-copy", "all-new", "smoke"],
)
def test_loss_floor_matches_empirical_nll(lang, length):
    chain = bt.build_chain(lang)
    x = bt.generate(lang, chain, 20_000, length, np.random.default_rng(123))
    check_structure(lang, chain, x[:300])
    per_seq = true_nll(lang, chain, x).mean(axis=1)  # i.i.d. across sequences
    mean, se = per_seq.mean(), per_seq.std(ddof=1) / np.sqrt(len(per_seq))
    floor = bt.loss_floor(lang, chain, length)
    assert se < 0.01 * floor  # the check has teeth
    assert abs(mean - floor) < 4 * se, (mean, floor, se)


def test_position_entropies_closed_form():
    chain = bt.build_chain(TINY)
    h = bt.position_entropies(TINY, chain, 14)  # positions 1..13; blocks of 1 + 5 tokens
    q = TINY.new_prob
    hm = -(q * np.log(q) + (1 - q) * np.log(1 - q))
    hs, hr = chain.entropy_stationary, chain.entropy_rate
    expected = [hs, hr, hr, hr, hr, hm, q * hs, q * hr, q * hr, q * hr, q * hr, hm, q * hs]
    np.testing.assert_allclose(h, expected, rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# load: deterministic, cached, self-healing
# ---------------------------------------------------------------------------------------------

LOAD_ARGS = (TINY, 22, 64, 16)


def cache_files(root) -> list:
    return sorted((root / "builtin_tokens").iterdir())


def forbid_generation(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(bt, "generate", boom)
    monkeypatch.setattr(bt, "build_chain", boom)


def test_load_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LIONBENCH_CACHE", str(tmp_path / "a"))
    a = bt.load(*LOAD_ARGS)
    assert a.train.dtype == np.uint16 and a.val.dtype == np.uint16
    assert a.train.shape == (64, 22) and a.val.shape == (16, 22)
    chain = bt.build_chain(TINY)
    assert a.loss_floor == bt.loss_floor(TINY, chain, 22)
    assert a.info == {
        "entropy_stationary": chain.entropy_stationary,
        "entropy_rate": chain.entropy_rate,
        "generator_version": bt.GENERATOR_VERSION,
    }
    check_structure(TINY, chain, a.train.astype(np.int64))
    check_structure(TINY, chain, a.val.astype(np.int64))
    assert not np.array_equal(a.train[:16], a.val)  # val is not a copy of train

    files = cache_files(tmp_path / "a")
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary files left

    # the second call reads the file
    with monkeypatch.context() as m:
        forbid_generation(m)
        b = bt.load(*LOAD_ARGS)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val)
    assert b.loss_floor == a.loss_floor and b.info == a.info
    assert b.train.dtype == np.uint16

    # a fresh cache directory generates the very same data
    monkeypatch.setenv("LIONBENCH_CACHE", str(tmp_path / "b"))
    c = bt.load(*LOAD_ARGS)
    assert np.array_equal(a.train, c.train) and np.array_equal(a.val, c.val)
    assert cache_files(tmp_path / "b")[0].name == files[0].name

    # another process or size is another file with other data
    d = bt.load(TokenLanguage(**{**TINY.__dict__, "seed": 1}), 22, 64, 16)
    assert not np.array_equal(a.train, d.train)
    bt.load(TINY, 22, 32, 16)
    assert len(cache_files(tmp_path / "b")) == 3


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _write_npz(path, **arrays) -> bytes:
    tmp = path.with_name("x.npz")
    np.savez(tmp, **arrays)
    data = tmp.read_bytes()
    tmp.unlink()
    return data


@pytest.mark.parametrize(
    "corrupt",
    ["garbage", "empty", "truncated", "missing-key", "bad-info"],
)
def test_load_regenerates_a_corrupt_cache(tmp_path, monkeypatch, corrupt):
    monkeypatch.setenv("LIONBENCH_CACHE", str(tmp_path))
    good = bt.load(*LOAD_ARGS)
    (path,) = cache_files(tmp_path)
    original = path.read_bytes()
    if corrupt == "garbage":
        path.write_bytes(b"this is not an npz file\n" * 20)
    elif corrupt == "empty":
        path.write_bytes(b"")
    elif corrupt == "truncated":  # a torn write
        path.write_bytes(_truncated(original))
    elif corrupt == "missing-key":
        path.write_bytes(_write_npz(path, train=good.train))
    else:
        path.write_bytes(
            _write_npz(path, train=good.train, val=good.val, floor=1.0, info="{not json")
        )

    again = bt.load(*LOAD_ARGS)
    assert np.array_equal(again.train, good.train) and np.array_equal(again.val, good.val)
    assert again.loss_floor == good.loss_floor and again.info == good.info
    # the file was made again, and is read from now on
    with np.load(path) as z:
        assert np.array_equal(z["train"], good.train)
        assert json.loads(str(z["info"])) == good.info
    with monkeypatch.context() as m:
        forbid_generation(m)
        assert np.array_equal(bt.load(*LOAD_ARGS).val, good.val)


def test_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LIONBENCH_CACHE", str(tmp_path / "c"))
    assert bt.cache_dir() == tmp_path / "c" / "builtin_tokens"
    monkeypatch.delenv("LIONBENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert bt.cache_dir() == tmp_path / "home" / ".cache" / "lionbench" / "builtin_tokens"
