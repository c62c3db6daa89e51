"""The real-vs-synthetic discriminator: ResNet-18 from scratch (plain torch; no torchvision).

Same architecture as torchvision's resnet18 (7x7 stem, four stages of two basic blocks, global
average pooling) with a 2-way head, class 1 = real. Input normalisation (ImageNet mean/std) is part
of the module, so callers feed uint8 RGB batches and nobody can forget it.
"""

from __future__ import annotations

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


class Discriminator(nn.Module):
    """ResNet-18 -> global average pool -> Linear(512, 2); ``forward`` takes uint8 NHWC or float NCHW in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        stages, channels = [], 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(channels, width, stride), BasicBlock(width, width, 1)))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(FEATURE_DIM, 2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), channels-last in memory."""
        if images.dtype == torch.uint8:
            images = images.permute(0, 3, 1, 2).float().div_(255.0)
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate (N, 512) features (after global average pooling)."""
        return self.stages(self.stem(self.prepare(images))).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` in evaluation mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True)
    fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (bias - bn.running_mean) * scale + bn.bias.data
    return fused


@torch.no_grad()
def fold_batchnorm(model: Discriminator) -> Discriminator:
    """A copy of ``model`` for scoring, with every BatchNorm folded into the convolution before it
    (the same outputs in evaluation mode, one memory pass less per layer)."""
    import copy

    folded = copy.deepcopy(model).eval()
    folded.stem[0] = _fold(folded.stem[0], folded.stem[1])
    folded.stem[1] = nn.Identity()
    for block in (b for stage in folded.stages for b in stage):
        block.conv1, block.bn1 = _fold(block.conv1, block.bn1), nn.Identity()
        block.conv2, block.bn2 = _fold(block.conv2, block.bn2), nn.Identity()
        if block.downsample is not None:
            block.downsample = nn.Sequential(_fold(block.downsample[0], block.downsample[1]))
    return folded
