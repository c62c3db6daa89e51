"""The real-vs-synthetic discriminator: ResNet-18 in plain torch (no torchvision).

Same architecture and parameter names as torchvision's resnet18 (7x7 stem, four stages of two
basic blocks, global average pooling) with a 2-way ``fc``, class 1 = real. Input normalisation
(ImageNet mean/std) is part of the module, so callers feed uint8 RGB batches and nobody can forget it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
REAL = 1
FEATURE_DIM = 512


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
"""(width, stride) of torchvision's resnet18 ``layer1``..``layer4``, two basic blocks each."""

_LEGACY_PREFIXES = (("stem.0.", "conv1."), ("stem.1.", "bn1."), ("stages.0.", "layer1."), ("stages.1.", "layer2."),
                    ("stages.2.", "layer3."), ("stages.3.", "layer4."), ("head.", "fc."))
"""Parameter names of discriminators saved before they were named as torchvision's (model version 1)."""


def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with version-1 names (``stem.0``, ``stages.N``, ``head``, saved ``mean``/``std``)
    renamed to torchvision's (``conv1``, ``layerN+1``, ``fc``); current names pass unchanged."""
    out = {}
    for key, value in state.items():
        if key in ("mean", "std"):  # constants of the module, no longer saved
            continue
        for old, new in _LEGACY_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


class Discriminator(nn.Module):
    """ResNet-18 -> global average pool -> Linear(512, 2); ``forward`` takes uint8 NHWC or float NCHW in [0, 1].

    Modules are named as in torchvision's ``resnet18`` (``conv1``, ``bn1``, ``layer1``..``layer4``,
    ``fc``), so its ImageNet checkpoint loads into everything but the 2-way ``fc``
    (:func:`hisyngen.filtering.checkpoint.initial_weights`). Files with the version-1 names load too.
    """

    def __init__(self) -> None:
        super().__init__()
        # Not in the state dict: fixed constants, and the saved keys are then exactly torchvision's.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # Created (and below initialised) in the order of the version-1 model, so that a seed gives
        # the same weights as before.
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = 64
        for index, (width, stride) in enumerate(RESNET18_STAGES, start=1):
            self.add_module(f"layer{index}", nn.Sequential(BasicBlock(channels, width, stride), BasicBlock(width, width, 1)))
            channels = width
        self.fc = nn.Linear(FEATURE_DIM, 2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.register_load_state_dict_pre_hook(_upgrade_on_load)

    @property
    def layers(self) -> tuple[nn.Sequential, ...]:
        """``layer1``..``layer4``."""
        return tuple(getattr(self, f"layer{index}") for index in range(1, len(RESNET18_STAGES) + 1))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), channels-last in memory."""
        if images.dtype == torch.uint8:
            images = images.permute(0, 3, 1, 2).float().div_(255.0)
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate (N, 512) features (after global average pooling)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.prepare(images)))))
        for layer in self.layers:
            x = layer(x)
        return x.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images))


def _upgrade_on_load(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: version-1 names in ``state_dict`` (a copy torch made) become current ones."""
    mine = {key[len(prefix):]: state_dict.pop(key) for key in [k for k in state_dict if k.startswith(prefix)]}
    state_dict.update({prefix + key: value for key, value in upgrade_state_dict(mine).items()})


@torch.no_grad()
def fold_batchnorm(model: Discriminator) -> Discriminator:
    """A copy of ``model`` for scoring, with every BatchNorm folded into the convolution before it
    (torch's ``fuse_conv_bn_eval``: the same outputs in evaluation mode, one memory pass less per layer)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    folded.conv1, folded.bn1 = fuse_conv_bn_eval(folded.conv1, folded.bn1), nn.Identity()
    for block in (b for layer in folded.layers for b in layer):
        block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
        if block.downsample is not None:
            block.downsample = nn.Sequential(fuse_conv_bn_eval(block.downsample[0], block.downsample[1]))
    return folded
