"""Composite optimizers: one optimizer per part of the parameters, stepped as one.

Muon orthogonalizes the update of a weight *matrix*; embeddings, the output head, norms and
biases are not matrices in that sense and go to AdamW, as Muon's authors and modded-nanogpt
split them. The rule is recipe-independent (`matrix_part`); a recipe (or the command line)
names more parameters to keep out through `optim.exclude` (fnmatch patterns over parameter
names). The split is recorded in the run's summary (`Partitioned.assignment`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

Groups = list[dict[str, Any]]  # as optim/registry.py has them (no import back: no cycle)

# Output layers by the last part of their module name (GPT-2's lm_head, torchvision's ViT
# `heads.head` and ResNet `fc`, timm's `head`, `classifier`): their rows are classes, not
# features, and Muon's authors leave them to AdamW.
HEAD_NAMES = frozenset({"lm_head", "head", "heads", "fc", "classifier", "output"})


def matrix_part(name: str, param: torch.Tensor, module: torch.nn.Module, exclude: Sequence[str]):
    """'matrix' for a hidden 2-D weight, else 'rest': not 2-D (norms, biases, convolutions,
    tokens), an embedding table, an output head, or a name matching an `exclude` pattern."""
    owner = name.rsplit(".", 1)[0] if "." in name else ""
    hidden = (
        param.dim() == 2
        and not isinstance(module, torch.nn.Embedding)
        and not any(part in HEAD_NAMES for part in owner.split("."))
        and not any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)
    )
    return "matrix" if hidden else "rest"


def assign(model: torch.nn.Module, exclude: Sequence[str]) -> dict[str, str]:
    """Parameter name -> part, for the trainable parameters (a tied weight once, by the name
    `named_parameters` gives it first: GPT-2's head is its token embedding)."""
    modules = dict(model.named_modules())
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            module = modules.get(name.rsplit(".", 1)[0] if "." in name else "", model)
            out[name] = matrix_part(name, p, module, exclude)
    return out


def split_groups(
    model: torch.nn.Module, groups: Groups, assignment: Mapping[str, str]
) -> dict[str, Groups]:
    """The parameter groups (decay and no-decay) split by part, each group keeping its
    settings; empty groups dropped."""
    part_of = {id(p): assignment[n] for n, p in model.named_parameters() if n in assignment}
    parts: dict[str, Groups] = {}
    for g in groups:
        for part in dict.fromkeys(part_of[id(p)] for p in g["params"]):
            params = [p for p in g["params"] if part_of[id(p)] == part]
            parts.setdefault(part, []).append({**g, "params": params})
    return parts


def summary_of(model: torch.nn.Module, assignment: Mapping[str, str], names: Mapping[str, str]):
    """What the run records: per part (named by its optimizer), the tensors, their element
    count and their names."""
    shapes = {n: p.numel() for n, p in model.named_parameters()}
    out: dict[str, dict[str, Any]] = {}
    for name, part in assignment.items():
        entry = out.setdefault(names[part], {"tensors": 0, "params": 0, "names": []})
        entry["tensors"] += 1
        entry["params"] += shapes[name]
        entry["names"].append(name)
    return out


class Partitioned(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped, zeroed, saved and scheduled as
    one. `param_groups` are the parts' own group dicts, so an lr scheduler's factor reaches
    every part, each from its own base lr."""

    def __init__(self, parts: Mapping[str, torch.optim.Optimizer], assignment: dict[str, Any]):
        self.parts = dict(parts)
        self.assignment = assignment  # recorded in the summary: which parameters went where
        super().__init__([g for opt in self.parts.values() for g in opt.param_groups], {})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        for opt in self.parts.values():
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.parts.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"parts": {name: opt.state_dict() for name, opt in self.parts.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, opt in self.parts.items():
            opt.load_state_dict(state_dict["parts"][name])
        # torch's load_state_dict gives each part new group dicts: link to those, or the lr
        # scheduler would go on setting the lr of groups nobody steps
        self.param_groups = [g for opt in self.parts.values() for g in opt.param_groups]

    def part_states(self) -> Iterable[dict[Any, Any]]:
        """Each part's `state`, for counting the bytes it holds."""
        return (opt.state for opt in self.parts.values())
