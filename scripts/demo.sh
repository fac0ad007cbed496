#!/usr/bin/env bash
# The whole path on the real sample shipped inside the package: build with dedup, split, leakage check, a quick
# bench, the shortcut audit and the HTML report. Each stage prints one line; the last line is the report's path.
# Usage: ./scripts/demo.sh [OUT]   (default out/demo; every stage's full output is in OUT/logs/)
# DEMO_SKIP_SETUP=1 uses the cxrcurate on PATH instead of setting up .venv (for a machine already set up).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/demo}"
if [ "${DEMO_SKIP_SETUP:-0}" = "1" ]; then
  cx=(cxrcurate)
  py=python
else
  echo "setting up .venv (cxrcurate with the bench extra, at the tested versions of scripts/constraints.txt) ..."
  ./scripts/setup.sh "bench" >/dev/null
  cx=(.venv/bin/cxrcurate)
  py=.venv/bin/python
fi
rm -rf "$out"
mkdir -p "$out/logs"
started=$SECONDS

stage() {  # stage NAME LINE-PATTERN COMMAND...: run, keep the full output in logs/NAME.txt, print one line
  local name="$1" pattern="$2" t0=$SECONDS rc=0
  shift 2
  "$@" >"$out/logs/$name.txt" 2>&1 || rc=$?
  local line
  line=$(grep -E -m1 "$pattern" "$out/logs/$name.txt" || tail -n1 "$out/logs/$name.txt")
  printf '%-9s %3ds  %s\n' "$name" $((SECONDS - t0)) "$line"
  return "$rc"
}

m="$out/manifest/manifest.parquet"
stage build "images in .* groups" "${cx[@]}" build-manifest --sample --dedup --out "$out/manifest" --quiet
stage split "^wrote " "${cx[@]}" split "$m" --test 0.3 --val 0.2 --seed 0 --in-place
stage leakage "^(OK|LEAK)" "${cx[@]}" leakage "$m"
stage measure "^    gain roc_auc" "${cx[@]}" leakage "$m" --measure
stage bench "^wrote " "${cx[@]}" bench --model base-cnn --quick --manifest "$m" --split-policy manifest \
  --negatives normal,pneumonia,other --out "$out/run" -q
"${cx[@]}" bench --compare "$out/run" --format json | "$py" -c '
import json, sys
r = json.load(sys.stdin)[0]
model, n, units, auc, bacc, evidence = (r[k] for k in ("model", "test n", "units", "ROC AUC", "balanced acc", "evidence"))
note = " (expected: 30 images, two epochs: a smoke test of the path, not a result)" if evidence != "yes" else ""
print(f"{chr(32) * 15}{model} on {n} test images ({units} units): ROC AUC {auc}, balanced acc {bacc}; "
      f"evidence: {evidence}{note}")'
stage audit "verdict|^wrote " "${cx[@]}" audit "$out/run" --no-loso --methods gradcam --max-images 8 || true
stage report "^wrote " "${cx[@]}" report "$out/run" -o "$out/report.html" --methods gradcam
echo "stats: ${cx[*]} stats $m   (kept images and units per label and split)"
echo "done in $((SECONDS - started)) s after set-up. Open the report: $out/report.html"
