"""The GPT-2 recipe without training: size and FLOPs as published at full scale, init, the GELU
form and what it means for earlier run directories."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf, open_dict

from lionbench import config
from lionbench.recipe import load_recipe


@pytest.fixture(scope="module")
def full():
    cfg = config.compose(["scale=full"])
    config.validate(cfg)
    recipe = load_recipe(cfg)
    with torch.device("meta"):
        model = recipe.build_model()
    return cfg, recipe, model


def test_parameter_count_at_full_scale(full):
    _, _, model = full
    # nanoGPT's GPT-2 124M with the vocabulary padded to 50304, biases, tied embeddings
    assert sum(p.numel() for p in model.parameters()) == 124_475_904


def test_flops_per_token_match_the_reference(full):
    cfg, recipe, model = full
    per_token = recipe.flops_per_example(model) / cfg.recipe.model.block_size
    # docs/references.md: about 0.855 GFLOP per token at T=1024 (6N + 12*L*H*Q*T)
    assert per_token == pytest.approx(0.855e9, rel=0.002)


def test_weights_are_tied_and_initialised_like_gpt2():
    cfg = config.compose(["scale=smoke"])
    config.validate(cfg)
    torch.manual_seed(0)
    model = load_recipe(cfg).build_model()
    assert model.lm_head.weight is model.wte.weight
    proj = model.h[0].attn.c_proj.weight
    n_layer = cfg.recipe.model.n_layer
    assert proj.std().item() == pytest.approx(0.02 / (2 * n_layer) ** 0.5, rel=0.15)
    assert model.h[0].mlp.c_fc.bias.abs().max().item() == 0.0
    assert OmegaConf.select(cfg, "recipe.model.bias") is True


def mlp_gelu(overrides: list[str], drop: tuple[str, ...] = ()) -> str:
    """The GELU form of the model a config builds (`drop`: keys deleted, as in an old config)."""
    cfg = config.compose(["scale=smoke", *overrides])
    config.validate(cfg)
    with open_dict(cfg):
        for key in drop:
            del cfg.recipe.model[key]
    recipe = load_recipe(cfg)
    recipe.check()
    return recipe.build_model().h[0].mlp.approximate


def test_gelu_is_exact_by_default_tanh_on_request_and_before_the_key():
    """nanoGPT's exact GELU by default; GPT-2's tanh form as an option; a config written before
    `recipe.model.gelu` existed (issue 26) means the tanh model it was trained with."""
    assert mlp_gelu([]) == "none"
    assert mlp_gelu(["recipe.model.gelu=tanh"]) == "tanh"
    assert mlp_gelu([], drop=("gelu",)) == "tanh"
    x = torch.linspace(-3, 3, 101)
    assert not torch.equal(F.gelu(x), F.gelu(x, approximate="tanh"))


def test_runs_written_before_issue_26_keep_their_directories():
    """A config without the keys issue 26 added (`recipe.model.gelu`, `recipe.eval_all`) still
    names the directory it was written to (the name tests/test_foundation.py pinned before),
    so an earlier results tree is found and reported as it was; the new default model is a
    different run with a directory of its own."""
    from lionbench.record import run_name

    def name(drop: bool) -> str:
        cfg = OmegaConf.to_container(config.compose(["scale=smoke", "optim=lion"]), resolve=True)
        if drop:
            del cfg["recipe"]["model"]["gelu"], cfg["recipe"]["eval_all"]
        return run_name(cfg, "cpu")

    assert name(drop=True) == "smoke-lion-lr0.001-wd0.3-s0-65a1dbd94b"
    assert name(drop=False) != name(drop=True)


def test_a_byte_level_meta_json_sets_the_vocabulary_of_a_smaller_model(tmp_path, capsys):
    """`data=tokens` at scale=smoke (vocab 128) on files `prepare text` wrote (bytes: 257): the
    model takes meta.json's vocabulary, says so once, and the run's config records it."""
    import numpy as np

    from lionbench.run.launch import precheck

    d = tmp_path / "tokens"
    d.mkdir()
    for split in ("train", "val"):
        np.arange(600, dtype=np.uint16).__mod__(257).astype(np.uint16).tofile(d / f"{split}.bin")
    (d / "meta.json").write_text('{"vocab_size": 257, "tokenizer": "bytes"}')
    args = ["-m", "scale=smoke", "data=tokens", f"data.dir={d}", f"results_dir={tmp_path}",
            "seed=0,1"]  # fmt: skip
    cfgs = precheck(args)
    assert [c.recipe.model.vocab_size for c in cfgs] == [257, 257]
    err = capsys.readouterr().err
    assert err.count("note: recipe.model.vocab_size 128 -> 257: the vocabulary of meta.json") == 1
    bigger = precheck([*args[1:-1], "seed=0", "recipe.model.vocab_size=512"])
    assert bigger[0].recipe.model.vocab_size == 512  # a larger model vocabulary stays
