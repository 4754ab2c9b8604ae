"""SCNet: ResNets with self-calibrated convolutions (Liu et al., CVPR 2020).

The module hierarchy (and so the state_dict) is the authors' (MCG-NKU/SCNet); the forward is
ours: no in-place ops, and the v1d average pool ("avd") written once per half rather than one
module called twice. Blocks are the stem and every bottleneck, as for ResNet, so the two staircase
diagrams and gradient traces line up unit for unit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import BlockInfo
from .registry import register_model
from .resnet import STAGE_LEVELS, StagedBackbone, init_conv_bn, scaled


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class SCConv(nn.Module):
    """Self-calibrated convolution: k4(k3(x) * sigmoid(x + up(k2(x)))), with k4 carrying the stride."""

    pooling_r = 4

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.k2 = nn.Sequential(
            nn.AvgPool2d(self.pooling_r, self.pooling_r),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.k3 = _conv_bn(channels, channels)
        self.k4 = _conv_bn(channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The authors' 4x4 pool fails on maps smaller than 4; a window clipped to the map keeps any
        # input size working and is the same pool wherever theirs runs.
        h, w = x.shape[-2:]
        window = (min(self.pooling_r, h), min(self.pooling_r, w))
        calibration = self.k2[2](self.k2[1](F.avg_pool2d(x, window, window)))
        gate = torch.sigmoid(x + F.interpolate(calibration, size=(h, w), mode="nearest"))
        return self.k4(self.k3(x) * gate)


class SCBottleneck(nn.Module):
    """Split bottleneck: a plain 3x3 half (k1) and a self-calibrated half, concatenated, 1x1 to 4x."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, avd: bool = False
    ) -> None:
        super().__init__()
        half = planes // 2  # the authors' bottleneck_width=32: each half is planes/2 wide
        self.conv1_a = nn.Conv2d(inplanes, half, 1, bias=False)
        self.bn1_a = nn.BatchNorm2d(half)
        self.conv1_b = nn.Conv2d(inplanes, half, 1, bias=False)
        self.bn1_b = nn.BatchNorm2d(half)
        self.avd = avd and stride > 1
        conv_stride = 1 if self.avd else stride
        # Parameterless, so two instances keep the authors' state_dict while each half hooks apart.
        self.avd_a = nn.AvgPool2d(3, stride, padding=1) if self.avd else nn.Identity()
        self.avd_b = nn.AvgPool2d(3, stride, padding=1) if self.avd else nn.Identity()
        self.k1 = _conv_bn(half, half, conv_stride)
        self.scconv = SCConv(half, conv_stride)
        self.conv3 = nn.Conv2d(half * 2, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place ReLUs only on fresh intermediates, never on a tensor another block sees.
        a = F.relu(self.bn1_a(self.conv1_a(x)), inplace=True)
        b = F.relu(self.bn1_b(self.conv1_b(x)), inplace=True)
        a = self.avd_a(F.relu(self.k1(a), inplace=True))
        b = self.avd_b(F.relu(self.scconv(b), inplace=True))
        out = self.bn3(self.conv3(torch.cat((a, b), dim=1)))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual, inplace=True)


class SCNet(StagedBackbone):
    """SCNet and SCNet-v1d (deep stem, average-pool shortcut, avd)."""

    def __init__(
        self,
        layers: tuple[int, ...],
        num_classes: int = 1000,
        deep_stem: bool = False,
        stem_width: int = 64,
        avg_down: bool = False,
        avd: bool = False,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if deep_stem:
            sw = scaled(stem_width, width)
            stem_out = sw * 2
            self.conv1 = nn.Sequential(
                # In-place ReLUs on fresh BN outputs only (never on a tensor a hook has seen).
                nn.Conv2d(3, sw, 3, 2, 1, bias=False),
                nn.BatchNorm2d(sw),
                nn.ReLU(inplace=True),
                nn.Conv2d(sw, sw, 3, 1, 1, bias=False),
                nn.BatchNorm2d(sw),
                nn.ReLU(inplace=True),
                nn.Conv2d(sw, stem_out, 3, 1, 1, bias=False),
            )
            kind = "3x conv3x3+maxpool"
        else:
            stem_out = scaled(64, width)
            self.conv1 = nn.Conv2d(3, stem_out, 7, 2, 3, bias=False)
            kind = "conv7x7+maxpool"
        self.bn1 = nn.BatchNorm2d(stem_out)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stem = BlockInfo("stem", "stem", 2, stem_out, (), ("conv1", "bn1"), kind)

        def make_unit(inplanes: int, planes: int, stride: int) -> nn.Module:
            out = planes * SCBottleneck.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                if avg_down:  # the authors' avg_down: pool (kernel = stride) then a 1x1 conv
                    downsample = nn.Sequential(
                        nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                        nn.Conv2d(inplanes, out, 1, bias=False),
                        nn.BatchNorm2d(out),
                    )
                else:
                    downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            return SCBottleneck(inplanes, planes, stride, downsample, avd)

        self._build_stages(stem, layers, width, make_unit, "sc-bottleneck")
        self.fc = nn.Linear(self._feature_levels[5], num_classes) if num_classes else None
        init_conv_bn(self)

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))


def _create_scnet(layers: tuple[int, ...], **kwargs) -> SCNet:
    return SCNet(layers, **kwargs)


@register_model("scnet", output_levels=STAGE_LEVELS)
def scnet50(num_classes: int = 1000, width: float = 1.0) -> SCNet:
    """SCNet-50."""
    return _create_scnet((3, 4, 6, 3), num_classes=num_classes, width=width)


@register_model("scnet", output_levels=STAGE_LEVELS)
def scnet50_v1d(num_classes: int = 1000, width: float = 1.0) -> SCNet:
    """SCNet-50-v1d: deep stem of width 32, average-pool shortcut, avd."""
    return _create_scnet(
        (3, 4, 6, 3), num_classes=num_classes, deep_stem=True, stem_width=32, avg_down=True, avd=True, width=width
    )


@register_model("scnet", output_levels=STAGE_LEVELS)
def scnet101(num_classes: int = 1000, width: float = 1.0) -> SCNet:
    """SCNet-101."""
    return _create_scnet((3, 4, 23, 3), num_classes=num_classes, width=width)


@register_model("scnet", output_levels=STAGE_LEVELS)
def scnet101_v1d(num_classes: int = 1000, width: float = 1.0) -> SCNet:
    """SCNet-101-v1d: deep stem of width 64, average-pool shortcut, avd."""
    return _create_scnet(
        (3, 4, 23, 3), num_classes=num_classes, deep_stem=True, stem_width=64, avg_down=True, avd=True, width=width
    )
