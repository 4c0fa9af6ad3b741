"""Muon: the composite optimizer (Muon on hidden matrices, AdamW on the rest), its split, its
own implementation against torch's, and runs that record where each parameter went."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import run_dirs, run_inprocess, summary
from omegaconf import OmegaConf

from lionbench import config
from lionbench.errors import UserError
from lionbench.optim import build_optimizer, check_impl, state_bytes
from lionbench.optim.muon import Muon
from lionbench.optim.partition import assign
from lionbench.recipe import load_recipe

HAS_TORCH_MUON = hasattr(torch.optim, "Muon")


def model_of(*overrides: str) -> tuple[torch.nn.Module, dict]:
    cfg = config.compose(["scale=smoke", "optim=muon", *overrides])
    torch.manual_seed(0)
    model = load_recipe(cfg).build_model()
    return model, OmegaConf.to_container(cfg.optim, resolve=True)


@pytest.mark.skipif(not HAS_TORCH_MUON, reason="torch.optim.Muon needs torch >= 2.9")
@pytest.mark.parametrize("adjust", ["original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_lionbenchs_muon_is_torchs_step_for_step(adjust, nesterov):
    """The fallback for torch < 2.9 computes what torch.optim.Muon computes, bit for bit, on a
    tall and a wide matrix, with weight decay, over steps whose gradients change."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(48, 16), (16, 40)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    kw = {"lr": 0.02, "weight_decay": 0.1, "momentum": 0.9, "nesterov": nesterov,
          "ns_steps": 5, "adjust_lr_fn": adjust}  # fmt: skip
    a, b = Muon(ours, **kw), torch.optim.Muon(theirs, **kw)
    for _ in range(4):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for p, q, g in zip(ours, theirs, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    for p, q in zip(ours, theirs, strict=True):
        assert torch.equal(p, q)


def test_gpt2_hidden_matrices_go_to_muon_the_rest_to_adamw():
    model, _ = model_of()
    part = assign(model, [])
    matrix = {n for n, v in part.items() if v == "matrix"}
    layers = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    assert matrix == {f"h.{i}.{m}.weight" for i in range(2) for m in layers}
    # embeddings (the head is tied to wte: one parameter), norms and biases: AdamW
    assert part["wte.weight"] == part["wpe.weight"] == part["ln_f.weight"] == "rest"
    assert "lm_head.weight" not in part
    moved = assign(model, ["*.mlp.c_fc.weight"])  # a recipe's (or the user's) exclusion
    assert moved["h.0.mlp.c_fc.weight"] == "rest" and moved["h.0.mlp.c_proj.weight"] == "matrix"


def test_vit_head_tokens_and_patch_convolution_stay_with_adamw():
    model, _ = model_of("recipe=vit")
    part = assign(model, [])
    assert part["heads.head.weight"] == "rest"  # the classifier: rows are classes
    assert (
        part["conv_proj.weight"] == part["class_token"] == part["encoder.pos_embedding"] == "rest"
    )
    assert part["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"] == "matrix"
    assert part["encoder.layers.encoder_layer_0.mlp.0.weight"] == "matrix"


@pytest.mark.parametrize("impl", ["lionbench", "torch"])
def test_the_composite_steps_saves_and_resumes_as_one_optimizer(impl):
    """Both parts step; the state dict of the whole restores both, so that the next step from a
    checkpoint is the same step; the scheduler's factor reaches each part from its own lr."""
    if impl == "torch" and not HAS_TORCH_MUON:
        pytest.skip("torch.optim.Muon needs torch >= 2.9")
    model, cfg = model_of(f"optim.impl={impl}", "optim.adamw_lr=0.001")
    opt = build_optimizer(cfg, model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 / (step + 1))
    assert {g["lr"] for g in opt.param_groups} == {cfg["lr"] * 0.5, 0.001 * 0.5}
    x = torch.randint(0, 64, (2, 8))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    step()
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    saved = copy.deepcopy((opt.state_dict(), sched.state_dict()))  # as torch.save keeps them
    step()
    step()  # the schedule moves on: a resumed run must follow it in every part
    after = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(saved_model)
    opt.load_state_dict(saved[0])
    sched.load_state_dict(saved[1])
    step()
    step()
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())
    assert state_bytes(opt) == 4 * 24576 + 8 * 6016 + 4 * 20  # momentum; AdamW's m, v, step


def test_torch_muon_on_an_older_torch_names_the_fallback(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon", raising=False)
    with pytest.raises(UserError, match=r"needs torch >= 2.9 .*accepted here: lionbench"):
        check_impl({"name": "muon", "impl": "torch"}, "cpu")


def test_a_muon_run_records_its_split_and_holds_the_state_it_should(tmp_path):
    assert run_inprocess(tmp_path, "optim=muon", "optim.impl=lionbench", "train.steps=4") == 0
    (d,) = run_dirs(tmp_path)
    s = summary(d)
    parts = s["optimizer_parts"]
    assert set(parts) == {"muon", "adamw"}
    assert (parts["muon"]["tensors"], parts["adamw"]["tensors"]) == (8, 20)
    assert parts["muon"]["params"] + parts["adamw"]["params"] == s["n_params"]
    assert s["optimizer_state_bytes"] == s["expected_state_bytes"]
    assert d.name.startswith("smoke-muon-lr0.003-wd0.1-s0-")  # adamw_* from recipe.adamw
