#!/usr/bin/env bash
# The recipe of the model that hears real people: the bundled model continued on synthetic speech
# with transcripts and real speech without, learning hama's phone strings (CTC on a LayerNorm head
# on layer 6, a frame-KL warm-up through the same head) while the layers above learn to spell from
# the transcripts, a tenth of their gradient reaching the phone layers (CTC_GRAD_SCALE=0 cuts it off;
# measured worse). docs/training.md has the why and the numbers.
#
#   bash tools/train_hears.sh                          # CPU, 1 thread, 115 min (rerun to resume)
#   DEVICE=cuda THREADS=8 BUDGET_MINUTES=60 bash tools/train_hears.sh   # the same on one GPU
#
# Everything it makes lives under $STREAMER_CACHE (default ~/.cache/streamer): data/, runs/, logs/.
# Each step is skipped when its output is there, so a second call on the same machine resumes the
# run where it stopped, and a call on a new machine rebuilds the data from the Debian and PyPI
# packages first (about 35 CPU-min) and reads the committed labels in tools/data/labels.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${STREAMER_CACHE:-$HOME/.cache/streamer}"
DATA="$CACHE/data"
RUN="${RUN:-$CACHE/runs/hears}"
DEVICE="${DEVICE:-cpu}"
THREADS="${THREADS:-1}"
BUDGET_MINUTES="${BUDGET_MINUTES:-115}"
SEED="${SEED:-5}"
LABELS=tools/data/labels
mkdir -p "$DATA" "$CACHE/logs"

step() { echo "[$(date +%H:%M:%S)] $*"; }

if [ ! -f "$DATA/real/real.languages" ]; then
  step "real speech from the Debian packages"
  python3 tools/data/real_audio.py --out "$DATA/real"
fi
CORPUS="$DATA/corpus-s$SEED"
if [ ! -f "$CORPUS/dev.tsv" ] || [ "$(wc -l < "$CORPUS/train.tsv" 2>/dev/null || echo 0)" -lt 3000 ]; then
  step "synthetic speech, seed $SEED (resumes)"
  python3 tools/data/make_corpus.py --out "$CORPUS" --hours-train 3 --hours-dev 0.15 --hours-test 0 \
      --seed "$SEED" --workers 1 --no-progress
fi
# Labels are committed; only audio they lack is labelled (the same packages give the same keys).
# hama's frame posteriors (for the warm-up) are not committed: 70 MB per hour.
if [ ! -f "$DATA/targets/hama-real.done" ]; then
  step "hama phone strings and posteriors of the real speech"
  python3 tools/data/teacher_labels.py --out "$LABELS" --posteriors "$DATA/targets/hama" "$DATA/real/real.tsv"
  touch "$DATA/targets/hama-real.done"
fi
if [ ! -f "$DATA/targets/hama-s$SEED.done" ]; then
  step "hama phone strings and posteriors of the synthetic speech"
  python3 tools/data/teacher_labels.py --out "$LABELS" --posteriors "$DATA/targets/hama-s$SEED" --no-whisper \
      "$CORPUS/dev.tsv" "$CORPUS/train.tsv"
  touch "$DATA/targets/hama-s$SEED.done"
fi
python3 tools/data/real_split.py --real "$DATA/real" --labels "$LABELS"

step "training in $RUN ($DEVICE, $THREADS threads, $BUDGET_MINUTES min in all; log: $CACHE/logs/hears.log)"
streamer train --init-from models/demo-en \
  --train "$CORPUS/train.tsv" "$DATA/real/train.tsv" --dev "$CORPUS/dev.tsv" \
  --distill "$LABELS/hama:1:6:linear+norm+fixed" --distill "$DATA/targets/hama:1:6:share0" \
  --distill "$DATA/targets/hama-s$SEED:1:6:share0" --distill-decay-steps 300 \
  --ctc-grad-layer 6 --ctc-grad-scale "${CTC_GRAD_SCALE:-0.1}" \
  --distill-heldout "$DATA/real/heldout.tsv" "$DATA/real/heldout-en.tsv" \
  --out "$RUN" --max-steps 100000 --time-budget-minutes "$BUDGET_MINUTES" --peak-lr 1e-3 --warmup-steps 100 \
  --batch-seconds 100 --buckets 12 --dropout 0 --mask-time-prob 0.05 --threads "$THREADS" --device "$DEVICE" \
  --eval-every 150 --eval-utterances 150 --seed 11 --no-curriculum --reread-manifests --no-progress \
  2>&1 | tee -a "$CACHE/logs/hears.log"
