#!/usr/bin/env bash
# Rebuild assets/demo: generate the dataset, train the four demo detectors with one recipe, and
# collect whole detectors, val ground truth, detections and sample images.
# Usage: scripts/make_demo.sh [WORK_DIR] [cpu|cuda] [STAGES]   (STAGES: any of synth,train,collect; default all)
# Training goes round-robin, one epoch of each backbone in turn, each resuming from its last epoch:
# an interrupted run continues where it stopped when the script is run again, and all four backbones
# have had the same number of epochs whenever it stops. OMP_NUM_THREADS sets the CPU threads.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/fishspine-demo}
DEVICE=${2:-cpu}
STAGES=${3:-synth,train,collect}
EPOCHS=${EPOCHS:-5}
F=.venv/bin/fishspine
PY=.venv/bin/python
BACKBONES=(resnet50 fishnet150 scnet50 spinenet49)
declare -A LABEL=([resnet50]=ResNet-50 [fishnet150]=FishNet-150 [scnet50]=SCNet-50 [spinenet49]=SpineNet-49)
RECIPE=(--width 0.25 --epochs "$EPOCHS" --batch 8 --lr 2e-3 --warmup-steps 200 --image-size 192 --fpn-channels 64
  --eval-images 100 --device "$DEVICE")

if [[ $STAGES == *synth* && ! -f "$WORK/data/annotations/instances_val.json" ]]; then
  $F data synth "$WORK/data" --train 3000 --val 500 --size 192 --seed 0
fi
if [[ $STAGES == *train* ]]; then
  for ((e = 1; e <= EPOCHS; e++)); do
    for b in "${BACKBONES[@]}"; do
      done_epochs=$( (grep -c . "$WORK/runs/$b/metrics.jsonl" 2>/dev/null) || echo 0)
      ((done_epochs >= e)) && continue
      $F train --backbone "$b" --data "$WORK/data" --out "$WORK/runs/$b" "${RECIPE[@]}" --until-epoch "$e" --resume
    done
  done
fi
[[ $STAGES == *collect* ]] || exit 0

DEMO=assets/demo
$PY scripts/collect_demo.py "$WORK" "$EPOCHS" "$DEVICE"
# Real photographs shipped with scikit-image (public domain / CC0; credits in assets/demo/README.md).
if [ -d "${SKIMAGE_DATA:-}" ]; then
  $PY - "$SKIMAGE_DATA" "$DEMO/images" <<'PYEOF'
import sys
from pathlib import Path
from PIL import Image
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("astronaut.png", "chelsea.png", "coffee.png"):
    img = Image.open(src / name).convert("RGB")
    img.thumbnail((384, 384))
    img.save(dst / (Path(name).stem + ".jpg"), quality=90)
PYEOF
fi
$F coco --gt "$DEMO/coco/instances_val.json" --dt ResNet-50="$DEMO/coco/ResNet-50.json" \
  --dt FishNet-150="$DEMO/coco/FishNet-150.json" --dt SCNet-50="$DEMO/coco/SCNet-50.json" \
  --dt SpineNet-49="$DEMO/coco/SpineNet-49.json" --baseline ResNet-50 -o "$WORK/coco"
