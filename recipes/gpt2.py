"""GPT-2 language modelling: the model, its three data sources and its loss.

The model follows nanoGPT: pre-LayerNorm blocks, an MLP with the exact (erf) GELU as nanoGPT's
`nn.GELU()` (`recipe.model.gelu=tanh`: GPT-2's original tanh approximation, which also costs
about 10% of forward + backward on a CPU), SDPA causal attention, learned positions, tied
input/output embeddings, and GPT-2's init (normal 0.02, residual projections scaled by
1/sqrt(2 * n_layer)), its modules built in nanoGPT's order, so that a seed gives nanoGPT's
initial weights. At scale=full it has 124,475,904 parameters. tests/test_nanogpt_parity.py
trains it against a hand-written nanoGPT-style loop: the same losses, bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import open_dict, read_write
from torch import nn

from lionbench import checks
from lionbench.config import check_positive_ints
from lionbench.data import builtin_tokens, tokens
from lionbench.data.stream import RandomBatches, RepeatedBatch
from lionbench.errors import UserError, warn
from lionbench.recipe import Data, Recipe

_SAID: set[str] = set()  # notes already printed by this process

GELU_FORMS = ("exact", "tanh")
# The GELU of a config without `recipe.model.gelu`: one written before the key existed (issue
# 26), when the model always used the tanh form. Such a run keeps its directory (its identity
# has no such key) and this reproduces what it computed.
GELU_BEFORE_THE_KEY = "tanh"


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class MLP(nn.Module):
    """Width 4x, GELU: `exact` (nanoGPT's) or `tanh` (GPT-2's original approximation)."""

    def __init__(self, n_embd: int, bias: bool, dropout: float, gelu: str = "exact") -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.approximate = "tanh" if gelu == "tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    def __init__(
        self, n_embd: int, n_head: int, bias: bool, dropout: float, gelu: str = "exact"
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias, dropout)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias, dropout, gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(
        self,
        n_layer: int,
        n_head: int,
        n_embd: int,
        block_size: int,
        vocab_size: int,
        bias: bool = True,
        dropout: float = 0.0,
        gelu: str = "exact",
    ) -> None:
        super().__init__()
        self.n_layer, self.n_head, self.n_embd = n_layer, n_head, n_embd
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, bias, dropout, gelu) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied embeddings
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))

    def n_params_for_flops(self) -> int:
        """Parameters counted in 6N (nanoGPT/PaLM convention: all but position embeddings)."""
        return sum(p.numel() for p in self.parameters()) - self.wpe.weight.numel()


def eval_floor(val_nll: np.ndarray, micro_batch: int) -> float:
    """The exact loss floor of the eval set: the Bayes-optimal model's loss on exactly the eval
    tokens, averaged as `evaluate` averages the recipe's loss (each eval batch's mean over its
    tokens, then the mean over batches, weighted by their tokens when the last batch is shorter:
    `train.eval_batches=all`), not the process's expected value, from which a finite eval set
    departs (docs/design.md, "Loss floor and gap")."""
    batches = [val_nll[i : i + micro_batch] for i in range(0, len(val_nll), micro_batch)]
    means = [b.mean() for b in batches]
    if len({b.size for b in batches}) == 1:
        return float(np.mean(means))
    return float(np.average(means, weights=[b.size for b in batches]))


class WeightedBatches(list):
    """Eval batches that differ in size, with the targets each counts: `evaluate` weights the
    batch means by them (loop/evaluation.py), so that the result is the mean over targets."""

    def __init__(self, batches: list[Any], weights: list[int]) -> None:
        super().__init__(batches)
        self.weights = weights


class GPT2Recipe(Recipe):
    metrics = frozenset({"loss", "ppl"})

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.model_cfg = cfg.recipe.model
        self.tokens_per_example = int(self.model_cfg.block_size)

    def train_data_size(self) -> int | None:
        """Builtin: its train sequences' targets; token files: train.bin's tokens."""
        import os

        source = self.cfg.data.source
        if source == "builtin":
            return int(self.cfg.recipe.builtin.train_sequences) * self.tokens_per_example
        if source == "tokens":
            with contextlib.suppress(OSError):
                return os.path.getsize(os.path.join(str(self.cfg.data.dir), "train.bin")) // 2
        return None

    def check(self) -> None:
        m = self.model_cfg
        check_positive_ints(
            m, ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"), "recipe.model"
        )
        if m.n_embd % m.n_head:
            raise UserError(
                f"recipe.model.n_embd ({m.n_embd}) must be divisible by "
                f"recipe.model.n_head ({m.n_head})"
            )
        checks.unit_interval(m.dropout, "recipe.model.dropout")
        checks.boolean(m.bias, "recipe.model.bias")
        checks.choice(m.get("gelu", GELU_BEFORE_THE_KEY), "recipe.model.gelu", GELU_FORMS)
        source = self.cfg.data.source
        if source == "builtin":
            b = self.cfg.recipe.builtin
            if not 3 <= b.vocab_size <= m.vocab_size:
                raise UserError(
                    f"recipe.builtin.vocab_size must be in [3, recipe.model.vocab_size"
                    f"={m.vocab_size}], got {b.vocab_size}"
                )
            if not 0.0 <= b.new_prob <= 1.0:
                raise UserError(f"recipe.builtin.new_prob must be in [0, 1], got {b.new_prob}")
            keys = ("successors", "block_len", "train_sequences", "val_sequences")
            check_positive_ints(b, keys, "recipe.builtin")
        elif source == "tokens":
            self.fit_vocab()
            tokens.check_dir(self.cfg.data.dir, m.block_size, m.vocab_size)

    def fit_vocab(self) -> None:
        """recipe.model.vocab_size raised to meta.json's vocabulary when that is larger (a smoke
        model's 128 against byte-level files' 257): the file says what its ids need. In place,
        before the run's identity is taken (config.yaml records it); said once per process."""
        m = self.model_cfg
        vocab = tokens.meta_vocab(self.cfg.data.dir)
        if vocab is None or vocab <= m.vocab_size:
            return
        line = f"recipe.model.vocab_size {m.vocab_size} -> {vocab}: the vocabulary of meta.json"
        if line not in _SAID:
            _SAID.add(line)
            print(f"note: {line} in {self.cfg.data.dir}", file=sys.stderr, flush=True)
        with open_dict(m), read_write(m):
            m.vocab_size = vocab

    def build_model(self) -> GPT:
        m = self.model_cfg
        return GPT(
            m.n_layer, m.n_head, m.n_embd, m.block_size, m.vocab_size, m.bias, float(m.dropout),
            str(m.get("gelu", GELU_BEFORE_THE_KEY)),
        )  # fmt: skip

    def build_data(
        self, batch_size: int, micro_batch: int, device: torch.device, data_seed: int
    ) -> Data:
        source = self.cfg.data.source
        eval_batches = self.cfg.train.eval_batches
        n_eval = None if eval_batches == "all" else int(eval_batches) * batch_size
        length = int(self.model_cfg.block_size) + 1
        if source == "builtin":
            return self._builtin(batch_size, micro_batch, device, data_seed, n_eval, length)
        if source == "tokens":
            return self._token_files(batch_size, micro_batch, device, data_seed, n_eval, length)
        return self._synthetic(batch_size, device, data_seed, length)

    def _builtin(
        self,
        batch_size: int,
        micro_batch: int,
        device: torch.device,
        data_seed: int,
        n_eval: int | None,
        length: int,
    ) -> Data:
        """The builtin token language; its val sequences are distinct draws of the process, and
        `n_eval=None` (`train.eval_batches=all`) evaluates all `recipe.builtin.val_sequences`."""
        b = self.cfg.recipe.builtin
        n_eval = int(b.val_sequences) if n_eval is None else n_eval
        lang = builtin_tokens.TokenLanguage(
            vocab_size=int(b.vocab_size),
            successors=int(b.successors),
            concentration=float(b.concentration),
            block_len=int(b.block_len),
            new_prob=float(b.new_prob),
            seed=int(b.seed),
        )
        data = builtin_tokens.load(
            lang, length, int(b.train_sequences), max(int(b.val_sequences), n_eval)
        )
        pool = torch.from_numpy(data.train.astype(np.int64)).to(device)
        val = torch.from_numpy(data.val[:n_eval].astype(np.int64)).to(device)

        def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            rows = pool[torch.randint(len(pool), (batch_size,), generator=gen).to(device)]
            return rows[:, :-1], rows[:, 1:]

        eval_batches: list[Any] = [(r[:, :-1], r[:, 1:]) for r in val.split(micro_batch)]
        sizes = [len(x) for x, _ in eval_batches]
        if len(set(sizes)) > 1:  # `all`: a shorter last batch
            eval_batches = WeightedBatches(eval_batches, [n * (length - 1) for n in sizes])
        info = {
            "data_vocab_size": lang.vocab_size,
            **data.info,
            "loss_floor_process": data.loss_floor,
        }
        floor = eval_floor(data.val_nll[:n_eval], micro_batch)
        return Data(RandomBatches(draw, data_seed), eval_batches, floor, info)

    def _token_files(
        self,
        batch_size: int,
        micro_batch: int,
        device: torch.device,
        data_seed: int,
        n_eval: int | None,
        length: int,
    ) -> Data:
        """nanoGPT's token files: training windows drawn as nanoGPT's `get_batch` draws them
        (a uniform start in [0, len - block_size), with the run's data generator); eval tiles
        without replacement, or every target of the split once (data/tokens.py)."""
        directory = self.cfg.data.dir
        train, val = tokens.open_split(directory, "train"), tokens.open_split(directory, "val")
        pin = device.type == "cuda"

        def to_device(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            t = torch.from_numpy(rows)
            t = t.pin_memory().to(device, non_blocking=True) if pin else t.to(device)
            return t[:, :-1], t[:, 1:]

        def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            starts = torch.randint(len(train) - length + 1, (batch_size,), generator=gen)
            return to_device(tokens.windows(train, starts.numpy(), length))

        def eval_to_device(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if pin:
                return tuple(t.pin_memory().to(device, non_blocking=True) for t in (x, y))
            return x.to(device), y.to(device)

        tiles = tokens.n_tiles(len(val), length - 1)
        if n_eval is not None and n_eval > tiles:  # drawn without replacement: all there is
            t = self.cfg.train
            warn(
                f"train.eval_batches={t.eval_batches} x train.batch_size={t.batch_size} asks for "
                f"{n_eval} eval windows, but {directory}/val.bin holds {tiles} windows of "
                f"{length} tokens whose targets do not overlap: evaluating the whole split, "
                f"every target once, as train.eval_batches=all does"
            )
            n_eval = None
        plan = tokens.eval_plan(len(val), length - 1, n_eval, int(self.cfg.data.eval_seed))
        eval_set = tokens.EvalWindows(val, plan, length - 1, micro_batch, eval_to_device)
        info: dict[str, Any] = {"train_tokens": len(train), "val_tokens": len(val)}
        if n_eval is None:  # the whole split: its targets (every token but the first)
            info["eval_targets"] = eval_set.targets
        return Data(RandomBatches(draw, data_seed), eval_set, None, info)

    def _synthetic(
        self, batch_size: int, device: torch.device, data_seed: int, length: int
    ) -> Data:
        gen = torch.Generator().manual_seed(data_seed)
        vocab = int(self.model_cfg.vocab_size)
        rows = torch.randint(vocab, (batch_size, length), generator=gen).to(device)
        batch = (rows[:, :-1], rows[:, 1:])
        return Data(RepeatedBatch(batch), [batch], None, {})

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten()), {}

    def eval_metrics(self, means: dict[str, float]) -> dict[str, float]:
        return {"ppl": math.exp(min(means["loss"], 700.0))}

    def flops_per_example(self, model: nn.Module) -> float:
        """6N + 12 L H Q T per token (PaLM appendix B / nanoGPT), times T tokens."""
        assert isinstance(model, GPT)
        t = self.model_cfg.block_size
        per_token = 6 * model.n_params_for_flops() + 12 * model.n_layer * model.n_embd * t
        return float(per_token * t)


RECIPE = GPT2Recipe
