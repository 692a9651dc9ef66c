#!/usr/bin/env bash
# The exercise at full scale, as this folder was made (run from the repository root, after the README's setup).
# Both studies ran at the same time on the 2-core machine, one PyTorch thread each (OMP_NUM_THREADS=1).
# cnnlab has trained thread-invariantly since (README: a run's result does not depend on its thread count), so a
# rerun on any thread count trains the same networks as these one-thread runs on the same CPU and versions
# (not the epochs trained on two threads before that: run.json's hardware.torch_threads is 2 for frac0.2_drop0.0,
# frac1.0_drop0.5 and frac1.0_drop0.5_rmsprop-tf).
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
# The same study in the Keras 3 form of RMSprop (here into /work/tfruns; the 100% study was stopped with Ctrl-C
# once the 20% one had finished, and rerun with 2 threads: it resumed):
OMP_NUM_THREADS=1 cnnlab study --epochs 40 --fracs 0.2 --dropouts 0,0.5 --seeds 3 --optimizer rmsprop-tf \
  --logdir tb_logs_tf --out study_ab_tf --lang en --threads 1 &
OMP_NUM_THREADS=1 cnnlab study --epochs 40 --fracs 1.0 --dropouts 0,0.5 --optimizer rmsprop-tf \
  --logdir tb_logs_tf --out study_c_tf --lang en --threads 1 &
wait
mkdir -p docs/exercise/runs_tf
for run in tb_logs_tf/*/version_0; do
  mkdir -p "docs/exercise/runs_tf/${run#tb_logs_tf/}" && cp "$run"/run.json "$run"/history.csv "docs/exercise/runs_tf/${run#tb_logs_tf/}/"
done
# Keras 3 for 40 epochs from cnnlab's seed-42 weights and batches, then one curves file with both cnnlab forms:
.nox/parity/bin/python benchmarks/parity_keras.py --epochs 40 --forms keras3 --no-steps --out keras_curves
python - <<'PY'
import csv, json
from pathlib import Path
def history(run):
    rows = csv.DictReader(open(Path(run) / "history.csv"))
    return [{k: float(r[k]) for k in ("train_loss", "train_acc", "val_loss", "val_acc")} for r in rows]
curves = {"Keras 3": json.loads(Path("keras_curves/curves_40.json").read_text())["keras keras3"],
          "cnnlab rmsprop-tf": history("docs/exercise/runs_tf/frac0.2_drop0.0_rmsprop-tf/version_0"),
          "cnnlab rmsprop": history("docs/exercise/runs/frac0.2_drop0.0/version_0")}
Path("docs/exercise/keras3_40.json").write_text(json.dumps(curves, indent=1) + "\n")
PY
for lang in en ja; do
  cnnlab report docs/exercise/runs/*/version_0 --out "docs/exercise/report_$lang" --lang "$lang" --keras docs/exercise/keras3_40.json
  cnnlab report docs/exercise/runs_tf/*/version_0 --out "docs/exercise/report_tf_$lang" --lang "$lang" --keras docs/exercise/keras3_40.json
done
# 2026-12-01, reruns/ (per-image predictions for the report's paired tests), with the new default path
# (study --jobs auto: two runs at a time, one thread each, on the two cores):
cnnlab study --epochs 40 --fracs 0.2 --dropouts 0,0.5 --seeds 3 --logdir tb_reruns --out study_reruns_ab --lang en
for run in tb_reruns/frac0.2_drop*/version_0; do
  mkdir -p "docs/exercise/reruns/runs/${run#tb_reruns/}"
  cp "$run"/run.json "$run"/history.csv "$run"/predictions.npz "docs/exercise/reruns/runs/${run#tb_reruns/}/"
done
cnnlab study --epochs 40 --fracs 1.0 --dropouts 0,0.5 --logdir tb_reruns --out study_reruns_c --lang en
# (b), seed 42 again with the training set measured with dropout off (reproduces the run above exactly):
cnnlab fit --frac 0.2 --dropout 0.5 --seed 42 --eval-train --threads 1 --name frac0.2_drop0.5_evaltrain --logdir tb_reruns
# (a) for 400 epochs (stopped once by SIGTERM after epoch 69 and resumed on one thread instead of two):
cnnlab fit --frac 0.2 --epochs 400 --name frac0.2_drop0.0_e400 --threads 2 --logdir tb_reruns
cnnlab fit --frac 0.2 --epochs 400 --name frac0.2_drop0.0_e400 --threads 1 --logdir tb_reruns --resume
# the first layer of the best model:
cnnlab filters --model tb_reruns/frac1.0_drop0.5/version_0 --out docs/exercise/filters_trained
for name in frac1.0_drop0.0 frac1.0_drop0.5 frac0.2_drop0.0_e400; do
  mkdir -p "docs/exercise/reruns/runs/$name/version_0"
  cp tb_reruns/$name/version_0/{run.json,history.csv,predictions.npz} "docs/exercise/reruns/runs/$name/version_0/"
done
cp tb_reruns/frac0.2_drop0.5_evaltrain/version_0/{run.json,history.csv,predictions.npz} docs/exercise/reruns/runs/frac0.2_drop0.5/version_0/
# the reports, from the committed records alone:
rm -rf docs/exercise/report_en docs/exercise/report_ja docs/exercise/report_tf_en docs/exercise/report_tf_ja
for lang in en ja; do
  cnnlab report docs/exercise/reruns/runs/*/version_0 --filters docs/exercise/filters_trained \
    --keras docs/exercise/keras3_40.json --out "docs/exercise/report_$lang" --lang "$lang"
  cnnlab report docs/exercise/runs_tf/*/version_0 --keras docs/exercise/keras3_40.json \
    --out "docs/exercise/report_tf_$lang" --lang "$lang"
done
