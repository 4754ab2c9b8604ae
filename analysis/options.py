"""Choices the analyses accept, importable without torch (the command line's --help stays instant)."""

REDUCTIONS = ("mean_abs", "max", "topk", "pca")
NORMALISATIONS = ("block", "model", "global")
CAM_METHODS = ("gradcam", "gradcampp", "layercam")
# Attributions to the input pixels (captum): many passes each, so they run on request, not on every change.
INPUT_METHODS = ("integrated_gradients", "occlusion")
BENCH_MODES = ("fp32", "bf16-cl", "bf16-cl-compile")
PRECISIONS = ("float32", "bf16")
GRADIENT_WHICH = ("output", "weight")
DEFAULT_INPUT_SIZE = 384  # the longer side of an image as analysed, in the app and every command
IMAGE_SIZE_RANGE = (32, 4096)  # input sizes the app, the command line and sessions accept
GALLERY_ROWS_RANGE = (1, 64)
GRAPH_COLOR_BY = ("role", "params", "macs", "gradient")
CACHE_MB_RANGE = (16, 1 << 20)  # the analysis engine's cache bound
STUDY_METRICS = ("traces", "erf", "activations", "faithfulness", "cka")  # what `fishspine study` computes
# How a map's values become colours: the 1st-99th percentile range (one hot pixel cannot black out the
# rest of the map) or the full min-max range.
SCALINGS = ("percentile", "minmax")
SCALING_PERCENTILES = (1.0, 99.0)
# What each reduction's colour measures, as colour bars say it.
REDUCTION_LABELS = {
    "mean_abs": "mean |a|",
    "max": "max a",
    "topk": "mean |a| of the top-k channels",
    "pca": "PC1 (signed)",
}
SIGNED_REDUCTIONS = ("pca",)  # maps with a meaningful zero and both signs: a diverging colour map centred at 0
ACTIVATION_CMAP = "inferno"
SIGNED_CMAP = "RdBu_r"
CAM_CMAPS = ("inferno", "viridis", "jet")  # the first is the default: perceptually uniform
CAM_LABELS = {
    "gradcam": "Grad-CAM",
    "gradcampp": "Grad-CAM++",
    "layercam": "LayerCAM",
    "integrated_gradients": "Integrated Gradients",
    "occlusion": "Occlusion",
}

#: The COCO table's evaluation (box or mask) and its columns (average precision or recall).
COCO_IOU_TYPES = ("bbox", "segm")
COCO_METRICS = ("AP", "AR")
