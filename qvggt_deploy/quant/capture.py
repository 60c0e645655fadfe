"""Forward hooks that cache module inputs during calibration (llm-awq's input-feature cache).

Hooks are always removed in ``finally``: an exception inside the block never leaves a hook that
would keep caching (and leaking memory) in later forwards.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List

import torch
from torch import nn


@contextlib.contextmanager
def capture_inputs(modules: Dict[str, nn.Module]) -> Iterator[Dict[str, List[torch.Tensor]]]:
    """Within the block, every call of ``modules[name]`` appends its first positional input
    (detached) to ``captured[name]``."""
    captured: Dict[str, List[torch.Tensor]] = {name: [] for name in modules}
    handles = []
    try:
        for name, module in modules.items():
            def hook(_module, args, name=name):
                captured[name].append(args[0].detach())
            handles.append(module.register_forward_pre_hook(hook))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def swapped(model: nn.Module, replacements: Dict[str, nn.Module]) -> Iterator[nn.Module]:
    """Temporarily replace submodules by name (trial quantization); originals restored in
    ``finally``."""
    originals = {}
    try:
        for name, module in replacements.items():
            originals[name] = model.get_submodule(name)
            set_submodule(model, name, module)
        yield model
    finally:
        for name, module in originals.items():
            set_submodule(model, name, module)


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at dotted ``name`` in ``model`` (the one place modules are swapped by name)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
