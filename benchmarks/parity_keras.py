"""Step-for-step parity between cnnlab's training and Keras (TensorFlow CPU): `nox -s parity`.

The same initial weights (cnnlab's seeded Glorot init, copied OIHW -> HWIO and with the Dense kernel's rows
reordered from PyTorch's NCHW flatten to Keras' NHWC flatten), the same 9,000 images in cnnlab's epoch-1 order,
batch 32, learning rate 1e-4; one epoch in each framework, the loss of every step recorded before its update.

Pairs compared (PyTorch side: cnnlab's own FashionClassifier.model_step and configure_optimizers):
  keras2  cnnlab --optimizer rmsprop     vs Keras 2.1's update w -= lr g / (sqrt(v) + eps) and its loss
                                            (probabilities clipped to [1e-7, 1 - 1e-7]), written in TensorFlow
  keras3  cnnlab --optimizer rmsprop-tf  vs Keras 3's own RMSprop and CategoricalCrossentropy (softmax output)
and, to show what a mismatch costs, the crossed pairs (each form against the other Keras).

A pair whose semantics match must agree step by step within the tolerance below; a crossed pair is expected
to drift, and the harness names the cause. `--epochs N` also trains both Keras forms and both cnnlab forms for
N epochs on the same data and writes their learning curves (JSON) for benchmarks/RESULTS.md and the report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cnnlab.data.module import EpochShuffle  # noqa: E402
from cnnlab.runs import best_row  # noqa: E402
from cnnlab.training.config import FitConfig  # noqa: E402
from cnnlab.training.fit import prepare  # noqa: E402

LR, RHO, EPS, BATCH = 1e-4, 0.9, 1e-7, 32
# A matched pair agrees when all three hold (relative differences of the per-step training loss). Different
# convolution kernels round differently (~1e-7 per op) and training amplifies that: single late steps drift by
# up to ~2e-2, so the bounds are on the epoch's mean loss, the first 10 steps and the median step.
TOLERANCE = {"epoch_mean": 1e-3, "first_10_max": 1e-3, "median": 5e-3}
PAIRS = {  # name: (cnnlab optimizer, Keras form, matched?)
    "keras2": ("rmsprop", "keras2", True),
    "keras3": ("rmsprop-tf", "keras3", True),
    "rmsprop vs keras3": ("rmsprop", "keras3", False),
    "rmsprop-tf vs keras2": ("rmsprop-tf", "keras2", False),
}
CAUSE = "epsilon placement: sqrt(v) + eps (Keras 2, torch) vs sqrt(v + eps) (Keras 3, tf.keras)"


def load(frac: float, seed: int) -> dict[str, np.ndarray]:
    dm, _ = prepare(FitConfig(frac=frac, seed=seed))
    order = list(EpochShuffle(len(dm.train_set), seed))  # epoch 1's order, as cnnlab's sampler yields it
    x = dm.train_set.images[order].float().div(255).numpy()  # (N, 1, 28, 28)
    return {
        "x": x,
        "y": dm.train_set.labels[order].numpy(),
        "val_x": dm.val_set.images.float().div(255).numpy(),
        "val_y": dm.val_set.labels.numpy(),
    }


# --- PyTorch: cnnlab's own step ------------------------------------------------------------------------------


def cnnlab_model(optimizer: str, seed: int, frac: float):
    _, lit = prepare(FitConfig(frac=frac, seed=seed, optimizer=optimizer))
    return lit


def torch_train(lit, data: dict[str, np.ndarray], epochs: int = 1, shuffles: list[np.ndarray] | None = None):
    opt = lit.configure_optimizers()
    steps, curves = [], []
    for epoch in range(epochs):
        order = np.arange(len(data["y"])) if shuffles is None else shuffles[epoch]
        x, y = torch.from_numpy(data["x"][order]), torch.from_numpy(data["y"][order]).long()
        lit.train()
        losses, correct = [], 0
        for i in range(0, len(y), BATCH):
            loss, right = lit.model_step((x[i : i + BATCH], y[i : i + BATCH]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            correct += int(right.sum())
        steps = losses if epoch == 0 else steps
        curves.append(_epoch_row(losses, correct, len(y), *torch_eval(lit, data)))
    return steps, curves


@torch.no_grad()
def torch_eval(lit, data):
    lit.eval()
    logits = lit(torch.from_numpy(data["val_x"]))
    y = torch.from_numpy(data["val_y"]).long()
    return float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def _epoch_row(losses, correct, n, val_loss, val_acc):
    sizes = [min(BATCH, n - i) for i in range(0, n, BATCH)]
    return {
        "train_loss": float(np.average(losses, weights=sizes)),
        "train_acc": correct / n,
        "val_loss": val_loss,
        "val_acc": val_acc,
    }


# --- Keras ---------------------------------------------------------------------------------------------------


def keras_model(state: dict[str, torch.Tensor]):
    from keras_epoch import exercise_model  # the same network the training benchmark times

    model = exercise_model()
    weights = []
    for i in (0, 2, 5, 7):  # the four convolutions in KerasCNN.layers: OIHW -> HWIO
        weights += [state[f"layers.{i}.weight"].permute(2, 3, 1, 0), state[f"layers.{i}.bias"]]
    dense = state["layers.11.weight"]  # (512, 1600), inputs in (C, H, W) order; Keras flattens (H, W, C)
    weights += [dense.reshape(512, 64, 5, 5).permute(2, 3, 1, 0).reshape(1600, 512), state["layers.11.bias"]]
    last = max(int(k.split(".")[1]) for k in state if k.endswith("weight"))
    weights += [state[f"layers.{last}.weight"].T, state[f"layers.{last}.bias"]]
    model.set_weights([w.detach().numpy().copy() for w in weights])
    return model


def keras_train(model, form: str, data: dict[str, np.ndarray], epochs: int = 1, shuffles=None):
    import keras
    import tensorflow as tf

    if form == "keras3":
        optimizer = keras.optimizers.RMSprop(learning_rate=LR, rho=RHO, epsilon=EPS)
        loss_fn = keras.losses.CategoricalCrossentropy()
        optimizer.build(model.trainable_variables)
    else:  # Keras 2.1: RMSprop.get_updates and backend.categorical_crossentropy(from_logits=False)
        velocity = [tf.Variable(tf.zeros_like(w)) for w in model.trainable_variables]

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            if form == "keras3":
                loss = loss_fn(y, p)
            else:
                p = tf.clip_by_value(p / tf.reduce_sum(p, -1, keepdims=True), EPS, 1 - EPS)
                loss = tf.reduce_mean(-tf.reduce_sum(y * tf.math.log(p), -1))
        grads = tape.gradient(loss, model.trainable_variables)
        if form == "keras3":
            optimizer.apply(grads, model.trainable_variables)
        else:
            for w, v, g in zip(model.trainable_variables, velocity, grads, strict=True):
                v.assign(RHO * v + (1 - RHO) * tf.square(g))
                w.assign_sub(LR * g / (tf.sqrt(v) + EPS))
        right = tf.reduce_sum(tf.cast(tf.argmax(p, -1) == tf.argmax(y, -1), tf.int32))
        return loss, right

    nhwc = data["x"].transpose(0, 2, 3, 1)
    onehot = np.eye(10, dtype=np.float32)[data["y"]]
    steps, curves = [], []
    for epoch in range(epochs):
        order = np.arange(len(onehot)) if shuffles is None else shuffles[epoch]
        x, y = tf.constant(nhwc[order]), tf.constant(onehot[order])
        losses, correct = [], 0
        for i in range(0, len(onehot), BATCH):
            loss, right = step(x[i : i + BATCH], y[i : i + BATCH])
            losses.append(float(loss))
            correct += int(right)
        steps = losses if epoch == 0 else steps
        p = model(data["val_x"].transpose(0, 2, 3, 1), training=False).numpy()
        val_loss = float(-np.log(np.clip(p[np.arange(len(p)), data["val_y"]], 1e-12, None)).mean())
        val_acc = float((p.argmax(1) == data["val_y"]).mean())
        curves.append(_epoch_row(losses, correct, len(onehot), val_loss, val_acc))
    return steps, curves


# --- the comparison ------------------------------------------------------------------------------------------


def compare_pair(a: list[float], b: list[float]) -> dict[str, float | int | None]:
    rel = np.abs(np.array(a) - np.array(b)) / np.maximum(np.abs(np.array(b)), 1e-12)
    over = np.nonzero(rel > 1e-3)[0]
    mean_a, mean_b = float(np.mean(a)), float(np.mean(b))
    return {
        "steps": len(a),
        "epoch_mean_rel_diff": abs(mean_a - mean_b) / mean_b,
        "max_rel_diff_first_10": float(rel[:10].max()),
        "max_rel_diff": float(rel.max()),
        "median_rel_diff": float(np.median(rel)),
        "first_step_over_1e-3": int(over[0]) + 1 if len(over) else None,
        "mean_loss_cnnlab": mean_a,
        "mean_loss_keras": mean_b,
    }


def check_initial_outputs(state, data) -> float:
    """The copied weights give the same probabilities: the layouts were mapped right."""
    lit = cnnlab_model("rmsprop", 0, 0.2)
    lit.net.load_state_dict(state)
    lit.eval()
    with torch.no_grad():
        p_torch = torch.softmax(lit(torch.from_numpy(data["x"][:256])), 1).numpy()
    p_keras = keras_model(state)(data["x"][:256].transpose(0, 2, 3, 1), training=False).numpy()
    return float(np.abs(p_torch - p_keras).max())


def check_against_fit(state, data, looped) -> float:
    """Keras 3's own model.fit on the same ordered batches ends with the same weights as keras_train's loop."""
    import keras

    model = keras_model(state)
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=LR, rho=RHO, epsilon=EPS),
        loss=keras.losses.CategoricalCrossentropy(),
    )
    onehot = np.eye(10, dtype=np.float32)[data["y"]]
    model.fit(data["x"].transpose(0, 2, 3, 1), onehot, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return max(float(np.abs(a - b).max()) for a, b in zip(model.get_weights(), looped.get_weights(), strict=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frac", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=int, default=0, help="also train N epochs per form and write the curves")
    ap.add_argument(
        "--forms",
        default="rmsprop,rmsprop-tf,keras2,keras3",
        help="which trainings --epochs runs (cnnlab: rmsprop, rmsprop-tf; Keras: keras2, keras3)",
    )
    ap.add_argument("--no-steps", action="store_true", help="skip the one-epoch step check (with --epochs)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/parity"))
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"torch {torch.__version__}, TensorFlow {tf.__version__}, Keras {keras.__version__}")
    data = load(args.frac, args.seed)
    state = {k: v.clone() for k, v in cnnlab_model("rmsprop", args.seed, args.frac).net.state_dict().items()}
    diff = check_initial_outputs(state, data)
    print(f"{len(data['y']):,} training images, batch {BATCH}, lr {LR}; initial probabilities max |diff| {diff:.2e}")
    if diff > 1e-5:
        print("FAIL: the copied weights do not give the same outputs")
        return 1
    if args.no_steps and args.epochs:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"curves_{args.epochs}.json").write_text(json.dumps(long_runs(state, data, args), indent=1))
        return 0
    runs: dict[str, list[float]] = {}
    for form in ("rmsprop", "rmsprop-tf"):
        lit = cnnlab_model(form, args.seed, args.frac)
        lit.net.load_state_dict(state)
        t = time.perf_counter()
        runs[f"cnnlab {form}"], _ = torch_train(lit, data)
        print(f"cnnlab {form:10s} one epoch {time.perf_counter() - t:5.1f} s")
    trained = {}
    for form in ("keras2", "keras3"):
        t = time.perf_counter()
        trained[form] = keras_model(state)
        runs[f"keras {form}"], _ = keras_train(trained[form], form, data)
        print(f"Keras  {form:10s} one epoch {time.perf_counter() - t:5.1f} s")
    fit_diff = check_against_fit(state, data, trained["keras3"])
    print(f"Keras 3's own model.fit vs this step loop: weights max |diff| {fit_diff:.2e} after one epoch")
    results, ok = {"keras3 step loop vs model.fit": {"max_abs_weight_diff": fit_diff}}, True
    print(f"tolerance for agreement (relative): {TOLERANCE}")
    print(
        f"\n{'pair':22s} {'matched':>7s} {'epoch mean':>10s} {'first 10':>9s} {'median':>9s} {'max':>9s} "
        f"{'mean loss cnnlab / Keras':>25s}  verdict"
    )
    for name, (ours, theirs, matched) in PAIRS.items():
        r = compare_pair(runs[f"cnnlab {ours}"], runs[f"keras {theirs}"])
        within = all(r[k] <= TOLERANCE[t] for k, t in (("epoch_mean_rel_diff", "epoch_mean"),
                                                        ("max_rel_diff_first_10", "first_10_max"),
                                                        ("median_rel_diff", "median")))  # fmt: skip
        if matched:
            verdict = "agree" if within else "DISAGREE"
            ok &= within
        else:
            verdict = "agree" if within else f"differ from step {r['first_step_over_1e-3']}: {CAUSE}"
        r |= {"matched": matched, "verdict": verdict}
        results[name] = r
        means = f"{r['mean_loss_cnnlab']:.5f} / {r['mean_loss_keras']:.5f}"
        print(
            f"{name:22s} {'yes' if matched else 'no':>7s} {r['epoch_mean_rel_diff']:10.1e} "
            f"{r['max_rel_diff_first_10']:9.1e} {r['median_rel_diff']:9.1e} {r['max_rel_diff']:9.1e} {means:>25s}  "
            f"{verdict}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "steps.json").write_text(json.dumps({"tolerance": TOLERANCE, "pairs": results, "losses": runs}))
    _plot(runs, args.out / "divergence.png")
    if args.epochs:
        curves = long_runs(state, data, args)
        (args.out / f"curves_{args.epochs}.json").write_text(json.dumps(curves, indent=1))
    print(f"\nparity {'holds' if ok else 'FAILS'} for the matched pairs; wrote {args.out}/")
    return 0 if ok else 1


def long_runs(state, data, args) -> dict[str, list[dict[str, float]]]:
    """N epochs per form, both frameworks on the same data and per-epoch orders (cnnlab's sampler)."""
    n = len(data["y"])
    shuffles = [np.array(list(_epoch_order(n, args.seed, e))) for e in range(args.epochs)]
    curves = {}
    forms = args.forms.split(",")
    for form in (f for f in ("rmsprop", "rmsprop-tf") if f in forms):
        lit = cnnlab_model(form, args.seed, args.frac)
        lit.net.load_state_dict(state)
        _, curves[f"cnnlab {form}"] = torch_train(lit, data, args.epochs, shuffles)
        print(f"cnnlab {form}: {_summary(curves[f'cnnlab {form}'])}", flush=True)
    for form in (f for f in ("keras2", "keras3") if f in forms):
        _, curves[f"keras {form}"] = keras_train(keras_model(state), form, data, args.epochs, shuffles)
        print(f"Keras {form}: {_summary(curves[f'keras {form}'])}", flush=True)
    return curves


def _epoch_order(n: int, seed: int, epoch: int):
    sampler = EpochShuffle(n, seed)
    sampler.set_epoch(epoch)
    base = np.array(list(EpochShuffle(n, seed)))  # data["x"] is already in epoch 0's order
    inverse = np.empty(n, dtype=np.int64)
    inverse[base] = np.arange(n)
    return inverse[np.array(list(sampler))]


def _summary(rows):
    best = best_row(rows) or rows[-1]
    last = rows[-1]
    return (
        f"final train acc {last['train_acc']:.4f}, val loss {last['val_loss']:.4f}, val acc {last['val_acc']:.4f}; "
        f"min val loss {best['val_loss']:.4f} at epoch {rows.index(best) + 1}"
    )


def _plot(runs: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name, (ours, theirs, matched) in PAIRS.items():
        a, b = np.array(runs[f"cnnlab {ours}"]), np.array(runs[f"keras {theirs}"])
        bottom.semilogy(np.arange(1, len(a) + 1), np.abs(a - b) / b, label=name, linestyle="-" if matched else "--")
    for name, losses in runs.items():
        top.plot(np.arange(1, len(losses) + 1), losses, label=name, linewidth=0.8)
    top.set_ylabel("training loss of the step")
    top.legend(fontsize=8)
    bottom.set_ylabel("|cnnlab - Keras| / Keras")
    bottom.set_xlabel("step (batch of 32) in epoch 1")
    bottom.legend(fontsize=8)
    fig.suptitle("cnnlab vs Keras, same weights and batches: per-step loss (solid: matched semantics)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
