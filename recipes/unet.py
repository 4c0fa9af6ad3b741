"""U-Net diffusion (DDPM): diffusers' UNet2DModel, linear-beta noise schedule, epsilon loss.

At scale=full the model is the DDPM CIFAR-10 U-Net (35,746,307 parameters at 32 px: channels
128-256-256-256, two layers per block, attention at 16x16). Training draws a timestep and Gaussian
noise per image and regresses the noise with MSE. Eval is the same MSE on a fixed set of
(image, timestep, noise) triples drawn once from the eval seed, so every run and optimizer is
scored on the same draws. At the end of a run a grid of samples from a fast DDIM sampler is saved
as samples.png (from the EMA weights when `train.ema_decay` is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lionbench import checks
from lionbench.data import images
from lionbench.errors import UserError
from lionbench.recipe import Data, Recipe, training_flops_per_example


class UNetRecipe(Recipe):
    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self._schedule: Any = None

    def check(self) -> None:
        m, d = self.cfg.recipe.model, self.cfg.recipe.diffusion
        if len(m.block_out_channels) != len(m.down_block_types) or len(m.up_block_types) != len(
            m.down_block_types
        ):
            raise UserError(
                "recipe.model.block_out_channels, down_block_types and up_block_types "
                "must have the same length"
            )
        r = int(self.cfg.recipe.image.resolution)
        if r % 2 ** (len(m.block_out_channels) - 1):
            raise UserError(
                f"recipe.image.resolution ({r}) must be divisible by "
                f"2^(number of blocks - 1) = {2 ** (len(m.block_out_channels) - 1)}"
            )
        if not isinstance(d.timesteps, int) or d.timesteps < 2:
            raise UserError(
                f"recipe.diffusion.timesteps must be an integer >= 2, got {d.timesteps!r}"
            )
        checks.integer(d.sample_steps, "recipe.diffusion.sample_steps", low=1)
        checks.integer(d.sample_images, "recipe.diffusion.sample_images", low=1)
        if d.sample_steps > d.timesteps:
            raise UserError(
                f"recipe.diffusion.sample_steps ({d.sample_steps}) must be <= "
                f"recipe.diffusion.timesteps ({d.timesteps})"
            )
        if self.cfg.data.source == "imagefolder":
            images.check_image_folder(self.cfg.data.root, int(self.cfg.train.batch_size))

    def build_model(self) -> nn.Module:
        from diffusers import UNet2DModel

        m = self.cfg.recipe.model
        return UNet2DModel(
            sample_size=int(self.cfg.recipe.image.resolution),
            in_channels=3,
            out_channels=3,
            layers_per_block=int(m.layers_per_block),
            block_out_channels=tuple(int(c) for c in m.block_out_channels),
            down_block_types=tuple(m.down_block_types),
            up_block_types=tuple(m.up_block_types),
            norm_num_groups=int(m.norm_num_groups),
            dropout=float(m.dropout),
        )

    def schedule(self, device: torch.device) -> Any:
        """The DDPM noise schedule (diffusers' DDPMScheduler, linear betas)."""
        if self._schedule is None:
            from diffusers import DDPMScheduler

            d = self.cfg.recipe.diffusion
            self._schedule = DDPMScheduler(
                num_train_timesteps=int(d.timesteps),
                beta_start=float(d.beta_start),
                beta_end=float(d.beta_end),
                beta_schedule="linear",
            )
            self._alphas_cumprod = self._schedule.alphas_cumprod.to(device)
        return self._schedule

    def build_data(
        self, batch_size: int, micro_batch: int, device: torch.device, data_seed: int
    ) -> Data:
        data = images.build_image_data(
            self.cfg, batch_size, micro_batch, device, data_seed, "symmetric"
        )
        self.schedule(device)
        # Fixed eval draws: (image, timestep, noise) from the eval seed, identical for every run.
        gen = torch.Generator().manual_seed(int(self.cfg.data.eval_seed))
        eval_batches = []
        for x, _ in data.eval:
            t = torch.randint(int(self.cfg.recipe.diffusion.timesteps), (len(x),), generator=gen)
            noise = torch.randn(x.shape, generator=gen)
            eval_batches.append((x, t.to(device), noise.to(device)))
        return Data(data.train, eval_batches, None, data.info)

    def _noised(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        a = self._alphas_cumprod[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        if len(batch) == 3:  # an eval triple
            x0, t, noise = batch
        else:  # a train batch (images, labels): labels unused, fresh draws
            x0 = batch[0]
            t = torch.randint(len(self._alphas_cumprod), (len(x0),), device=x0.device)
            noise = torch.randn_like(x0)
        pred = model(self._noised(x0, t, noise), t).sample
        return F.mse_loss(pred.float(), noise), {}

    def flops_per_example(self, model: nn.Module) -> float:
        r = int(self.cfg.recipe.image.resolution)
        device = next(model.parameters()).device
        x = torch.zeros(1, 3, r, r, device=device)
        return training_flops_per_example(
            model, (x, torch.zeros(1, dtype=torch.long, device=device))
        )

    @torch.no_grad()
    def finalize(self, model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, Path]:
        """A grid of samples from a DDIM sampler with `recipe.diffusion.sample_steps` steps."""
        from diffusers import DDIMScheduler
        from torchvision.utils import save_image

        d = self.cfg.recipe.diffusion
        sampler = DDIMScheduler.from_config(self.schedule(device).config)
        sampler.set_timesteps(int(d.sample_steps))
        r = int(self.cfg.recipe.image.resolution)
        gen = torch.Generator().manual_seed(int(self.cfg.data.eval_seed))
        x = torch.randn(int(d.sample_images), 3, r, r, generator=gen).to(device)
        was_training = model.training
        model.eval()
        for t in sampler.timesteps:
            eps = model(x, t.to(device).expand(len(x))).sample
            x = sampler.step(eps, t, x).prev_sample
        model.train(was_training)
        path = run_dir / "samples.png"
        save_image((x.clamp(-1, 1) + 1) / 2, path, nrow=int(len(x) ** 0.5))
        return {"samples": path}


RECIPE = UNetRecipe
