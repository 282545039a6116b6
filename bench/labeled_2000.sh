#!/usr/bin/env bash
# Teacher and students (alone, KD, KD + pseudo-labels) on 2,000 labeled CoNLL-2003 sentences,
# the rest of train as unlabeled text. Writes runs/l2000/*/report.json and prints a summary.
#   bash bench/labeled_2000.sh            (about 40 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/conll2003}
OUT=${OUT:-runs/l2000}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-4}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-20}  # alone: passes over the 2,000 labeled sentences
KD_EPOCHS=${KD_EPOCHS:-3}  # kd, kd_pseudo: passes over the 12,041 unlabeled (labeled batches cycle)

python bench/subset.py "$DATA/train.txt" --labeled 2000 --seed 1 --out "$OUT/data"
[ -f "$OUT/teacher/tagdistill.json" ] || tagdistill train-teacher --train "$OUT/data/train.conll" \
  --dev "$DATA/valid.txt" --out "$OUT/teacher" --epochs "$TEACHER_EPOCHS" --teacher-lr 2e-4
for mode in alone kd kd_pseudo; do
  # kd and kd_pseudo label the same sentences with the same teacher: reuse kd's cached logits
  if [ "$mode" = kd_pseudo ]; then mkdir -p "$OUT/$mode" && cp -n "$OUT/kd/teacher_logits.safetensors" "$OUT/$mode/"; fi
  [ -f "$OUT/$mode/report.json" ] && continue
  epochs=$STUDENT_EPOCHS; [ "$mode" = alone ] || epochs=$KD_EPOCHS
  tagdistill distill --teacher "$OUT/teacher" --train "$OUT/data/train.conll" --dev "$DATA/valid.txt" \
    --test "$DATA/test.txt" --unlabeled "$OUT/data/unlabeled.conll" --unlabeled-format conll \
    --mode "$mode" --epochs "$epochs" --out "$OUT/$mode"
done
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'model':12} {'test F1':>8} {'params':>10} {'w/s b32':>9} {'w/s b1':>8}")
for mode in ("alone", "kd", "kd_pseudo"):
    r = json.loads((out / mode / "report.json").read_text())
    rows = [("teacher", r["teacher"])] if mode == "alone" else []
    for name, m in rows + [(mode, r["student"])]:
        w = m["words_per_second"]
        print(f"{name:12} {m['test']['f1']:8.4f} {m['parameters']:10,} {w['batch_32']:9.0f} {w['batch_1']:8.0f}")
PY
