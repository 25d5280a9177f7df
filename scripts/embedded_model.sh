#!/usr/bin/env bash
# How models/ingot-tiny and models/ingot-tiny-topics were made (issue 15), stage by stage:
#   data       Debian's fortunes text -> WORK/data/{train,valid}.jsonl (scripts/embedded_data.py;
#              needs `apt-get install fortunes`, or FORTUNES=DIR with the unpacked files)
#   tokenizer  ingot tokenizer train -> WORK/tok (byte-level BPE, 4096 ids)
#   pretrain   ingot train (scripts/embedded_config.json, a GPU by default) -> WORK/model
#   adapter    ingot lora train on models/data/topics_*.jsonl -> WORK/topics, then its accuracy
#              on the validation sentences with ingot classify
#   check      scripts/embedded_check.py: tokenizers and transformers (+ PEFT) against ingot
# Usage: INGOT=build/tools/cli/ingot WORK=/tmp/emb bash scripts/embedded_model.sh [STAGE...]
# (no stage: all of them). The defaults below are the settings of the committed model and
# adapter; each can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
INGOT=${INGOT:-build/tools/cli/ingot}
WORK=${WORK:-/tmp/ingot-embedded}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-scripts/embedded_config.json}
MODEL=${MODEL:-$WORK/model}
EPOCHS=${EPOCHS:-12}
LR=${LR:-2e-3}
BATCH=${BATCH:-32}
SEQ=${SEQ:-256}
SEED=${SEED:-1}
STAGES=${*:-data tokenizer pretrain adapter check}
mkdir -p "$WORK"
has() { [[ " $STAGES " == *" $1 "* ]]; }
stamp() { echo "[embedded $(date +%T)] $*"; }

if has data; then
  stamp data
  python3 scripts/embedded_data.py --src "${FORTUNES:-/usr/share/games/fortunes}" --out "$WORK/data"
fi
if has tokenizer; then
  stamp tokenizer
  "$INGOT" tokenizer train --data "$WORK/data/train.txt" --vocab-size 4096 --out "$WORK/tok"
fi
if has pretrain; then
  stamp "pretrain $CONFIG on $DEVICE: $EPOCHS epochs, lr $LR, batch $BATCH x $SEQ"
  "$INGOT" train --model-config "$CONFIG" --tokenizer "$WORK/tok" --data "$WORK/data/train.jsonl" \
    --valid "$WORK/data/valid.jsonl" --out "$MODEL" --device "$DEVICE" --dtype bfloat16 \
    --seq-len "$SEQ" --batch-size "$BATCH" --epochs "$EPOCHS" --lr "$LR" --warmup 100 \
    --schedule cosine --weight-decay 0.1 --max-grad-norm 1 --seed "$SEED" --eval-every 100 \
    --log-every 50 --save-every 0
fi
if has adapter; then
  stamp "adapter on $MODEL"
  # {"text", "label"} -> {"prompt": "Sentence: <text>\nTopic:", "completion": " <label>"}: the
  # template ingot classify fills (models/data/topics_template.txt).
  for split in train valid; do
    python3 -c '
import json, sys
tmpl = open("models/data/topics_template.txt").read().rstrip("\n")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(json.dumps({"prompt": tmpl.replace("{text}", r["text"]), "completion": " " + r["label"]}))
' "models/data/topics_$split.jsonl" >"$WORK/topics_$split.jsonl"
  done
  "$INGOT" lora train --model "$MODEL" --data "$WORK/topics_train.jsonl" \
    --valid "$WORK/topics_valid.jsonl" --out "$WORK/topics" --device "$DEVICE" \
    --targets all-linear --rank "${ADAPTER_RANK:-8}" --alpha "$((2 * ${ADAPTER_RANK:-8}))" \
    --dropout "${ADAPTER_DROPOUT:-0.1}" --mask-prompt --epochs "${ADAPTER_EPOCHS:-12}" \
    --batch-size 16 --lr "${ADAPTER_LR:-2e-3}" --warmup 10 --eval-every 20 --seed "$SEED" \
    --log-every 20
  python3 -c '
import json, sys
for line in open(sys.argv[1]): print(json.dumps({"text": json.loads(line)["text"]}))
' models/data/topics_valid.jsonl |
    "$INGOT" classify --model "$MODEL" --adapter "$WORK/topics" --device "$DEVICE" \
      --labels " food, sports, weather, computers" --template models/data/topics_template.txt \
      >"$WORK/topics_valid_pred.jsonl"
  python3 -c '
import json, sys
gold = [json.loads(l)["label"] for l in open(sys.argv[1])]
pred = [json.loads(l)["label"].strip() for l in open(sys.argv[2])]
ok = sum(g == p for g, p in zip(gold, pred))
print(f"topic adapter: {ok}/{len(gold)} validation sentences right ({ok / len(gold):.1%})")
' models/data/topics_valid.jsonl "$WORK/topics_valid_pred.jsonl"
  "$INGOT" classify --model "$MODEL" --adapter "$WORK/topics" --device "$DEVICE" \
    --labels " food, sports, weather, computers" --template models/data/topics_template.txt \
    <models/data/topics_demo.jsonl | python3 -c '
import json, sys
got = [json.loads(l)["label"].strip() for l in sys.stdin]
want = [l.strip() for l in open("models/data/topics_demo_labels.txt") if l.strip()]
print(f"demo sentences: {sum(g == w for g, w in zip(got, want))}/{len(want)} right: {got}")
'
fi
if has check; then
  stamp check
  python3 scripts/embedded_check.py --ingot "$INGOT" --model "$MODEL" \
    --corpus "$WORK/data/valid.jsonl" --adapter "$WORK/topics" --device "$DEVICE" \
    --out "$WORK/check.json"
fi
stamp done
