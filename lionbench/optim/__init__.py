"""Optimizers from the registry (`registry.OPTIMIZERS`, or a user `_target_` class).

Every optimizer gets the same two parameter groups: weight decay on >=2-D weights (matrices,
embeddings, convolutions) and none on biases and norm gains, as nanoGPT and the Lion paper do,
nor on a vision transformer's class token and learned position embedding (3-D tensors, but
excluded from decay as in timm, big_vision and DeiT).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from lionbench.errors import UserError
from lionbench.optim.registry import impl_of, missing_needs, spec_of

if TYPE_CHECKING:
    import torch


def plain(optim_cfg: Any) -> dict[str, Any]:
    """An optim config (DictConfig or mapping) as a plain dict."""
    if isinstance(optim_cfg, Mapping):
        return dict(optim_cfg)
    from omegaconf import OmegaConf

    return OmegaConf.to_container(optim_cfg, resolve=True)  # type: ignore[return-value]


def check_impl(optim_cfg: Any, device_type: str) -> None:
    """Implementations that need hardware or packages this machine lacks are bad input."""
    cfg = plain(optim_cfg)
    spec = spec_of(cfg)
    impl_name = impl_of(cfg)
    missing = missing_needs(spec.impl(impl_name), device_type)
    if missing:
        usable = [i for i, impl in spec.impls.items() if not missing_needs(impl, device_type)]
        raise UserError(
            f"optim.impl={impl_name} needs {' and '.join(missing)} "
            f"(accepted here: {', '.join(usable)})"
        )


# Parameters (the last part of their name) that are never decayed whatever their shape: the
# class / distillation tokens and learned position embeddings of vision transformers
# (torchvision's `class_token`, `encoder.pos_embedding`; timm's `cls_token`, `pos_embed`).
NO_DECAY_NAMES = frozenset({"class_token", "cls_token", "dist_token", "pos_embedding", "pos_embed"})


def decays(name: str, param: torch.Tensor) -> bool:
    """Weight decay applies to >=2-D weights, except the tokens and embeddings named above."""
    return param.dim() >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The one place every optimizer's parameter groups come from (run, bench train, tests)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]
    # An empty group would crash lion-pytorch's foreach step (torch._foreach_* on no tensors).
    return [g for g in groups if g["params"]]


def build_optimizer(optim_cfg: Any, model: torch.nn.Module) -> torch.optim.Optimizer:
    cfg = plain(optim_cfg)
    groups = param_groups(model, float(cfg["weight_decay"]))
    partition = spec_of(cfg).impl(impl_of(cfg)).partition
    if partition is None:
        return build_from_groups(cfg, groups)
    from lionbench.optim.partition import assign, split_groups, summary_of

    assignment = assign(model, list(cfg.get("exclude") or []))
    tagged = [
        {**g, "part": part}
        for part, part_groups in split_groups(model, groups, assignment).items()
        for g in part_groups
    ]
    optimizer = build_from_groups(cfg, tagged)
    optimizer.assignment = summary_of(model, assignment, partition.optimizers)
    return optimizer


def build_from_groups(cfg: Mapping[str, Any], groups: list[dict[str, Any]]) -> Any:
    """The optimizer a config names, over ready-made parameter groups (bench and tests)."""
    cfg = plain(cfg)
    spec = spec_of(cfg)
    return spec.impl(impl_of(cfg)).build(groups, {**spec.defaults, **cfg})


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in optimizer state tensors (momentum, second moment, step counters), measured:
    nested containers too (heavyball keeps {0: {...}} per parameter, preconditioners in lists),
    each storage once (views of one buffer are not counted twice)."""
    states = getattr(optimizer, "part_states", lambda: [optimizer.state])()  # a composite's
    storages: dict[tuple[int, str], int] = {}
    for part in states:
        for state in part.values():
            for t in _tensors(state):
                storage = t.untyped_storage()
                storages[(storage.data_ptr(), str(t.device))] = storage.nbytes()
    return sum(storages.values())


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _tensors(v)
