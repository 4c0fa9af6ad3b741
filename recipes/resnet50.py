"""ResNet-50 image classification (torchvision), with smaller ResNets of the same family.

`recipe.model.arch`: `resnet50` (Bottleneck [3, 4, 6, 3]; 25,557,032 parameters with 1000
classes), `resnet18` (BasicBlock [2, 2, 2, 2]), or `basic` with `recipe.model.layers` (a tiny
BasicBlock stack for CPU runs). All keep torchvision's ImageNet stem and zero-init nothing extra.
"""

from __future__ import annotations

from torchvision.models import resnet

from lionbench.errors import UserError
from lionbench.recipes.classifier import ImageClassifierRecipe

ARCHS = ("resnet50", "resnet18", "basic")


class ResNetRecipe(ImageClassifierRecipe):
    channels_last = True

    def check(self) -> None:
        super().check()
        m = self.cfg.recipe.model
        if m.arch not in ARCHS:
            raise UserError(f"unknown recipe.model.arch '{m.arch}' (accepted: {', '.join(ARCHS)})")
        if m.arch == "basic" and not (
            len(m.layers) == 4 and all(isinstance(n, int) and n >= 1 for n in m.layers)
        ):
            raise UserError(f"recipe.model.layers must be 4 positive integers, got {m.layers}")

    def build_model(self) -> resnet.ResNet:
        m, classes = self.cfg.recipe.model, int(self.cfg.recipe.image.num_classes)
        if m.arch == "resnet50":
            return resnet.resnet50(num_classes=classes)
        if m.arch == "resnet18":
            return resnet.resnet18(num_classes=classes)
        return resnet.ResNet(resnet.BasicBlock, list(m.layers), num_classes=classes)


RECIPE = ResNetRecipe
