"""`lionbench prepare text`: local text or JSONL -> nanoGPT token files for `data=tokens`.

Documents are separated by an end-of-text token (GPT-2's 50256, or 256 for bytes), whole
documents go to train or val, and every file is written atomically.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lionbench.errors import UserError, check_output_dir
from lionbench.files import atomic_write_text

TOKENIZERS = ("bytes", "gpt2")


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, end-of-text 256: no vocabulary file, nothing to download."""

    name = "bytes"
    vocab_size = 257
    eot = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class GPT2Tokenizer:
    """tiktoken's GPT-2 BPE (the `gpt2` extra); end-of-text 50256 as nanoGPT's data scripts."""

    name = "gpt2"
    vocab_size = 50257

    def __init__(self) -> None:
        try:
            import tiktoken
        except ImportError:
            raise UserError(
                "--tokenizer gpt2 needs tiktoken: pip install 'lionbench[gpt2]' "
                "(or use --tokenizer bytes)"
            ) from None
        try:
            self.enc = tiktoken.get_encoding("gpt2")
        except Exception as e:
            raise UserError(
                f"cannot load the GPT-2 BPE vocabulary ({type(e).__name__}; tiktoken "
                f"downloads it once, is there a network?): use --tokenizer bytes"
            ) from None
        self.eot = self.enc.eot_token

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)


def make_tokenizer(name: str) -> ByteTokenizer | GPT2Tokenizer:
    if name == "bytes":
        return ByteTokenizer()
    if name == "gpt2":
        return GPT2Tokenizer()
    raise UserError(f"unknown --tokenizer '{name}' (accepted: {', '.join(TOKENIZERS)})")


def read_documents(path: Path, field: str) -> Iterator[str]:
    """A .jsonl file gives one document per record (its `field`); any other file is one document."""
    try:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8-sig") as f:  # -sig: a byte-order mark is dropped
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        raise UserError(f"{path}:{n} is not valid JSON") from None
                    if not isinstance(record, dict) or not isinstance(record.get(field), str):
                        raise UserError(
                            f"{path}:{n} has no text field '{field}' (choose it with --jsonl-field)"
                        )
                    yield record[field]
        else:
            yield path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None


def distinct_files(files: list[Path]) -> list[Path]:
    """Each file once, in the order given: a file named again, or through a symlink or another
    path (a shell glob over a file and a link to it), is read once, with one line saying so;
    read twice, its documents could land in train from one copy and in val from the other."""
    seen: dict[Path, Path] = {}
    for f in files:
        if not f.is_file():
            raise UserError(f"{f} is not a file (give text or .jsonl files)")
        first = seen.setdefault(f.resolve(), f)
        if first is not f:
            same = "given again" if str(first) == str(f) else f"the same file as {first}"
            print(f"note: {f} is {same}: read once", file=sys.stderr)
    return list(seen.values())


def prepare_text(
    files: list[Path],
    out: Path,
    tokenizer: str = "bytes",
    val_fraction: float = 0.1,
    field: str = "text",
) -> dict[str, Any]:
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    files = distinct_files(files)
    check_output_dir(out)
    tok = make_tokenizer(tokenizer)
    docs = [
        np.array([*tok.encode(text), tok.eot], dtype=np.uint16)
        for f in files
        for text in read_documents(f, field)
        if text
    ]
    if not docs:
        raise UserError("no text found in the given files")
    if len(docs) >= 2:
        n_val = min(len(docs) - 1, max(1, round(len(docs) * val_fraction)))
        train, val = np.concatenate(docs[:-n_val]), np.concatenate(docs[-n_val:])
    else:  # a single document: split its tokens instead
        stream = docs[0]
        cut = len(stream) - max(1, int(len(stream) * val_fraction))
        train, val = stream[:cut], stream[cut:]
    out.mkdir(parents=True, exist_ok=True)
    for name, arr in (("train", train), ("val", val)):
        tmp = out / f".{name}.bin.tmp"
        arr.astype(np.uint16).tofile(tmp)
        tmp.replace(out / f"{name}.bin")
    meta = {
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "eot_token": tok.eot,
        "dtype": "uint16",
        "documents": len(docs),
        "train_tokens": len(train),
        "val_tokens": len(val),
        "sources": [str(f) for f in files],
    }
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    return meta
