"""A detector over any zoo backbone, built through the backbone contract: FPN + torchvision's FCOS head.

The backbone's `forward_features` levels from 3 up feed a feature pyramid; levels missing up to P7
are added by torchvision's P6/P7 block, so FishNet, SCNet, ResNet (P2..P5) and SpineNet (P3..P7) all
give the same five maps to the same head. Nothing here knows the architecture.

A whole detector (backbone, pyramid and head) is saved in fishspine's format by `save_checkpoint`
with a `detector` section in the header (`DetectorSpec`); `load_checkpoint` opens it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .backbone import Backbone
from .normalisation import IMAGENET_MEAN, IMAGENET_STD

PYRAMID_LEVELS = (3, 4, 5, 6, 7)
HEAD = "fcos"
# Bounds on what a detector header may ask for, checked before anything is built.
MAX_IMAGE_SIZE = 4096
MAX_FPN_CHANNELS = 2048


@dataclass
class DetectorSpec:
    """What a saved detector is besides its backbone: the head, its input size and its classes."""

    num_classes: int
    image_size: int
    fpn_channels: int = 128
    categories: list[int] = field(default_factory=list)  # the dataset's category id of each label
    category_names: list[str] = field(default_factory=list)
    head: str = HEAD

    def __post_init__(self) -> None:
        if not self.categories:
            self.categories = list(range(1, self.num_classes + 1))
        if not self.category_names:
            self.category_names = [str(c) for c in self.categories]

    def name_of(self, label: int) -> str:
        """The category name of a contiguous label (0..num_classes-1)."""
        return self.category_names[label]

    def to_header(self) -> dict[str, Any]:
        return asdict(self)


class BackboneFPN(nn.Module):
    """Backbone -> {"0": P3, ..., "4": P7} with `out_channels` each (what torchvision's heads expect)."""

    def __init__(self, backbone: Backbone, out_channels: int = 128) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

        self.body = backbone
        self.in_levels = [lvl for lvl in sorted(backbone.feature_levels) if lvl in PYRAMID_LEVELS]
        if not self.in_levels or self.in_levels[0] != 3:
            raise ValueError(f"{backbone.variant}: needs a stride-8 output (level 3) for the pyramid")
        missing = PYRAMID_LEVELS[len(self.in_levels) :]
        extra = LastLevelP6P7(out_channels, out_channels) if missing else None
        if missing and len(missing) != 2:
            raise ValueError(f"{backbone.variant}: outputs {self.in_levels} cannot be completed to P3..P7")
        self.fpn = FeaturePyramidNetwork(
            [backbone.feature_levels[lvl] for lvl in self.in_levels], out_channels, extra_blocks=extra
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body.forward_features(x)
        pyramid = self.fpn(OrderedDict((str(i), feats[lvl]) for i, lvl in enumerate(self.in_levels)))
        return OrderedDict((str(i), t) for i, t in enumerate(pyramid.values()))


def pyramid_names() -> list[str]:
    """The pyramid's outputs as the app and the CAMs name them: "FPN P3".."FPN P7" (SpineNet's own
    blocks are called P3..P7)."""
    return [f"FPN P{lvl}" for lvl in PYRAMID_LEVELS]


def build_detector(backbone: Backbone, num_classes: int, image_size: int, fpn_channels: int = 128) -> nn.Module:
    """FCOS (torchvision) over `backbone`; images are fed at `image_size` (no resizing beyond that)."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    anchors = AnchorGenerator(sizes=tuple((8 * 2**i,) for i in range(5)), aspect_ratios=((1.0,),) * 5)
    return FCOS(
        BackboneFPN(backbone, fpn_channels),
        num_classes,
        min_size=image_size,
        max_size=image_size,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        anchor_generator=anchors,
        score_thresh=0.05,
        detections_per_img=100,
    )


def detector_for(backbone: Backbone, spec: DetectorSpec) -> nn.Module:
    """The detector `spec` describes, over `backbone`."""
    if spec.head != HEAD:
        raise ValueError(f"detector head {spec.head!r}: this version builds {HEAD!r} only")
    if spec.fpn_channels % 32:
        raise ValueError(f"fpn_channels {spec.fpn_channels}: must be a multiple of 32 (the head's 32-group norm)")
    return build_detector(backbone, spec.num_classes, spec.image_size, spec.fpn_channels)
