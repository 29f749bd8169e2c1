"""Trained 1x1 convolutional networks as pixelmix per-pixel programs.

A stack of 1x1 convolutions (or linear layers) with elementwise activations
between them is a per-pixel program ("Network in Network"): pixelmix runs
it over images of any size, fused per tile, on CPU or GPU, with no
framework at inference time. :func:`from_torch` reads a PyTorch module or
state dict; :func:`from_arrays` builds the same program from NumPy arrays.
Save and load the result like any program: ``net.save(path)``,
``pixelmix.load(path)``.

Supported layers: ``Conv2d`` with a 1x1 kernel (stride 1, no padding,
groups 1, dilation 1), ``Linear``, ``BatchNorm2d``/``BatchNorm1d`` in eval
mode (folded into the neighbouring affine map), ``ReLU``, ``LeakyReLU``,
``Sigmoid``, ``Tanh``, ``Identity``, ``Dropout`` (a no-op at inference) and
nested ``Sequential``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from . import ops
from .mixer import Mixer
from .ops import Elementwise, Program

__all__ = ["from_torch", "from_arrays", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": ops.relu,
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "leaky_relu": ops.leaky_relu,
    "identity": None,
}


def _activation(spec) -> Elementwise | None:
    if isinstance(spec, Elementwise):
        return spec
    if isinstance(spec, str) and spec in ACTIVATIONS:
        make = ACTIVATIONS[spec]
        return None if make is None else make()
    raise ValueError(
        f"unsupported activation {spec!r}; use one of {', '.join(ACTIVATIONS)} or a step "
        f"from pixelmix.ops"
    )


def _affine(weight, bias, where: str) -> Mixer:
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim == 4:
        if w.shape[2:] != (1, 1):
            raise ValueError(
                f"{where}: a convolution kernel of size {w.shape[2]}x{w.shape[3]} is not a "
                f"per-pixel map; only 1x1 kernels (weight shape (K, C, 1, 1)) are supported"
            )
        w = w[:, :, 0, 0]
    if w.ndim != 2:
        raise ValueError(f"{where}: weight must have shape (K, C) or (K, C, 1, 1), got {w.shape}")
    b = None if bias is None else np.asarray(bias, dtype=np.float64)
    return Mixer(w, b)


def from_arrays(layers: Iterable[Any], *, activation: str | None = None) -> Program:
    """A per-pixel program from NumPy weights, the same as :func:`from_torch` builds.

    Parameters
    ----------
    layers : iterable
        Items in order: ``(weight, bias)`` pairs (weight (K, C) or
        (K, C, 1, 1), bias (K,) or None), :class:`~pixelmix.Mixer` objects,
        activation names ("relu", "sigmoid", "tanh", "leaky_relu",
        "identity") or steps from :mod:`pixelmix.ops`.
    activation : str, optional
        Put this activation between consecutive affine layers that have no
        activation between them (not after the last).

    Returns
    -------
    Program

    Examples
    --------
    >>> import numpy as np
    >>> from pixelmix.networks import from_arrays
    >>> net = from_arrays([(np.ones((4, 3, 1, 1)), np.zeros(4)), (np.ones((2, 4)), None)],
    ...                   activation="relu")
    >>> net
    Program([Mixer(3 -> 4), relu(), Mixer(4 -> 2)])
    >>> net(np.ones((5, 5, 3))).shape
    (5, 5, 2)
    """
    between = None if activation is None else _activation(activation)
    steps: list[Any] = []
    for i, item in enumerate(layers):
        if isinstance(item, Mixer):
            step = item
        elif isinstance(item, (str, Elementwise)):
            step = _activation(item)
            if step is None:
                continue
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            step = _affine(item[0], item[1], f"layer {i}")
        else:
            raise TypeError(
                f"layer {i} is a {type(item).__name__}; expected a (weight, bias) pair, a Mixer, "
                f"or an activation name"
            )
        if between is not None and isinstance(step, Mixer) and steps and isinstance(steps[-1], Mixer):
            steps.append(between)
        steps.append(step)
    if not any(isinstance(s, Mixer) for s in steps):
        raise ValueError("the network has no affine layer (no weights)")
    return Program(steps)


def _batchnorm(module, where: str) -> Mixer:
    if module.training:
        raise ValueError(f"{where}: BatchNorm in training mode; call model.eval() first")
    if module.running_mean is None:
        raise ValueError(f"{where}: BatchNorm without running statistics cannot be folded")
    mean = module.running_mean.detach().double().numpy()
    var = module.running_var.detach().double().numpy()
    scale = 1.0 / np.sqrt(var + module.eps)
    shift = -mean * scale
    if module.affine:
        gamma = module.weight.detach().double().numpy()
        beta = module.bias.detach().double().numpy()
        scale, shift = scale * gamma, shift * gamma + beta
    return Mixer(np.diag(scale), shift)


def _module_steps(module, where: str) -> list[Any]:
    import torch.nn as nn

    if isinstance(module, nn.Sequential):
        steps = []
        for name, child in module.named_children():
            steps.extend(_module_steps(child, f"{where}.{name}" if where else name))
        return steps
    if isinstance(module, nn.Conv2d):
        # With a 1x1 kernel, "same" and "valid" padding both mean none.
        padded = module.padding not in ("same", "valid") and tuple(module.padding) != (0, 0)
        if (tuple(module.kernel_size) != (1, 1) or tuple(module.stride) != (1, 1) or padded
                or tuple(module.dilation) != (1, 1) or module.groups != 1):
            raise ValueError(
                f"{where}: Conv2d(kernel_size={module.kernel_size}, stride={module.stride}, "
                f"padding={module.padding}, dilation={module.dilation}, groups={module.groups}) is "
                f"not a per-pixel map; only 1x1 kernels, stride 1, no padding, groups 1 are supported"
            )
        bias = None if module.bias is None else module.bias.detach().double().numpy()
        return [_affine(module.weight.detach().double().numpy(), bias, where)]
    if isinstance(module, nn.Linear):
        bias = None if module.bias is None else module.bias.detach().double().numpy()
        return [_affine(module.weight.detach().double().numpy(), bias, where)]
    if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return [_batchnorm(module, where)]
    if isinstance(module, nn.ReLU):
        return [ops.relu()]
    if isinstance(module, nn.LeakyReLU):
        return [ops.leaky_relu(module.negative_slope)]
    if isinstance(module, nn.Sigmoid):
        return [ops.sigmoid()]
    if isinstance(module, nn.Tanh):
        return [ops.tanh()]
    if isinstance(module, (nn.Identity, nn.Dropout, nn.Dropout2d)):
        return []
    raise ValueError(
        f"{where or 'module'}: {type(module).__name__} is not supported; a per-pixel network may "
        f"hold 1x1 Conv2d, Linear, BatchNorm (eval), ReLU, LeakyReLU, Sigmoid, Tanh, Identity, "
        f"Dropout and nested Sequential"
    )


def _state_dict_layers(state: Mapping[str, Any]) -> list[tuple[Any, Any]]:
    """``(weight, bias)`` per layer prefix, in the state dict's order."""
    layers: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias"):
            raise ValueError(
                f"state dict entry {key!r} is neither a weight nor a bias; pass the module itself "
                f"(BatchNorm statistics and other buffers need it)"
            )
        layers.setdefault(prefix, {})[leaf] = value.detach().double().numpy() if hasattr(value, "detach") else np.asarray(value)
    out = []
    for prefix, parts in layers.items():
        if "weight" not in parts:
            raise ValueError(f"layer {prefix!r} of the state dict has a bias but no weight")
        out.append((parts["weight"], parts.get("bias")))
    return out


def from_torch(module_or_state_dict, *, activation: str = "relu") -> Program:
    """A per-pixel program from a PyTorch network of 1x1 convolutions.

    Parameters
    ----------
    module_or_state_dict : torch.nn.Module or mapping
        An ``nn.Sequential`` (or a single layer) of the supported layers (see
        the module docstring), or a state dict of ``<layer>.weight`` /
        ``<layer>.bias`` tensors, in order.
    activation : str
        For a state dict only (it records no activations): the activation
        between consecutive layers, "relu" by default.

    Returns
    -------
    Program
        Runs with channels on ``channel_axis`` (0 for a CHW image as in
        PyTorch, or 1 for NCHW). Weights are kept in float64.

    Examples
    --------
    >>> import torch, numpy as np
    >>> from pixelmix.networks import from_torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 1), torch.nn.ReLU(),
    ...                             torch.nn.Conv2d(8, 2, 1))
    >>> net = from_torch(model)
    >>> net
    Program([Mixer(4 -> 8), relu(), Mixer(8 -> 2)])
    >>> net(np.ones((1, 4, 16, 16), np.float32), channel_axis=1).shape
    (1, 2, 16, 16)
    """
    if isinstance(module_or_state_dict, Mapping):
        return from_arrays(_state_dict_layers(module_or_state_dict), activation=activation)
    import torch.nn as nn

    if not isinstance(module_or_state_dict, nn.Module):
        raise TypeError(
            f"from_torch needs a torch.nn.Module or a state dict, got {type(module_or_state_dict).__name__}"
        )
    steps = _module_steps(module_or_state_dict, "")
    if not any(isinstance(s, Mixer) for s in steps):
        raise ValueError("the module has no Conv2d or Linear layer (no weights)")
    return Program(steps)
