#!/usr/bin/env bash
# The full release: every original ViTPose checkpoint converted, verified and pushed to the Hub.
#
#   ORG=my-org ORIGINALS=originals/ bash scripts/convert_all.sh            # convert + verify + push
#   ORG=my-org DRY_RUN=1 bash scripts/convert_all.sh                       # convert + verify, list uploads only
#
# Where the original files come from:
#   - the Hub mirror nielsr/vitpose-original-checkpoints (downloaded below with `hf download`):
#       vitpose-b.pth, vitpose-b-simple.pth, vitpose_base_coco_aic_mpii.pth, vitpose+_{small,base,large,huge}.pth
#   - the authors' OneDrive links in github.com/ViTAE-Transformer/ViTPose README (download by hand into $ORIGINALS,
#     under the names below): vitpose-s.pth, vitpose-l.pth, vitpose-h.pth and their -simple versions.
# A file that is not in $ORIGINALS is skipped with a message.
#
# --verify compares every converted model with an independent original-layout forward; with the COCO val2017 image
# 000000000139.jpg present it also checks the keypoints published for base, base-simple, base-coco-aic-mpii and
# ViTPose+ S/B/L. The Hub token comes from `hf auth login` or HF_TOKEN.
set -euo pipefail

ORG="${ORG:?set ORG to the Hub user or organisation to publish under}"
ORIGINALS="${ORIGINALS:-originals}"
OUT="${OUT:-converted}"
MIRROR="nielsr/vitpose-original-checkpoints"
IMAGE="$ORIGINALS/000000000139.jpg"
mkdir -p "$ORIGINALS" "$OUT"

for file in vitpose-b.pth vitpose-b-simple.pth vitpose_base_coco_aic_mpii.pth \
            vitpose+_small.pth vitpose+_base.pth vitpose+_large.pth vitpose+_huge.pth; do
  [ -f "$ORIGINALS/$file" ] || hf download "$MIRROR" "$file" --local-dir "$ORIGINALS"
done
[ -f "$IMAGE" ] || curl -fsSL -o "$IMAGE" http://images.cocodataset.org/val2017/000000000139.jpg || true

convert() {  # convert FILE REPO_NAME --variant VARIANT [more arguments of convert_original_checkpoint.py]
  local file="$1" repo="$2"; shift 2
  if [ ! -f "$ORIGINALS/$file" ]; then
    echo "skip $repo: $ORIGINALS/$file not found" >&2
    return 0
  fi
  local args=(--checkpoint "$ORIGINALS/$file" --output-dir "$OUT/$repo" --overwrite --verify --push-to-hub "$ORG/$repo")
  [ -f "$IMAGE" ] && args+=(--verify-image "$IMAGE")
  [ -n "${DRY_RUN:-}" ] && args+=(--dry-run)
  python scripts/convert_original_checkpoint.py "${args[@]}" "$@"
}

# Single dataset (COCO), classic decoder
convert vitpose-s.pth vitpose-small --variant vitpose-small
convert vitpose-b.pth vitpose-base --variant vitpose-base
convert vitpose-l.pth vitpose-large --variant vitpose-large
convert vitpose-h.pth vitpose-huge --variant vitpose-huge
# Single dataset (COCO), simple decoder
convert vitpose-s-simple.pth vitpose-small-simple --variant vitpose-small-simple
convert vitpose-b-simple.pth vitpose-base-simple --variant vitpose-base-simple
convert vitpose-l-simple.pth vitpose-large-simple --variant vitpose-large-simple
convert vitpose-h-simple.pth vitpose-huge-simple --variant vitpose-huge-simple
# COCO + AI Challenger + MPII: three heads
convert vitpose_base_coco_aic_mpii.pth vitpose-base-coco-aic-mpii --variant vitpose-base-coco-aic-mpii
# ViTPose+: six datasets, MoE experts, six heads (coco, aic, mpii, ap10k, apt36k, wholebody)
convert vitpose+_small.pth vitpose-plus-small --variant vitpose-plus-small
convert vitpose+_base.pth vitpose-plus-base --variant vitpose-plus-base
convert vitpose+_large.pth vitpose-plus-large --variant vitpose-plus-large
convert vitpose+_huge.pth vitpose-plus-huge --variant vitpose-plus-huge
# ViTPose+ COCO experts as plain dense single-head models
for size in small base large huge; do
  convert "vitpose+_$size.pth" "vitpose-plus-$size-coco" --variant "vitpose-plus-$size" --split-dataset coco
done
