"""SpineNet (Du et al., CVPR 2020): a scale-permuted backbone found by architecture search.

The module hierarchy (and so the state_dict) is that of the common PyTorch port
(yan-roo/SpineNet-Pytorch, an mmdetection v1.1 backbone), whose detector files fishspine opens.
The forward is ours: no in-place ops, the "unused block into its level's output" connection fixed at
build time rather than found by comparing shapes, and every resampling aimed at the exact size of
its target level, ceil(H / 2**level), so any input size works (the port needs multiples of 128;
for those, ours is the same computation).

Blocks are the stem, the two level-2 initial blocks, the 15 scale-permuted blocks (each a merge of
two resampled parents followed by its residual group) and the five endpoints P3..P7. Parents are
the real cross-scale edges, which the scale-permuted diagram draws.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .backbone import Backbone, BlockInfo
from .registry import register_model
from .resnet import init_conv_bn, scaled

FILTER_SIZE = {1: 32, 2: 64, 3: 128, 4: 256, 5: 256, 6: 256, 7: 256}
OUTPUT_LEVELS = (3, 4, 5, 6, 7)
# SpineNet is a detection backbone: 640 is the paper's resolution for SpineNet-49S/49 (at 224, P7
# would be 2x2). The larger variants were trained larger; one size keeps the zoo's SpineNets comparable.
INPUT_SIZE = 640
#: The searched architecture: (level, bottleneck?, parent offsets, is_output); offsets 0 and 1 are
#: the two initial blocks, so list index k is network index k + 2.
BLOCK_SPECS = (
    (2, True, (0, 1), False),
    (4, False, (0, 1), False),
    (3, True, (2, 3), False),
    (4, True, (2, 4), False),
    (6, False, (3, 5), False),
    (4, True, (3, 5), False),
    (5, False, (6, 7), False),
    (7, False, (6, 8), False),
    (5, True, (8, 9), False),
    (5, True, (8, 10), False),
    (4, True, (5, 10), True),
    (3, True, (4, 10), True),
    (5, True, (7, 12), True),
    (7, True, (5, 14), True),
    (6, True, (12, 14), True),
)
INIT_SPECS = ((2, True, (), False), (2, True, (), False))


@dataclass(frozen=True)
class _Spec:
    level: int
    bottleneck: bool
    parents: tuple[int, ...]
    is_output: bool


SPECS = tuple(_Spec(*s) for s in INIT_SPECS + BLOCK_SPECS)


class ConvNorm(nn.Module):
    """conv -> BN (-> ReLU): the port's ConvModule, with its `conv` / `bn` key names."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, act: bool = True, norm=nn.BatchNorm2d
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = norm(cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x, inplace=True) if self.act else x  # x is this module's fresh BN output


class Resample(nn.Module):
    """Bring a parent to a block's level and width: 1x1 squeeze, resize, 1x1 expand (no ReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        level_in: int,
        level_out: int,
        bottleneck_parent: bool,
        alpha: float,
        norm,
    ) -> None:
        super().__init__()
        squeezed = int(in_channels * alpha)
        self.level_in, self.level_out = level_in, level_out
        self.squeeze_conv = ConvNorm(in_channels * 4 if bottleneck_parent else in_channels, squeezed, 1, norm=norm)
        if level_out > level_in:
            self.downsample_conv = ConvNorm(squeezed, squeezed, 3, stride=2, norm=norm)
        ratio = 2 ** (level_out - level_in)
        # Further down-sampling beyond the strided conv, as in the port: one max-pool of stride ratio/2.
        self.pool_kernel = 0 if ratio < 4 else (3 if ratio == 4 else 5)
        self.pool_stride = ratio // 2
        self.expand_conv = ConvNorm(squeezed, out_channels, 1, act=False, norm=norm)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.squeeze_conv(x)
        if self.level_out > self.level_in:
            x = self.downsample_conv(x)
            if self.pool_kernel:
                x = F.max_pool2d(x, self.pool_kernel, self.pool_stride, self.pool_kernel // 2)
        elif self.level_out < self.level_in:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.expand_conv(x)


class Merge(nn.Module):
    """Sum of a block's resampled parents."""

    def __init__(self, ops: list[Resample]) -> None:
        super().__init__()
        self.resample_ops = nn.ModuleList(ops)


def _res_group(bottleneck: bool, inplanes: int, planes: int, repeats: int, norm) -> nn.Sequential:
    block = Bottleneck if bottleneck else BasicBlock
    out = planes * block.expansion
    downsample = None
    if inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, bias=False), norm(out))
    units = [block(inplanes, planes, 1, downsample, norm_layer=norm)]
    units += [block(out, planes, norm_layer=norm) for _ in range(1, repeats)]
    return nn.Sequential(*units)


class SpineNet(Backbone):
    """SpineNet-49S/49/96/143/190 backbone returning P3..P7."""

    def __init__(
        self,
        endpoints_num_filters: int,
        filter_size_scale: float,
        resample_alpha: float,
        block_repeats: int,
        width: float = 1.0,
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        norm = functools.partial(nn.BatchNorm2d, eps=bn_eps)
        self.bn_eps = bn_eps
        fss = filter_size_scale * width

        def channels(level: int) -> int:
            return int(FILTER_SIZE[level] * fss)

        def out_channels(spec: _Spec) -> int:
            return channels(spec.level) * (4 if spec.bottleneck else 1)

        stem = scaled(64, width)
        endpoint = scaled(endpoints_num_filters, width)
        self.conv1 = ConvNorm(3, stem, 7, stride=2, norm=norm)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.init_block1 = _res_group(True, stem, channels(2), block_repeats, norm)
        self.init_block2 = _res_group(True, channels(2) * 4, channels(2), block_repeats, norm)
        names = ["init1", "init2"] + [f"block{k}" for k in range(2, len(SPECS))]
        blocks = [
            BlockInfo("stem", "stem", 2, stem, (), ("conv1",), "conv7x7+maxpool"),
            BlockInfo("init1", "stem", 2, channels(2) * 4, ("stem",), ("init_block1",), "bottleneck"),
            BlockInfo("init2", "stem", 2, channels(2) * 4, ("init1",), ("init_block2",), "bottleneck"),
        ]

        # The port adds any block that nothing has consumed yet into an output block of the same
        # shape (in practice network index 11 into 14); decided here once, from levels and widths.
        self._extra_inputs: dict[int, tuple[int, ...]] = {}
        consumers = [0] * len(SPECS)
        for k, spec in enumerate(SPECS[2:], start=2):
            if spec.is_output:
                extra = tuple(
                    j
                    for j in range(k)
                    if consumers[j] == 0
                    and SPECS[j].level == spec.level
                    and out_channels(SPECS[j]) == out_channels(spec)
                )
                if extra:
                    self._extra_inputs[k] = extra
                for j in extra:
                    consumers[j] += 1
            for p in spec.parents:
                consumers[p] += 1

        merges, groups = [], []
        for k, spec in enumerate(SPECS[2:], start=2):
            ops = [
                Resample(
                    channels(SPECS[p].level),
                    out_channels(spec),
                    SPECS[p].level,
                    spec.level,
                    SPECS[p].bottleneck,
                    resample_alpha,
                    norm,
                )
                for p in spec.parents
            ]
            merges.append(Merge(ops))
            groups.append(_res_group(spec.bottleneck, out_channels(spec), channels(spec.level), block_repeats, norm))
            parents = tuple(names[p] for p in spec.parents)
            parents += tuple(names[j] for j in self._extra_inputs.get(k, ()))
            kind = ("bottleneck" if spec.bottleneck else "residual") + (" (output)" if spec.is_output else "")
            blocks.append(
                BlockInfo(
                    names[k],
                    "permuted",
                    spec.level,
                    out_channels(spec),
                    parents,
                    (f"merge_ops.{k - 2}", f"scale_permuted_blocks.{k - 2}"),
                    kind,
                )
            )
        self.merge_ops = nn.ModuleList(merges)
        self.scale_permuted_blocks = nn.ModuleList(groups)

        self._output_block = {s.level: k for k, s in enumerate(SPECS) if s.is_output}
        self.endpoint_convs = nn.ModuleDict(
            {
                str(level): ConvNorm(out_channels(SPECS[k]), endpoint, 1, act=False, norm=norm)
                for k, spec in enumerate(SPECS)
                if spec.is_output
                for level in (spec.level,)
            }
        )
        for level in OUTPUT_LEVELS:
            blocks.append(
                BlockInfo(
                    f"P{level}",
                    "output",
                    level,
                    endpoint,
                    (names[self._output_block[level]],),
                    (f"endpoint_convs.{level}",),
                    "1x1 conv-BN",
                )
            )
        self._names = names
        self._feature_levels = {level: endpoint for level in OUTPUT_LEVELS}
        self._init_taps(blocks)
        self._init_weights()

    def _init_weights(self) -> None:
        init_conv_bn(self)
        for m in self.modules():  # zero-init residuals, as the port does
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        h, w = x.shape[-2:]
        sizes = {level: (-(-h // 2**level), -(-w // 2**level)) for level in range(2, 8)}
        feat = self._tap("stem", self.maxpool(self.conv1(x)))
        feats = [self._tap("init1", self.init_block1(feat))]
        feats.append(self._tap("init2", self.init_block2(feats[0])))
        for k, (spec, merge, group) in enumerate(zip(SPECS[2:], self.merge_ops, self.scale_permuted_blocks), start=2):
            size = sizes[spec.level]
            target = merge.resample_ops[0](feats[spec.parents[0]], size)
            for op, p in zip(merge.resample_ops[1:], spec.parents[1:]):
                target = target + op(feats[p], size)
            for j in self._extra_inputs.get(k, ()):
                target = target + feats[j]
            feats.append(self._tap(self._names[k], group(F.relu(target))))
        return {
            level: self._tap(f"P{level}", self.endpoint_convs[str(level)](feats[self._output_block[level]]))
            for level in OUTPUT_LEVELS
        }


def _create_spinenet(
    endpoints_num_filters: int, filter_size_scale: float, resample_alpha: float, block_repeats: int, **kwargs
) -> SpineNet:
    return SpineNet(endpoints_num_filters, filter_size_scale, resample_alpha, block_repeats, **kwargs)


@register_model("spinenet", output_levels=OUTPUT_LEVELS, input_size=INPUT_SIZE)
def spinenet49S(width: float = 1.0, bn_eps: float = 1e-3) -> SpineNet:
    """SpineNet-49S (P3..P7 of 128 channels). `bn_eps` 1e-3 is the port's configs' (TF uses 1e-4 or 1e-3)."""
    return _create_spinenet(128, 0.65, 0.5, 1, width=width, bn_eps=bn_eps)


@register_model("spinenet", output_levels=OUTPUT_LEVELS, input_size=INPUT_SIZE)
def spinenet49(width: float = 1.0, bn_eps: float = 1e-3) -> SpineNet:
    """SpineNet-49 (P3..P7 of 256 channels)."""
    return _create_spinenet(256, 1.0, 0.5, 1, width=width, bn_eps=bn_eps)


@register_model("spinenet", output_levels=OUTPUT_LEVELS, input_size=INPUT_SIZE)
def spinenet96(width: float = 1.0, bn_eps: float = 1e-3) -> SpineNet:
    """SpineNet-96: SpineNet-49 with every block repeated twice."""
    return _create_spinenet(256, 1.0, 0.5, 2, width=width, bn_eps=bn_eps)


@register_model("spinenet", output_levels=OUTPUT_LEVELS, input_size=INPUT_SIZE)
def spinenet143(width: float = 1.0, bn_eps: float = 1e-3) -> SpineNet:
    """SpineNet-143: blocks repeated three times, resample_alpha 1."""
    return _create_spinenet(256, 1.0, 1.0, 3, width=width, bn_eps=bn_eps)


@register_model("spinenet", output_levels=OUTPUT_LEVELS, input_size=INPUT_SIZE)
def spinenet190(width: float = 1.0, bn_eps: float = 1e-3) -> SpineNet:
    """SpineNet-190: filters x1.3, blocks repeated four times, P3..P7 of 512 channels."""
    return _create_spinenet(512, 1.3, 1.0, 4, width=width, bn_eps=bn_eps)
