"""nanoGPT parity (issue 26): `lionbench run recipe=gpt2` trains exactly what a nanoGPT-style
loop trains, and evaluates what other harnesses call the validation loss.

The reference below is written for this test in the style of nanoGPT's `model.py` and
`train.py` (nothing is taken from lionbench's model): its own GPT with `nn.GELU()`, nanoGPT's
module order and init, its `get_batch` on the token files, AdamW over nanoGPT's two parameter
groups (the per-tensor loop, what torch picks on a CPU), clipping at 1.0, the lr set at the start
of every iteration. Given the same seeds it must produce lionbench's losses bit for bit: on a CPU
in fp32 both do the same float operations in the same order, so any difference at all is a
difference in the model, the data order, the schedule or the optimizer.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import metrics, run_dirs, run_inprocess, summary
from omegaconf import OmegaConf
from torch import nn

from lionbench import config
from lionbench.data import tokens
from lionbench.loop.evaluation import evaluate
from lionbench.loop.train import derive_seed, tensor_hash
from lionbench.optim.schedule import lr_factor
from lionbench.recipe import load_recipe

# scale=smoke's model: 2 layers, 2 heads, width 32, context 32, vocab 128, batch 8
N_LAYER, N_HEAD, N_EMBD, BLOCK, VOCAB, BATCH = 2, 2, 32, 32, 128, 8
STEPS, WARMUP, LR, MIN_FRAC, WD, BETAS, CLIP = 40, 5, 3e-3, 0.1, 0.1, (0.9, 0.95), 1.0
VAL_TOKENS = 1100  # 34 tiles of 33 tokens and a tail of 11 targets: 35 windows, batches 8+...+3


def write_token_files(directory, val_tokens: int = VAL_TOKENS) -> None:
    """A learnable token stream (a random sparse Markov chain) in nanoGPT's format."""
    rng = np.random.default_rng(26)
    successors = rng.integers(0, VOCAB, size=(VOCAB, 3))
    stream = np.empty(20_000 + val_tokens, dtype=np.uint16)
    stream[0] = 0
    for i in range(1, len(stream)):
        stream[i] = successors[stream[i - 1], rng.integers(3)]
    directory.mkdir(parents=True, exist_ok=True)
    stream[:20_000].tofile(directory / "train.bin")
    stream[20_000:].tofile(directory / "val.bin")


# ------------------------------------------------------------------- the nanoGPT-style reference


class LayerNorm(nn.Module):
    def __init__(self, ndim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD)
        self.c_proj = nn.Linear(N_EMBD, N_EMBD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(N_EMBD, dim=2)
        q = q.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2)
        k = k.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2)
        v = v.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class FeedForward(nn.Module):
    def __init__(self, gelu: nn.Module) -> None:
        super().__init__()
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD)
        self.gelu = gelu
        self.c_proj = nn.Linear(4 * N_EMBD, N_EMBD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Layer(nn.Module):
    def __init__(self, gelu: nn.Module) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(N_EMBD)
        self.attn = SelfAttention()
        self.ln_2 = LayerNorm(N_EMBD)
        self.mlp = FeedForward(gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoStyleGPT(nn.Module):
    """GPT as nanoGPT builds it: modules in its order, `wte` tied to `lm_head`, N(0, 0.02)
    init and the residual projections at 0.02 / sqrt(2 * n_layer)."""

    def __init__(self, gelu: nn.Module) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(VOCAB, N_EMBD),
                "wpe": nn.Embedding(BLOCK, N_EMBD),
                "drop": nn.Dropout(0.0),
                "h": nn.ModuleList(Layer(gelu) for _ in range(N_LAYER)),
                "ln_f": LayerNorm(N_EMBD),
            }
        )
        self.lm_head = nn.Linear(N_EMBD, VOCAB, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self.init_module)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * N_LAYER))

    @staticmethod
    def init_module(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the batch, as nanoGPT's forward returns it."""
        pos = torch.arange(0, idx.size(1), dtype=torch.long)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for layer in self.transformer.h:
            x = layer(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def token_losses(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(0, idx.size(1), dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for layer in self.transformer.h:
            x = layer(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return F.cross_entropy(logits.view(-1, VOCAB), targets.view(-1), reduction="none")


def get_lr(it: int) -> float:
    """lionbench's schedule, written out (docs/design.md, section 5): warmup from lr / w at
    step 0 to lr at step w - 1, cosine from lr at step w to lr * min_frac at the last step."""
    if it < WARMUP:
        return LR * ((it + 1) / WARMUP)
    progress = (it - WARMUP) / (STEPS - WARMUP - 1)
    return LR * (MIN_FRAC + (1.0 - MIN_FRAC) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@torch.no_grad()
def whole_split_loss(model: NanoStyleGPT, val: np.ndarray) -> float:
    """Mean loss over every token of the split but the first, each predicted once: windows at
    0, T, 2T, ..., then the end of the split predicted from a window ending there."""
    model.eval()
    losses, predicted = [], 0
    for start in [*range(0, len(val) - BLOCK, BLOCK), len(val) - 1 - BLOCK]:
        chunk = torch.from_numpy(val[start : start + BLOCK + 1].astype(np.int64))[None]
        per_token = model.token_losses(chunk[:, :-1], chunk[:, 1:])
        new = start + BLOCK - predicted  # targets start + 1 .. start + BLOCK, those not yet seen
        losses.append(per_token[BLOCK - min(new, BLOCK) :])
        predicted = start + BLOCK
    model.train()
    every = torch.cat(losses)
    assert len(every) == len(val) - 1
    return float(every.double().mean())


def nanogpt_loop(directory, gelu: nn.Module, seed: int, steps: int = STEPS) -> dict:
    """nanoGPT's train.py, reduced to what a CPU fp32 run does, on lionbench's seeds (the
    first `steps` of the STEPS the schedule is laid out for)."""
    torch.manual_seed(derive_seed(seed, "init"))
    model = NanoStyleGPT(gelu)
    init_hash = tensor_hash(list(model.state_dict().values()))
    train_data = np.memmap(directory / "train.bin", dtype=np.uint16, mode="r")
    val_data = np.memmap(directory / "val.bin", dtype=np.uint16, mode="r")
    gen = torch.Generator().manual_seed(derive_seed(seed, "data"))

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(train_data) - BLOCK, (BATCH,), generator=gen)
        x = torch.stack([torch.from_numpy(train_data[i : i + BLOCK].astype(np.int64)) for i in ix])
        y = torch.stack(
            [torch.from_numpy(train_data[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in ix]
        )
        return x, y

    params = dict(model.named_parameters())
    groups = [
        {"params": [p for p in params.values() if p.dim() >= 2], "weight_decay": WD},
        {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=BETAS)
    out = {"init_hash": init_hash, "val_0": whole_split_loss(model, val_data), "train": []}
    x, y = get_batch()
    out["first_batch_hash"] = tensor_hash([x, y])
    for it in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it)
        loss = model(x, y)
        loss = loss / 1  # gradient_accumulation_steps
        x, y = get_batch()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out["train"].append(loss.item())
    out["val_end"] = whole_split_loss(model, val_data)
    return out


# ---------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("gelu", ["exact", "tanh"])
def test_lionbench_trains_gpt2_exactly_as_a_nanogpt_loop(tmp_path, gelu):
    """The default model (exact GELU, nanoGPT's) and the tanh option each train bit for bit as
    the reference with the same GELU: initial weights, first batch, every step's train loss;
    the whole-split val loss (`train.eval_batches=all`) agrees to float32 summation order."""
    data = tmp_path / "tokens"
    write_token_files(data)
    overrides = [
        "data=tokens",
        f"data.dir={data}",
        "optim=adamw",
        "optim.impl=loop",  # torch's per-tensor AdamW: what nanoGPT gets on a CPU
        f"recipe.adamw.lr={LR}",
        f"recipe.adamw.weight_decay={WD}",
        f"recipe.adamw.betas=[{BETAS[0]},{BETAS[1]}]",
        f"train.steps={STEPS}",
        f"train.batch_size={BATCH}",
        f"train.grad_clip={CLIP}",
        "train.log_interval=1",
        f"train.eval_interval={STEPS}",
        "train.eval_batches=all",
        f"sched.warmup_steps={WARMUP}",
        f"sched.final_lr_frac={MIN_FRAC}",
        *([] if gelu == "exact" else ["recipe.model.gelu=tanh"]),  # exact is the default
    ]
    assert run_inprocess(tmp_path / "results", *overrides) == 0
    (run,) = run_dirs(tmp_path / "results")
    records = metrics(run)
    ours = [r["loss"] for r in records if r["split"] == "train"]
    vals = [r["loss"] for r in records if r["split"] == "val"]
    lrs = [r["lr"] for r in records if r["split"] == "train"]

    reference = nanogpt_loop(data, nn.GELU(approximate="none" if gelu == "exact" else "tanh"), 0)
    s = summary(run)
    assert s["init_state_hash"] == reference["init_hash"]
    assert s["first_batch_hash"] == reference["first_batch_hash"]
    assert lrs == [get_lr(it) for it in range(STEPS)]
    assert ours == reference["train"]  # bit for bit, every step
    assert ours[-1] < ours[0] - 0.5  # and it learned something
    assert vals[0] == pytest.approx(reference["val_0"], rel=1e-6)
    assert vals[-1] == pytest.approx(reference["val_end"], rel=1e-6)
    assert s["data_info"]["eval_targets"] == VAL_TOKENS - 1


def test_the_other_gelu_is_not_bit_identical(tmp_path):
    """The comparison above can tell the two GELUs apart (it is not vacuous)."""
    data = tmp_path / "tokens"
    write_token_files(data)
    exact = nanogpt_loop(data, nn.GELU(), 0, steps=5)
    tanh = nanogpt_loop(data, nn.GELU(approximate="tanh"), 0, steps=5)
    assert exact["init_hash"] == tanh["init_hash"]
    assert exact["train"] != tanh["train"]  # from the second step on


# ---------------------------------------------------------------------------------- eval sets


def token_recipe(directory, *overrides: str):
    cfg = config.compose(
        ["scale=smoke", "data=tokens", f"data.dir={directory}", "recipe.model.vocab_size=2048",
         *overrides]
    )  # fmt: skip
    config.validate(cfg)
    recipe = load_recipe(cfg)
    recipe.check()
    return cfg, recipe


def eval_targets(directory, *overrides: str) -> tuple[list[int], list[int], dict]:
    """(positions in val.bin that the eval set predicts, window starts, data info): val.bin
    holds 0, 1, 2, ..., so a target's value is its position."""
    cfg, recipe = token_recipe(directory, *overrides)
    batch = int(cfg.train.batch_size)
    data = recipe.build_data(batch, batch, torch.device("cpu"), 0)
    positions, starts = [], []
    for _ in range(2):  # re-iterable: the second pass reads the same windows
        positions, starts = [], []
        for x, y in data.eval:
            assert x.shape == y.shape and x.shape[1] == BLOCK
            assert (x == x[:, :1] + torch.arange(BLOCK)).all()  # contiguous windows
            kept = y[y != tokens.IGNORE]
            assert (kept == (x + 1)[y != tokens.IGNORE]).all()  # each target follows its input
            positions += kept.tolist()
            starts += x[:, 0].tolist()
    return positions, starts, data.info


def test_all_evaluates_every_target_of_the_split_exactly_once(tmp_path):
    np.arange(VAL_TOKENS, dtype=np.uint16).tofile(tmp_path / "val.bin")
    np.arange(2000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    positions, starts, info = eval_targets(tmp_path, "train.eval_batches=all")
    assert sorted(positions) == list(range(1, VAL_TOKENS))  # each once, the first never
    assert len(starts) == 35 and starts[-1] == VAL_TOKENS - 1 - BLOCK  # the tail's window
    assert info["eval_targets"] == VAL_TOKENS - 1


def test_a_fixed_eval_set_is_drawn_without_replacement(tmp_path, capsys):
    np.arange(VAL_TOKENS, dtype=np.uint16).tofile(tmp_path / "val.bin")
    np.arange(2000, dtype=np.uint16).tofile(tmp_path / "train.bin")
    positions, starts, _ = eval_targets(tmp_path, "train.eval_batches=3")  # 24 of 34 windows
    assert len(starts) == 24 == len(set(starts))  # no window twice
    assert len(positions) == 24 * BLOCK == len(set(positions))  # nor any target
    assert all(s % BLOCK == 0 for s in starts)
    again, _, _ = eval_targets(tmp_path, "train.eval_batches=3")
    other, _, _ = eval_targets(tmp_path, "train.eval_batches=3", "data.eval_seed=7")
    assert again == positions and other != positions  # fixed by data.eval_seed
    whole, _, _ = eval_targets(tmp_path, "train.eval_batches=4")  # 32 of 34: still distinct
    assert len(whole) == len(set(whole))
    capped, _, info = eval_targets(tmp_path, "train.eval_batches=5")  # 40: more than there are
    assert sorted(capped) == list(range(1, VAL_TOKENS)) and info["eval_targets"] == VAL_TOKENS - 1
    assert "holds 34 windows" in capsys.readouterr().err  # said, as a warning line
    assert "eval_targets" not in eval_targets(tmp_path, "train.eval_batches=3")[2]


def test_all_weights_a_shorter_last_batch_by_its_tokens():
    """Builtin data with `all` at a batch that does not divide the val set (32 = 12 + 12 + 8
    sequences): the val loss is the mean over every token, and so is the loss floor."""
    cfg = config.compose(["scale=smoke", "train.eval_batches=all", "train.batch_size=12"])
    config.validate(cfg)
    recipe = load_recipe(cfg)
    data = recipe.build_data(12, 12, torch.device("cpu"), 0)
    assert [len(x) for x, _ in data.eval] == [12, 12, 8]
    torch.manual_seed(0)
    model = recipe.build_model()
    ours = evaluate(model, recipe, data.eval, contextlib.nullcontext())["loss"]
    x = torch.cat([x for x, _ in data.eval])
    y = torch.cat([y for _, y in data.eval])
    with torch.no_grad():
        direct = F.cross_entropy(model.eval()(x).flatten(0, 1), y.flatten()).item()
    assert ours == pytest.approx(direct, rel=1e-6)
    with torch.no_grad():
        unweighted = float(np.mean([recipe.loss(model, b)[0].item() for b in data.eval]))
    assert ours != pytest.approx(unweighted, rel=1e-6)  # the weights matter here
    from lionbench.data import builtin_tokens as bt

    b = cfg.recipe.builtin
    lang = bt.TokenLanguage(
        int(b.vocab_size), int(b.successors), float(b.concentration), int(b.block_len),
        float(b.new_prob), int(b.seed),
    )  # fmt: skip
    nll = bt.load(lang, BLOCK + 1, int(b.train_sequences), int(b.val_sequences)).val_nll
    assert data.loss_floor == pytest.approx(float(nll.mean()), rel=1e-12)


# ---------------------------------------------------------------------------- the schedule


def nanogpt_get_lr(it: int, warmup: int, decay_iters: int, lr: float, min_lr: float) -> float:
    """nanoGPT's get_lr as of 2024 (warmup to lr at `warmup`, cosine to min_lr at
    `decay_iters`), written out for comparison."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def test_schedule_endpoints_as_documented():
    """docs/design.md, section 5: the first update uses lr / w (never 0), the peak is reached
    at step w - 1 and used again at step w, where the decay starts, and the last update uses
    exactly lr * f. From step w on it is nanoGPT's cosine with lr_decay_iters = max_iters =
    T - 1 (nanoGPT runs max_iters + 1 updates); nanoGPT warms up over w + 1 steps instead."""
    t, w, f = 40, 5, 0.1

    def ours(s: int) -> float:
        return lr_factor(s, name="cosine", total=t, warmup=w, final=f)

    assert ours(0) == 1 / w and ours(w - 1) == 1.0 == ours(w)
    assert ours(t - 1) == f
    assert lr_factor(0, name="cosine", total=t, warmup=0, final=f) == 1.0  # no warmup
    for s in range(w, t):
        assert ours(s) == pytest.approx(nanogpt_get_lr(s, w, t - 1, 1.0, f), abs=1e-15)
    assert [nanogpt_get_lr(s, w, t - 1, 1.0, f) for s in range(w)] == [
        (s + 1) / (w + 1) for s in range(w)
    ]
    # linear ends at 1 - (1 - f): f up to one rounding (exactly 0 at its default f = 0)
    assert lr_factor(t - 1, name="linear", total=t, warmup=w, final=f) == pytest.approx(f, 1e-15)
    assert lr_factor(t - 1, name="linear", total=t, warmup=w, final=0.0) == 0.0


def test_config_says_exact_gelu_and_all_is_accepted():
    cfg = config.compose(["recipe=gpt2", "train.eval_batches=all"])
    config.validate(cfg)
    assert OmegaConf.select(cfg, "recipe.model.gelu") == "exact"
