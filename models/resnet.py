"""ResNet baselines (torchvision's definitions), behind the backbone contract.

State_dict keys are torchvision's, so torchvision checkpoints load unchanged. Blocks are the
stem and every bottleneck; the multi-scale outputs are the ends of layer1..layer4 (levels 2..5).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from .backbone import Backbone, BlockInfo
from .registry import register_model


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """`channels * width` rounded to a multiple of `divisor` (at least `divisor`)."""
    if width == 1.0:
        return channels
    return max(divisor, int(round(channels * width / divisor)) * divisor)


class ResNet(Backbone):
    """torchvision-compatible bottleneck ResNet/ResNeXt with block self-description."""

    def __init__(self, layers: tuple[int, ...], num_classes: int = 1000, groups: int = 1,
                 width_per_group: int = 64, width: float = 1.0) -> None:
        super().__init__()
        norm = nn.BatchNorm2d
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = norm(stem)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        blocks = [BlockInfo("stem", "stem", 2, stem, (), ("conv1", "bn1"), "conv7x7+maxpool")]
        inplanes, prev = stem, "stem"
        self._stage_ends: list[str] = []
        levels: dict[int, int] = {}
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            planes = scaled(planes, width)
            stride = 1 if i == 0 else 2
            units = []
            for j in range(n):
                downsample = None
                if j == 0 and (stride != 1 or inplanes != planes * Bottleneck.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                        norm(planes * Bottleneck.expansion))
                units.append(Bottleneck(inplanes, planes, stride if j == 0 else 1, downsample,
                                        groups, width_per_group, norm_layer=norm))
                inplanes = planes * Bottleneck.expansion
                name = f"layer{i + 1}.{j}"
                blocks.append(BlockInfo(name, "stage", i + 2, inplanes, (prev,), (name,), "bottleneck"))
                prev = name
            setattr(self, f"layer{i + 1}", nn.Sequential(*units))
            self._stage_ends.append(prev)
            levels[i + 2] = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes else None
        self._feature_levels = levels
        self._init_taps(blocks)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def has_classifier(self) -> bool:
        return self.fc is not None

    def forward_features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self._tap("stem", self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        out: dict[int, torch.Tensor] = {}
        for i in range(4):
            for j, unit in enumerate(getattr(self, f"layer{i + 1}")):
                x = self._tap(f"layer{i + 1}.{j}", unit(x))
            out[i + 2] = x
        return out

    def forward(self, x: torch.Tensor):
        feats = self.forward_features(x)
        if self.fc is None:
            return feats
        return self.fc(torch.flatten(self.avgpool(feats[5]), 1))


def _create_resnet(layers: tuple[int, ...], **kwargs) -> ResNet:
    return ResNet(layers, **kwargs)


@register_model("resnet")
def resnet50(num_classes: int = 1000, width: float = 1.0) -> ResNet:
    """ResNet-50 (torchvision layout)."""
    return _create_resnet((3, 4, 6, 3), num_classes=num_classes, width=width)


@register_model("resnet")
def resnet101(num_classes: int = 1000, width: float = 1.0) -> ResNet:
    """ResNet-101 (torchvision layout)."""
    return _create_resnet((3, 4, 23, 3), num_classes=num_classes, width=width)


@register_model("resnet")
def resnext50_32x4d(num_classes: int = 1000, width: float = 1.0) -> ResNet:
    """ResNeXt-50 32x4d (torchvision layout)."""
    return _create_resnet((3, 4, 6, 3), num_classes=num_classes, groups=32, width_per_group=4,
                          width=width)
