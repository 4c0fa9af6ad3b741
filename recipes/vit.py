"""Vision Transformer image classification (torchvision's VisionTransformer).

ViT-B/16 at scale=full (86,567,656 parameters with 1000 classes); the smaller scales keep the
architecture and shrink depth, width and patch size (patch 4 on 32 px images).
"""

from __future__ import annotations

from torchvision.models.vision_transformer import VisionTransformer

from lionbench.config import check_positive_ints
from lionbench.errors import UserError
from lionbench.recipes.classifier import ImageClassifierRecipe


class ViTRecipe(ImageClassifierRecipe):
    def check(self) -> None:
        super().check()
        m, r = self.cfg.recipe.model, self.cfg.recipe.image.resolution
        keys = ("patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")
        check_positive_ints(m, keys, "recipe.model")
        if r % m.patch_size:
            raise UserError(
                f"recipe.image.resolution ({r}) must be divisible by "
                f"recipe.model.patch_size ({m.patch_size})"
            )
        if m.hidden_dim % m.num_heads:
            raise UserError(
                f"recipe.model.hidden_dim ({m.hidden_dim}) must be divisible by "
                f"recipe.model.num_heads ({m.num_heads})"
            )

    def build_model(self) -> VisionTransformer:
        m = self.cfg.recipe.model
        return VisionTransformer(
            image_size=int(self.cfg.recipe.image.resolution),
            patch_size=int(m.patch_size),
            num_layers=int(m.num_layers),
            num_heads=int(m.num_heads),
            hidden_dim=int(m.hidden_dim),
            mlp_dim=int(m.mlp_dim),
            dropout=float(m.dropout),
            num_classes=int(self.cfg.recipe.image.num_classes),
        )


RECIPE = ViTRecipe
