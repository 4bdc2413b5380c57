#!/bin/bash
# Time the README's two-shard PGD sweep on the first N samples with two fool binaries, one after the
# other, and check that their merged summaries are identical. Run on a quiet machine.
#   bash scripts/compare/bench_sweep_ab.sh OLD_BINARY NEW_BINARY [N=64]
set -euo pipefail
cd "$(dirname "$0")/../.."
old=$1 new=$2 n=${3:-64}
tmp=$(mktemp -d)
for b in old new; do
  bin=$old; [ $b = new ] && bin=$new
  s=$(date +%s.%N)
  for i in 0 1; do
    OMP_NUM_THREADS=1 "$bin" bench assets/imagenet-samples --attack pgd --eps 0,1/255,2/255,4/255,8/255,16/255 \
      --defense none,jpeg:75,bits:4,median:3 --adaptive --limit "$n" --shard $i/2 --out "$tmp/$b/shard-$i" --quiet >/dev/null &
  done
  wait
  e=$(date +%s.%N)
  "$bin" bench merge "$tmp/$b/shard-0" "$tmp/$b/shard-1" --out "$tmp/$b" --quiet --json >"$tmp/$b.json"
  echo "$b: $(wc -l <"$tmp/$b/results.jsonl") rows in $(awk "BEGIN{print $e - $s}") s"
done
cmp -s "$tmp/old.json" "$tmp/new.json" && echo "summaries identical" || echo "summaries DIFFER"
rm -rf "$tmp"
