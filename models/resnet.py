"""ResNet baselines (torchvision's definitions), behind the backbone contract.

State_dict keys are torchvision's, so torchvision checkpoints load unchanged. Blocks are the
stem and every bottleneck; the multi-scale outputs are the ends of layer1..layer4 (levels 2..5).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from .backbone import Backbone, BlockInfo
from .registry import register_model

#: Levels of the ends of layer1..layer4, the multi-scale outputs of every staged backbone.
STAGE_LEVELS = (2, 3, 4, 5)


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """`channels * width` rounded to a multiple of `divisor` (at least `divisor`)."""
    if width == 1.0:
        return channels
    return max(divisor, int(round(channels * width / divisor)) * divisor)


class StagedBackbone(Backbone):
    """A stem followed by four stages `layer1..layer4` of residual units, and a linear classifier.

    Subclasses build `stem_forward`, the stages and `fc`; blocks are the stem and every unit
    (named "layer{i}.{j}"), outputs the ends of the stages at levels 2..5.
    """

    fc: nn.Module | None
    expansion = 4

    def _build_stages(
        self,
        stem: BlockInfo,
        layers: tuple[int, ...],
        width: float,
        make_unit: Callable[[int, int, int], nn.Module],
        kind: str,
    ) -> None:
        """Build layer1..layer4 from `make_unit(inplanes, planes, stride)`, and the block list."""
        blocks = [stem]
        inplanes, prev = stem.channels, stem.name
        levels: dict[int, int] = {}
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            planes = scaled(planes, width)
            units = []
            for j in range(n):
                units.append(make_unit(inplanes, planes, 2 if (i > 0 and j == 0) else 1))
                inplanes = planes * self.expansion
                name = f"layer{i + 1}.{j}"
                blocks.append(BlockInfo(name, "stage", i + 2, inplanes, (prev,), (name,), kind))
                prev = name
            setattr(self, f"layer{i + 1}", nn.Sequential(*units))
            levels[STAGE_LEVELS[i]] = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self._feature_levels = levels
        self._init_taps(blocks)

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """The stem, down to stride 4."""
        raise NotImplementedError

    @property
    def has_classifier(self) -> bool:
        return self.fc is not None

    def forward_features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self._tap("stem", self.stem_forward(x))
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


def init_conv_bn(module: nn.Module) -> None:
    """He-normal convolutions, unit BN scale and zero BN shift (torchvision's and the authors' init)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(StagedBackbone):
    """torchvision-compatible bottleneck ResNet/ResNeXt with block self-description."""

    def __init__(
        self,
        layers: tuple[int, ...],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        norm = nn.BatchNorm2d
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = norm(stem)
        self.relu = nn.ReLU(inplace=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stem_block = BlockInfo("stem", "stem", 2, stem, (), ("conv1", "bn1"), "conv7x7+maxpool")

        def make_unit(inplanes: int, planes: int, stride: int) -> nn.Module:
            downsample = None
            if stride != 1 or inplanes != planes * Bottleneck.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                    norm(planes * Bottleneck.expansion),
                )
            return Bottleneck(inplanes, planes, stride, downsample, groups, width_per_group, norm_layer=norm)

        self._build_stages(stem_block, layers, width, make_unit, "bottleneck")
        self.fc = nn.Linear(self._feature_levels[5], num_classes) if num_classes else None
        init_conv_bn(self)

    def stem_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


def _create_resnet(layers: tuple[int, ...], **kwargs) -> ResNet:
    return ResNet(layers, **kwargs)


@register_model("resnet", output_levels=STAGE_LEVELS)
def resnet50(num_classes: int = 1000, width: float = 1.0) -> ResNet:
    """ResNet-50 (torchvision layout)."""
    return _create_resnet((3, 4, 6, 3), num_classes=num_classes, width=width)


@register_model("resnet", output_levels=STAGE_LEVELS)
def resnet101(num_classes: int = 1000, width: float = 1.0) -> ResNet:
    """ResNet-101 (torchvision layout)."""
    return _create_resnet((3, 4, 23, 3), num_classes=num_classes, width=width)


@register_model("resnet", output_levels=STAGE_LEVELS)
def resnext50_32x4d(num_classes: int = 1000, width: float = 1.0) -> ResNet:
    """ResNeXt-50 32x4d (torchvision layout)."""
    return _create_resnet((3, 4, 6, 3), num_classes=num_classes, groups=32, width_per_group=4, width=width)
