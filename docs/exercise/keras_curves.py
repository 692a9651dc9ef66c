"""Put cnnlab's seed-42 run of (a) beside the parity harness' 40-epoch Keras curves (same data, weights, order)."""

import json
from pathlib import Path

from cnnlab.runs import read_history

here = Path(__file__).parent
keras = json.loads(Path("benchmarks/parity/curves_40.json").read_text())
history = read_history(here / "runs" / "frac0.2_drop0.0" / "version_0")
curves = {
    "cnnlab rmsprop (default; the (a) run, seed 42)": [
        {k: row[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")} for row in history
    ]
}
curves |= {
    name.replace("keras keras2", "Keras 2.1 form").replace("keras keras3", "Keras 3"): rows
    for name, rows in keras.items()
}
(here / "keras_vs_cnnlab_40.json").write_text(json.dumps(curves, indent=1) + "\n")
