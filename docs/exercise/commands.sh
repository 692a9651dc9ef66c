#!/usr/bin/env bash
# The exercise at full scale, as this folder was made (run from the repository root, after the README's setup).
# Both studies ran at the same time on the 2-core machine, one PyTorch thread each (OMP_NUM_THREADS=1).
set -euo pipefail
OMP_NUM_THREADS=1 cnnlab study --epochs 40 --fracs 0.2 --dropouts 0,0.5 --seeds 3 --out study_ab --lang en &
OMP_NUM_THREADS=1 cnnlab study --epochs 40 --fracs 1.0 --dropouts 0,0.5 --out study_c --lang en &
wait  # (here: study_c was stopped with Ctrl-C once study_ab had finished, and rerun with 2 threads: it resumed)
# cnnlab vs Keras step by step (one epoch, both optimizer forms):
nox -s parity
# The raw measurements of each run (run.json, history.csv) are kept in runs/; the reports are made from them:
mkdir -p docs/exercise/runs
for run in tb_logs/frac0.2_drop*/version_0 tb_logs/frac1.0_drop*/version_0; do
  mkdir -p "docs/exercise/runs/${run#tb_logs/}" && cp "$run"/run.json "$run"/history.csv "docs/exercise/runs/${run#tb_logs/}/"
done
for lang in en ja; do
  cnnlab report docs/exercise/runs/*/version_0 --out "docs/exercise/report_$lang" --lang "$lang"
done
