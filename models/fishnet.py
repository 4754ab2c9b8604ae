"""FishNet (Sun et al., NeurIPS 2018): a tail that goes down, a body that comes back up with lateral
transfers from the tail, and a head that goes down again, concatenating body features.

The module hierarchy (and so the state_dict) is the authors' (kevin-ssy/FishNet: `fish.fish[i]`
lists per stage); the forward is ours: built once in `__init__` (the authors' builds
`nn.Sequential` wrappers on every call), with no in-place ops, and nearest up-sampling to the
exact size of the lateral feature so inputs of any size run (identical to ×2 where theirs runs).

Blocks, in forward order: the stem; every pre-activation residual unit (tail, bridge, body, head);
the bridge's score and SE gate (`res(x) * att + att`, kept since the weights depend on it); every
transfer unit; and each stage's merge point (the concatenation of trunk and transfer), which is
where FishNet's resolution changes and where its shortcuts from shallow layers arrive. A unit's
level is that of its output; the merge's level is that after up/down-sampling.

Sizes: a level-l output is ceil(input / 2**l) on each side, for any input size. The stem's strided
3x3 conv and max-pool round up, and the 2x2 down-sampling pools of tail and head use `ceil_mode`,
which equals the authors' floor pooling wherever their code runs (it needs ceil(input / 4) to be a
multiple of 8, so every pooled map is even) and keeps maps of tiny or odd inputs from vanishing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, BlockInfo
from .registry import register_model
from .resnet import scaled

NETWORK_PLANES = (64, 128, 256, 512, 512, 512, 384, 256, 320, 832, 1600)
NUM_DOWN = 3
NUM_UP = 3
TRANS_MAP = (2, 1, 0, 6, 5, 4)  # which earlier stage output each body/head stage's transfer takes
# Detector outputs (level -> index of the stage output, 0 = stem): the last body stage at stride 4,
# the three head stages at strides 8, 16, 32.
FEATURE_OUTPUTS = {2: 7, 3: 8, 4: 9, 5: 10}


class FishBottleneck(nn.Module):
    """Pre-activation bottleneck (BN-ReLU-conv x3). In "up" mode the shortcut sums groups of `k`
    adjacent input channels; otherwise a BN-ReLU-1x1 projection where the shape changes."""

    def __init__(self, inplanes: int, planes: int, up: bool = False, k: int = 1, dilation: int = 1) -> None:
        super().__init__()
        mid = planes // 4
        self.k = k
        self.up = up
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, mid, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, 1, dilation, dilation, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, planes, 1, bias=False)
        self.shortcut = None
        if not up and inplanes != planes:
            self.shortcut = nn.Sequential(
                nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True), nn.Conv2d(inplanes, planes, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place ReLUs only on fresh BN outputs, never on a tensor another block sees.
        out = self.conv1(F.relu(self.bn1(x), inplace=True))
        out = self.conv2(F.relu(self.bn2(out), inplace=True))
        out = self.conv3(F.relu(self.bn3(out), inplace=True))
        if self.up:
            residual = _channel_group_sum(x, self.k)
        elif self.shortcut is not None:
            residual = self.shortcut(x)
        else:
            residual = x
        return out + residual


def _channel_group_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    """Sum of each group of `k` adjacent channels (the authors' `view(n, c // k, k, h, w).sum(2)`)."""
    # Strided adds instead of a reduction over a size-k dim: same values (exactly, for k = 2), but
    # they keep channels-last layout, where the reduction returns NCHW and slows the residual add.
    out = x[:, 0::k]
    for j in range(1, k):
        out = out + x[:, j::k]
    return out


def _units(inplanes: int, planes: int, n: int, up: bool = False, k: int = 1, dilation: int = 1) -> nn.Sequential:
    first = FishBottleneck(inplanes, planes, up=up, k=k, dilation=dilation)
    return nn.Sequential(first, *(FishBottleneck(planes, planes, dilation=dilation) for _ in range(1, n)))


def _score(in_ch: int, out_ch: int, pooled: bool) -> list[nn.Module]:
    conv = nn.Sequential(
        nn.BatchNorm2d(in_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, in_ch // 2, 1, bias=False),
        nn.BatchNorm2d(in_ch // 2),
        nn.ReLU(inplace=True),
    )
    fc = nn.Conv2d(in_ch // 2, out_ch, 1, bias=True)
    return [conv, nn.Sequential(nn.AdaptiveAvgPool2d(1), fc) if pooled else fc]


def _se_gate(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_ch, out_ch // 16, 1),
            nn.ReLU(),
            nn.Conv2d(out_ch // 16, out_ch, 1),
            nn.Sigmoid(),
        )
    )


@dataclass(frozen=True)
class _Stage:
    index: int
    part: str  # "tail", "bridge", "body", "head"
    name: str  # block-name prefix, e.g. "body1"
    trans_from: int | None  # index into the stage outputs (0 = stem) of the transfer input


class _Fish(nn.Module):
    """Holds `fish`: one ModuleList per stage, laid out as the authors' state_dict expects."""

    def __init__(self, stages: nn.ModuleList) -> None:
        super().__init__()
        self.fish = stages


class FishNet(Backbone):
    """FishNet-99/150/201 with block self-description."""

    def __init__(
        self,
        num_res_blks: tuple[int, ...],
        num_trans_blks: tuple[int, ...],
        num_classes: int = 1000,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        planes = [scaled(p, width) for p in NETWORK_PLANES]
        stem = planes[0]
        self.conv1 = self._conv_bn_relu(3, stem // 2, stride=2)
        self.conv2 = self._conv_bn_relu(stem // 2, stem // 2)
        self.conv3 = self._conv_bn_relu(stem // 2, stem)
        self.pool1 = nn.MaxPool2d(3, 2, 1)
        blocks = [BlockInfo("stem", "stem", 2, stem, (), ("conv1", "conv2", "conv3"), "3x conv3x3+maxpool")]

        cur = planes[1:]
        depth = len(cur)
        out_planes = [stem] * (depth + 1)  # channels of stage outputs; [0] is the stem
        out_block = ["stem"] * (depth + 1)  # the block whose output (maybe pooled) each stage output is
        out_level = [2] * (depth + 1)
        self._stages: list[_Stage] = []
        stage_modules = []
        body_count = head_count = 0
        for i in range(depth):
            path = f"fish.fish.{i}"
            inplanes, level_in = out_planes[i], out_level[i]
            mods: list[nn.Module]
            if i < NUM_DOWN:
                stage = _Stage(i, "tail", f"tail{i}", None)
                mods = [_units(inplanes, cur[i], num_res_blks[i]), nn.MaxPool2d(2, 2, ceil_mode=True)]
                last = self._unit_blocks(
                    blocks,
                    stage.name,
                    "tail",
                    level_in,
                    cur[i],
                    num_res_blks[i],
                    f"{path}.0",
                    out_block[i],
                    "pre-act bottleneck",
                )
                out_planes[i + 1], out_block[i + 1], out_level[i + 1] = cur[i], last, level_in + 1
            elif i == NUM_DOWN:
                stage = _Stage(i, "bridge", "bridge", None)
                score_ch = cur[i] * 2
                mods = [
                    *_score(inplanes, score_ch, pooled=False),
                    _units(score_ch, cur[i], num_res_blks[i]),
                    _se_gate(score_ch, cur[i]),
                ]
                blocks.append(
                    BlockInfo(
                        "bridge.score",
                        "body",
                        level_in,
                        score_ch,
                        (out_block[i],),
                        (f"{path}.0", f"{path}.1"),
                        "BN-ReLU-1x1 score",
                    )
                )
                last = self._unit_blocks(
                    blocks,
                    "bridge",
                    "body",
                    level_in,
                    cur[i],
                    num_res_blks[i],
                    f"{path}.2",
                    "bridge.score",
                    "pre-act bottleneck",
                )
                blocks.append(
                    BlockInfo(
                        "bridge.se",
                        "body",
                        level_in,
                        cur[i],
                        (last, "bridge.score"),
                        (f"{path}.3",),
                        "SE gate: res*att+att",
                    )
                )
                out_planes[i + 1], out_block[i + 1], out_level[i + 1] = cur[i], "bridge.se", level_in
            else:
                up = i < NUM_DOWN + NUM_UP + 1
                part = "body" if up else "head"
                count = body_count if up else head_count
                stage = _Stage(i, part, f"{part}{count}", TRANS_MAP[i - NUM_DOWN - 1])
                if up:
                    body_count += 1
                else:
                    head_count += 1
                trans_in = out_planes[stage.trans_from]
                k, dilation = (inplanes // cur[i], 2 ** (i - NUM_DOWN - 1)) if up else (1, 1)
                res = _units(inplanes, cur[i], num_res_blks[i], up=up, k=k, dilation=dilation)
                trans = _units(trans_in, trans_in, num_trans_blks[i - NUM_DOWN - 1])
                mods = [res, trans, nn.Upsample(scale_factor=2) if up else nn.MaxPool2d(2, 2, ceil_mode=True)]
                kind = "up bottleneck (channel-sum shortcut)" if up and k > 1 else "pre-act bottleneck"
                trunk = self._unit_blocks(
                    blocks, stage.name, part, level_in, cur[i], num_res_blks[i], f"{path}.0", out_block[i], kind
                )
                lateral = self._unit_blocks(
                    blocks,
                    f"{stage.name}.transfer",
                    part,
                    out_level[stage.trans_from],
                    trans_in,
                    num_trans_blks[i - NUM_DOWN - 1],
                    f"{path}.1",
                    out_block[stage.trans_from],
                    "transfer bottleneck",
                )
                merged = cur[i] + trans_in
                level_out = level_in - 1 if up else level_in + 1
                blocks.append(
                    BlockInfo(
                        f"{stage.name}.merge",
                        part,
                        level_out,
                        merged,
                        (trunk, lateral),
                        (),
                        "upsample+concat" if up else "maxpool+concat",
                    )
                )
                out_planes[i + 1], out_block[i + 1], out_level[i + 1] = merged, f"{stage.name}.merge", level_out
                if i == depth - 1:
                    mods.extend(_score(merged, num_classes or 1, pooled=True))
                    if num_classes:  # the classifier's own BN-ReLU-1x1; run by forward() only
                        blocks.append(
                            BlockInfo(
                                "score",
                                "head",
                                level_out,
                                merged // 2,
                                (f"{stage.name}.merge",),
                                (f"{path}.3",),
                                "BN-ReLU-1x1",
                            )
                        )
            self._stages.append(stage)
            stage_modules.append(nn.ModuleList(mods))
        self.fish = _Fish(nn.ModuleList(stage_modules))
        self._num_classes = num_classes
        self._feature_levels = {lvl: out_planes[i] for lvl, i in FEATURE_OUTPUTS.items()}
        self._init_taps(blocks)
        self._init_weights()

    @staticmethod
    def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    @staticmethod
    def _unit_blocks(
        blocks: list[BlockInfo],
        prefix: str,
        role: str,
        level: int,
        channels: int,
        n: int,
        path: str,
        parent: str,
        kind: str,
    ) -> str:
        for j in range(n):
            blocks.append(BlockInfo(f"{prefix}.{j}", role, level, channels, (parent,), (f"{path}.{j}",), kind))
            parent = f"{prefix}.{j}"
        return parent

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # the authors' init: N(0, sqrt(2 / (k*k*out)))
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def has_classifier(self) -> bool:
        return bool(self._num_classes)

    def _run_units(self, units: nn.Sequential, prefix: str, x: torch.Tensor) -> torch.Tensor:
        for j, unit in enumerate(units):
            x = self._tap(f"{prefix}.{j}", unit(x))
        return x

    def _forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage output, [0] being the stem's."""
        x = self._tap("stem", self.pool1(self.conv3(self.conv2(self.conv1(x)))))
        feats = [x]
        for stage, mods in zip(self._stages, self.fish.fish):
            inp = feats[-1]
            if stage.part == "tail":
                feats.append(mods[1](self._run_units(mods[0], stage.name, inp)))
            elif stage.part == "bridge":
                score = self._tap("bridge.score", mods[1](mods[0](inp)))
                att = mods[3](score)
                res = self._run_units(mods[2], "bridge", score)
                feats.append(self._tap("bridge.se", res * att + att))
            else:
                trunk = self._run_units(mods[0], stage.name, inp)
                lateral = self._run_units(mods[1], f"{stage.name}.transfer", feats[stage.trans_from])
                if stage.part == "body":  # nearest x2, to the lateral's exact size
                    trunk = F.interpolate(trunk, size=lateral.shape[-2:], mode="nearest")
                else:
                    trunk = mods[2](trunk)
                feats.append(self._tap(f"{stage.name}.merge", torch.cat((trunk, lateral), dim=1)))
        return feats

    def forward_features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        feats = self._forward_stages(x)
        return {level: feats[i] for level, i in FEATURE_OUTPUTS.items()}

    def forward(self, x: torch.Tensor):
        feats = self._forward_stages(x)
        if not self._num_classes:
            return {level: feats[i] for level, i in FEATURE_OUTPUTS.items()}
        last = self.fish.fish[-1]
        score = self._tap("score", last[3](feats[-1]))
        return torch.flatten(last[4](score), 1)


def _create_fishnet(num_res_blks: tuple[int, ...], num_trans_blks: tuple[int, ...], **kwargs) -> FishNet:
    return FishNet(num_res_blks, num_trans_blks, **kwargs)


@register_model("fishnet", output_levels=tuple(FEATURE_OUTPUTS))
def fishnet99(num_classes: int = 1000, width: float = 1.0) -> FishNet:
    """FishNet-99."""
    return _create_fishnet((2, 2, 6, 2, 1, 1, 1, 1, 2, 2), (1, 1, 1, 1, 1, 4), num_classes=num_classes, width=width)


@register_model("fishnet", output_levels=tuple(FEATURE_OUTPUTS))
def fishnet150(num_classes: int = 1000, width: float = 1.0) -> FishNet:
    """FishNet-150."""
    return _create_fishnet((2, 4, 8, 4, 2, 2, 2, 2, 2, 4), (2, 2, 2, 2, 2, 4), num_classes=num_classes, width=width)


@register_model("fishnet", output_levels=tuple(FEATURE_OUTPUTS))
def fishnet201(num_classes: int = 1000, width: float = 1.0) -> FishNet:
    """FishNet-201."""
    return _create_fishnet((3, 4, 12, 4, 2, 2, 2, 2, 3, 10), (2, 2, 2, 2, 2, 9), num_classes=num_classes, width=width)
