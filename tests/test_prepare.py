"""`lionbench prepare text` and the token-directory check that `data=tokens` runs first."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lionbench.commands.prepare import prepare_text
from lionbench.data import tokens
from lionbench.errors import UserError

DOCS_TXT = [
    "The quick brown fox jumps over the lazy dog.\nSecond line.\n",
    "Ünïcödé text: naïve café, 東京, emoji 🦁 and a tab\t.",
]
DOCS_JSONL = ["first record from jsonl", "second record\nwith a newline", "third, short"]


def write_inputs(tmp_path: Path) -> list[Path]:
    files = []
    for i, text in enumerate(DOCS_TXT):
        f = tmp_path / f"doc{i}.txt"
        f.write_text(text, encoding="utf-8")
        files.append(f)
    jl = tmp_path / "more.jsonl"
    lines = [json.dumps({"text": t, "id": i}) for i, t in enumerate(DOCS_JSONL)]
    jl.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n", encoding="utf-8")  # a blank
    files.append(jl)
    return files


def read_split(out: Path, split: str) -> np.ndarray:
    return np.fromfile(out / f"{split}.bin", dtype=np.uint16)


def split_docs(stream: np.ndarray, eot: int) -> list[np.ndarray]:
    """Documents of a token stream, each terminated by `eot`."""
    assert stream[-1] == eot
    cuts = np.flatnonzero(stream == eot)
    return np.split(stream[: cuts[-1]], cuts[:-1] + 1)


def decode_bytes(doc: np.ndarray) -> str:
    if len(doc) and doc[-1] == 256:
        doc = doc[:-1]
    assert (doc < 256).all()
    return bytes(doc.astype(np.uint8).tolist()).decode("utf-8")


# ---------------------------------------------------------------------------------------------
# The bytes tokenizer round trip
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("val_fraction", [0.2, 0.4, 0.5])
def test_prepare_bytes_round_trip(tmp_path, val_fraction):
    files = write_inputs(tmp_path)
    out = tmp_path / "out"
    meta = prepare_text(files, out, "bytes", val_fraction=val_fraction)

    docs = DOCS_TXT + DOCS_JSONL  # files in order, JSONL records in order
    n_val = max(1, round(len(docs) * val_fraction))
    train, val = read_split(out, "train"), read_split(out, "val")
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == meta
    assert meta["tokenizer"] == "bytes"
    assert meta["vocab_size"] == 257
    assert meta["eot_token"] == 256
    assert meta["dtype"] == "uint16"
    assert meta["documents"] == len(docs)
    assert meta["sources"] == [str(f) for f in files]
    assert meta["train_tokens"] == (out / "train.bin").stat().st_size // 2 == len(train)
    assert meta["val_tokens"] == (out / "val.bin").stat().st_size // 2 == len(val)
    n_bytes = sum(len(d.encode("utf-8")) + 1 for d in docs)
    assert len(train) + len(val) == n_bytes

    # whole documents, each followed by 256, the last n_val of them in val
    train_docs = [decode_bytes(d) for d in split_docs(train, 256)]
    val_docs = [decode_bytes(d) for d in split_docs(val, 256)]
    assert train_docs == docs[:-n_val]
    assert val_docs == docs[-n_val:]
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train.bin", "val.bin"]

    # the directory it made is a valid data=tokens directory
    assert tokens.check_dir(str(out), 8, 257) == meta
    rows = tokens.windows(tokens.open_split(str(out), "train"), np.array([0, 3]), 5)
    assert rows.dtype == np.int64
    assert np.array_equal(rows[1], train[3:8])


def test_prepare_single_document_splits_tokens(tmp_path):
    f = tmp_path / "one.txt"
    text = "abcdefghij" * 10  # 100 bytes + eot = 101 tokens
    f.write_text(text)
    meta = prepare_text([f], tmp_path / "out", "bytes", val_fraction=0.1)
    train, val = read_split(tmp_path / "out", "train"), read_split(tmp_path / "out", "val")
    assert len(val) == 10 and len(train) == 91
    assert meta["documents"] == 1
    assert np.array_equal(np.concatenate([train, val]), [*text.encode(), 256])


def test_prepare_skips_empty_documents_and_overwrites(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "a.txt").write_text("aaa")
    (tmp_path / "b.txt").write_text("bb")
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.bin").write_bytes(b"\x01" * 1000)  # an old, bigger file is replaced
    files = [tmp_path / n for n in ("empty.txt", "a.txt", "b.txt")]
    meta = prepare_text(files, out, "bytes", val_fraction=0.5)
    assert meta["documents"] == 2
    assert read_split(out, "train").tolist() == [97, 97, 97, 256]
    assert read_split(out, "val").tolist() == [98, 98, 256]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_prepare_jsonl_field(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"body": "xy"}\n{"body": "z"}\n')
    prepare_text([f], tmp_path / "out", "bytes", val_fraction=0.5, field="body")
    assert read_split(tmp_path / "out", "train").tolist() == [120, 121, 256]
    assert read_split(tmp_path / "out", "val").tolist() == [122, 256]


# ---------------------------------------------------------------------------------------------
# Bad input: UserError, and nothing written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing-file", "is not a file"),
        ("directory-input", "is not a file"),
        ("val-fraction-0", "val-fraction"),
        ("val-fraction-1", "val-fraction"),
        ("val-fraction-negative", "val-fraction"),
        ("unknown-tokenizer", "accepted: bytes, gpt2"),
        ("jsonl-no-field", "no text field 'text'"),
        ("jsonl-field-not-str", "no text field 'text'"),
        ("jsonl-not-object", "no text field 'text'"),
        ("jsonl-bad-json", "not valid JSON"),
        ("not-utf8", "not UTF-8"),
        ("empty-input", "no text"),
        ("blank-jsonl", "no text"),
        ("out-is-a-file", "not a directory"),
    ],
)
def test_prepare_bad_input(tmp_path, case, match):
    good = tmp_path / "good.txt"
    good.write_text("hello")
    out = tmp_path / "out"
    kwargs: dict = {"tokenizer": "bytes", "val_fraction": 0.1}
    files = [good]
    if case == "missing-file":
        files = [good, tmp_path / "nope.txt"]
    elif case == "directory-input":
        files = [tmp_path]
    elif case.startswith("val-fraction"):
        kwargs["val_fraction"] = {"0": 0.0, "1": 1.0, "negative": -0.1}[case.split("-")[-1]]
    elif case == "unknown-tokenizer":
        kwargs["tokenizer"] = "sentencepiece"
    elif case.startswith("jsonl") or case == "blank-jsonl":
        bad = tmp_path / "bad.jsonl"
        line = {
            "jsonl-no-field": '{"content": "x"}',
            "jsonl-field-not-str": '{"text": 3}',
            "jsonl-not-object": '["text"]',
            "jsonl-bad-json": '{"text": "x"',
            "blank-jsonl": "   ",
        }[case]
        bad.write_text('{"text": "fine"}\n' * (case != "blank-jsonl") + line + "\n")
        files = [bad]
    elif case == "not-utf8":
        bad = tmp_path / "latin1.txt"
        bad.write_bytes("café".encode("latin-1"))
        files = [good, bad]
    elif case == "empty-input":
        empty = tmp_path / "empty.txt"
        empty.write_text("")
        files = [empty]
    elif case == "out-is-a-file":
        out.write_text("occupied")

    with pytest.raises(UserError, match=match) as err:
        prepare_text(files, out, **kwargs)
    assert "\n" not in str(err.value)  # one line
    if case != "out-is-a-file":
        assert not out.exists(), "bad input must leave nothing behind"


# ---------------------------------------------------------------------------------------------
# The gpt2 tokenizer, without the network
# ---------------------------------------------------------------------------------------------


def test_gpt2_without_vocabulary_points_to_bytes(tmp_path, monkeypatch):
    tiktoken = pytest.importorskip("tiktoken")

    def offline(name):
        raise ConnectionError(f"cannot download {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", offline)
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(UserError, match="bytes") as err:
        prepare_text([tmp_path / "a.txt"], tmp_path / "out", "gpt2")
    assert "ConnectionError" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_gpt2_without_tiktoken(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import fails
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(UserError, match="tiktoken") as err:
        prepare_text([tmp_path / "a.txt"], tmp_path / "out", "gpt2")
    assert "bytes" in str(err.value)


class FakeEncoding:
    """Stands in for tiktoken's GPT-2 encoding: ids above 2**15 test unsigned storage."""

    eot_token = 50256

    def __init__(self) -> None:
        self.calls: list[str] = []

    def encode_ordinary(self, text: str) -> list[int]:
        self.calls.append(text)
        return [40000 + (ord(c) % 10000) for c in text]


def test_gpt2_with_fake_encoding(tmp_path, monkeypatch):
    fake = FakeEncoding()
    requested = []

    def get_encoding(name):
        requested.append(name)
        return fake

    monkeypatch.setitem(sys.modules, "tiktoken", types.SimpleNamespace(get_encoding=get_encoding))
    texts = ["abc", "hé", "zz"]
    files = []
    for i, t in enumerate(texts):
        files.append(tmp_path / f"{i}.txt")
        files[-1].write_text(t, encoding="utf-8")
    out = tmp_path / "out"
    meta = prepare_text(files, out, "gpt2", val_fraction=0.34)

    assert requested == ["gpt2"]
    assert fake.calls == texts
    assert meta["tokenizer"] == "gpt2"
    assert meta["vocab_size"] == 50257
    assert meta["eot_token"] == 50256
    expected = [[40000 + ord(c) % 10000 for c in t] + [50256] for t in texts]
    assert read_split(out, "train").tolist() == expected[0] + expected[1]
    assert read_split(out, "val").tolist() == expected[2]
    assert json.loads((out / "meta.json").read_text())["vocab_size"] == 50257
    # a GPT-2-sized model accepts it, a bytes-sized one does not
    assert tokens.check_dir(str(out), 1, 50304)["eot_token"] == 50256
    with pytest.raises(UserError, match="vocab_size 50257"):
        tokens.check_dir(str(out), 1, 257)


# ---------------------------------------------------------------------------------------------
# tokens.check_dir
# ---------------------------------------------------------------------------------------------


def make_token_dir(root: Path, n_train: int = 100, n_val: int = 50, meta: dict | None = None):
    root.mkdir(parents=True, exist_ok=True)
    np.arange(n_train, dtype=np.uint16).tofile(root / "train.bin")
    np.arange(n_val, dtype=np.uint16).tofile(root / "val.bin")
    if meta is not None:
        (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_check_dir_good(tmp_path):
    d = make_token_dir(tmp_path / "d", meta={"vocab_size": 257, "tokenizer": "bytes"})
    assert tokens.check_dir(str(d), 16, 257) == {"vocab_size": 257, "tokenizer": "bytes"}
    assert tokens.check_dir(str(d), 16, 512)["vocab_size"] == 257
    # meta.json is optional
    assert tokens.check_dir(str(make_token_dir(tmp_path / "nometa")), 16, 100) == {}


def test_check_dir_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    make_token_dir(tmp_path / "data")
    assert tokens.check_dir("~/data", 8, 100) == {}


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing-dir", "is not a directory"),
        ("a-file", "is not a directory"),
        ("missing-val", "val.bin is missing"),
        ("missing-train", "train.bin is missing"),
        ("odd-length", "odd byte length"),
        ("too-few-train", "fewer than one window"),
        ("too-few-val", "fewer than one window"),
        ("vocab-too-large", "vocab_size 50257"),
        ("bad-meta", "not valid JSON"),
    ],
)
def test_check_dir_bad(tmp_path, case, match):
    d = tmp_path / "d"
    if case == "a-file":
        d.write_text("x")
    elif case != "missing-dir":
        make_token_dir(d)
    if case == "missing-val":
        (d / "val.bin").unlink()
    elif case == "missing-train":
        (d / "train.bin").unlink()
    elif case == "odd-length":
        (d / "val.bin").write_bytes(b"\0" * 101)
    elif case == "too-few-train":
        np.zeros(10, dtype=np.uint16).tofile(d / "train.bin")
    elif case == "too-few-val":
        np.zeros(5, dtype=np.uint16).tofile(d / "val.bin")
    elif case == "vocab-too-large":
        (d / "meta.json").write_text(json.dumps({"vocab_size": 50257}))
    elif case == "bad-meta":
        (d / "meta.json").write_text("{")
    with pytest.raises(UserError, match=match) as err:
        tokens.check_dir(str(d), 16, 512)
    assert "\n" not in str(err.value)


def test_check_dir_window_boundary(tmp_path):
    """One training/eval window is block_size + 1 tokens (inputs and shifted targets), and the
    gpt2 recipe draws windows from any file with at least that many tokens."""
    block = 16
    d = make_token_dir(tmp_path / "d", n_train=100, n_val=block)
    with pytest.raises(UserError, match="fewer than one window"):
        tokens.check_dir(str(d), block, 512)
    make_token_dir(d, n_train=100, n_val=block + 1)
    # exactly one window fits: tokens.windows can cut it, so the check must accept it
    val = tokens.open_split(str(d), "val")
    assert tokens.windows(val, np.array([0]), block + 1).shape == (1, block + 1)
    tokens.check_dir(str(d), block, 512)
