"""A user recipe: a two-layer MLP fitting a fixed random linear map (recipe.module=mypkg.mlp)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lionbench.data.stream import RandomBatches
from lionbench.recipe import Data, Recipe


class MLPRecipe(Recipe):
    def build_model(self) -> nn.Module:
        width = int(self.cfg.recipe.width)
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 1))

    def build_data(
        self, batch_size: int, micro_batch: int, device: torch.device, data_seed: int
    ) -> Data:
        w = torch.randn(8, 1, generator=torch.Generator().manual_seed(0))

        def draw(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randn(batch_size, 8, generator=gen)
            return x.to(device), (x @ w).to(device)

        eval_gen = torch.Generator().manual_seed(int(self.cfg.data.eval_seed))
        evals = [draw(eval_gen) for _ in range(int(self.cfg.train.eval_batches))]
        return Data(train=RandomBatches(draw, data_seed), eval=evals)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        x, y = batch
        return F.mse_loss(model(x), y), {}


RECIPE = MLPRecipe
