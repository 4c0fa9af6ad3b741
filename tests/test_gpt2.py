"""The GPT-2 recipe at full scale, without training: size and FLOPs as published."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

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
