"""Choices the analyses accept, importable without torch (the command line's --help stays instant)."""

REDUCTIONS = ("mean_abs", "max", "topk", "pca")
NORMALISATIONS = ("block", "model", "global")
CAM_METHODS = ("gradcam", "gradcampp", "layercam")
BENCH_MODES = ("fp32", "bf16-cl", "bf16-cl-compile")
