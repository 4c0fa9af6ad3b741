"""Shared part of the image-classification recipes (resnet50, vit): data, loss, top-1.

Not a recipe by itself (there is no conf/recipe/classifier.yaml); resnet50.py and vit.py add
their models.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lionbench.config import check_positive_ints
from lionbench.data import images
from lionbench.errors import UserError
from lionbench.recipe import Data, Recipe, training_flops_per_example


class ImageClassifierRecipe(Recipe):
    metrics = frozenset({"loss", "top1"})
    higher_is_better = frozenset({"top1"})

    def check(self) -> None:
        image = self.cfg.recipe.image
        check_positive_ints(image, ("resolution", "num_classes"), "recipe.image")
        if self.cfg.data.source == "imagefolder":
            info = images.check_image_folder(self.cfg.data.root, int(self.cfg.train.batch_size))
            if info["num_classes"] > image.num_classes:
                raise UserError(
                    f"{self.cfg.data.root} has {info['num_classes']} classes but the model has "
                    f"{image.num_classes} outputs (set recipe.image.num_classes="
                    f"{info['num_classes']})"
                )
        elif self.cfg.data.source == "builtin" and image.num_classes < 10:
            raise UserError("data=builtin has 10 classes: recipe.image.num_classes must be >= 10")

    def build_data(
        self, batch_size: int, micro_batch: int, device: torch.device, data_seed: int
    ) -> Data:
        return images.build_image_data(
            self.cfg, batch_size, micro_batch, device, data_seed, "imagenet"
        )

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        x, y = batch
        if self.uses_channels_last(x.device.type):
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        return loss, {"top1": (logits.argmax(dim=1) == y).float().mean()}

    def flops_per_example(self, model: nn.Module) -> float:
        r = int(self.cfg.recipe.image.resolution)
        device = next(model.parameters()).device
        return training_flops_per_example(model, (torch.zeros(1, 3, r, r, device=device),))
