#!/usr/bin/env bash
# The README's figure gallery (docs/figures/): what `fishspine` exports from the shipped demo, each figure
# written as PDF and rendered at print size with pdftoppm (Debian's poppler-utils), as a reviewer sees it.
# Usage: scripts/make_gallery.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/fishspine-gallery}
F=.venv/bin/fishspine
DEMO=assets/demo
OUT=docs/figures
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
rm -f "$OUT"/*.png
CKPTS=()
for b in ResNet-50 FishNet-150 SCNet-50 SpineNet-49; do CKPTS+=(--ckpt "$b=$DEMO/checkpoints/$b.safetensors"); done
IMG=$(ls "$DEMO"/images/shapes_000000.*)

$F activations "${CKPTS[@]}" "$IMG" --size 192 --rows 6 -o "$WORK" --formats pdf
$F cam "${CKPTS[@]}" "$IMG" --size 192 -o "$WORK" --formats pdf
$F gradients "${CKPTS[@]}" "$DEMO"/images/shapes_* --size 192 -o "$WORK" --formats pdf
$F graph fishnet150 spinenet49 --color-by macs -o "$WORK/graph" --formats pdf
$F graph scnet50 --expand layer1.1 -o "$WORK/scnet_block" --formats pdf
$F coco --gt "$DEMO/coco/instances_val.json" --baseline ResNet-50 --errors -o "$WORK/coco" --formats pdf \
  --dt ResNet-50="$DEMO/coco/ResNet-50.json" --dt FishNet-150="$DEMO/coco/FishNet-150.json" \
  --dt SCNet-50="$DEMO/coco/SCNet-50.json" --dt SpineNet-49="$DEMO/coco/SpineNet-49.json" >/dev/null
# The detection CAM of the first validation image's largest object, as each detector sees it.
read -r BOX CATEGORY < <(.venv/bin/python - "$DEMO/coco/instances_val.json" <<'PYEOF'
import json, sys
gt = json.load(open(sys.argv[1]))
names = {c["id"]: c["name"] for c in gt["categories"]}
obj = max((a for a in gt["annotations"] if a["image_id"] == gt["images"][0]["id"]), key=lambda a: a["area"])
print(",".join(f"{v:g}" for v in obj["bbox"]), names[obj["category_id"]])
PYEOF
)
$F cam "${CKPTS[@]}" "$DEMO/val/$(.venv/bin/python -c "import json,sys; print(json.load(open('$DEMO/coco/instances_val.json'))['images'][0]['file_name'])")" \
  --detection "$BOX" --category "$CATEGORY" --method layercam -o "$WORK/detection" --formats pdf || true

render() {  # PDF -> PNG at print size (DPI chosen per figure to keep the gallery small)
  pdftoppm -png -r "$3" -singlefile "$1" "$OUT/$2"
}
render "$WORK/shapes_000000_activations.pdf" activations 60
render "$WORK/shapes_000000_gradcam.pdf" gradcam 70
render "$WORK/gradient_trace.pdf" gradients 70
render "$WORK/graph.pdf" architecture 60
render "$WORK/scnet_block.pdf" scnet_block 60
render "$WORK/coco/coco_bbox_table.pdf" coco_table 80
render "$WORK/coco/coco_bbox_sizes.pdf" coco_sizes 70
render "$WORK/coco/coco_bbox_errors.pdf" coco_errors 60
[ -f "$WORK"/detection/*_layercam_detection.pdf ] && render "$WORK"/detection/*_layercam_detection.pdf detection_cam 70
# 256 colours are plenty for these figures and keep the gallery a few hundred KB.
.venv/bin/python - "$OUT" <<'PYEOF'
import sys
from pathlib import Path
from PIL import Image
for p in Path(sys.argv[1]).glob("*.png"):
    Image.open(p).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(p, optimize=True)
PYEOF
ls -la "$OUT"
du -sh "$OUT"
