#!/usr/bin/env bash
# One kernel of an ingot command under ncu's full set (device machine): the details page (SOL,
# occupancy, warp stall reasons) and the hottest SASS lines by warp stall samples, in $OUT.
#   bash scripts/ncu_kernel_detail.sh NAME KERNEL_REGEX -- ingot bench classify ...
# NAME: file prefix under $OUT. Profiles the 4th matching launch (after warm-up), with the
# card's clocks and warm caches.
set -uo pipefail
name=$1 regex=$2
shift 3
OUT=${OUT:-/tmp/ingot-out}
mkdir -p "$OUT"
rep=/tmp/ncu-$name
ncu --clock-control none --cache-control none --kernel-name "regex:$regex" --launch-skip 3 \
  --launch-count 1 --set full --import-source yes -f -o "$rep" "$@" >"$OUT/$name-run.log" 2>&1 ||
  { tail -20 "$OUT/$name-run.log"; exit 1; }
ncu -i "$rep.ncu-rep" --page details >"$OUT/$name-details.txt" 2>&1
ncu -i "$rep.ncu-rep" --page source --csv --print-source sass >"$OUT/$name-sass.csv" 2>&1
grep -E "Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy|Issue Slots Busy|No Eligible|One or More Eligible" \
  "$OUT/$name-details.txt" | head -20
# The SASS lines with the most stall samples (columns by name: ncu's CSV header).
python3 - "$OUT/$name-sass.csv" <<'PY' | tee "$OUT/$name-hot.txt" | head -45
import csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hdr = next((i for i, r in enumerate(rows) if "Source" in r), None)
if hdr is None:
    sys.exit("no source table")
h = rows[hdr]
def col(*names):
    for n in names:
        if n in h:
            return h.index(n)
    return None
src = col("Source")
samp = col("Warp Stall Sampling (All Samples)", "Sampling Data (All)")
ex = col("Instructions Executed", "Warp Instructions Executed")
data = []
for r in rows[hdr + 1:]:
    if len(r) <= max(src, samp or 0):
        continue
    try:
        s = float(r[samp].replace(",", "")) if samp is not None else 0.0
    except ValueError:
        continue
    data.append((s, r[src].strip(), r[ex] if ex is not None else ""))
total = sum(d[0] for d in data) or 1.0
print(f"{len(data)} SASS lines, {total:.0f} stall samples")
for s, line, e in sorted(data, reverse=True)[:40]:
    print(f"{100 * s / total:5.1f}%  {e:>10}  {line}")
PY
