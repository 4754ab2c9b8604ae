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
