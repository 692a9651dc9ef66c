"""``write_report``: the lab report, written from the runs' measurements, in English or Japanese.

The report is built once as a list of blocks (headings, paragraphs, tables, figures) and rendered twice: as
Markdown (REPORT.md, figures beside it) and as one self-contained HTML file (report.html, figures embedded, no
network, no scripts, no web fonts). findings.json holds every finding as data.
"""

from __future__ import annotations

import base64
import datetime
import functools
import html
import json
import math
import os
import re
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_write_json, atomic_write_text
from .compare import OVERFIT_THRESHOLD, Run, Series, load_runs, series_of
from .errors import CnnlabError
from .findings import Finding, SeriesStats, Stat, compute_findings, series_stats
from .model import KerasCNN, count_parameters
from .runs import RUN_JSON
from .tblog import write_board

LANG_CHOICES = ("en", "ja")
Block = tuple[Any, ...]  # ("h", level, text) | ("p", text) | ("ul", items) | ("table", head, rows) | ("fig", file, cap)


@functools.cache
def reference() -> dict[str, Any]:
    """The original exercise's Keras figures, shipped with cnnlab (source named inside)."""
    text = resources.files("cnnlab").joinpath("reference/exercise_keras.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


# --- sources -------------------------------------------------------------------------------------------------


def expand_sources(sources: list[str]) -> list[str]:
    """Run names and folders pass through; a study's (or compare's) output folder stands for its runs."""
    out: list[str] = []
    for src in sources:
        path = Path(src)
        summary = path / "summary.json"
        if path.is_dir() and not (path / RUN_JSON).is_file() and summary.is_file():
            try:
                out += [r["run_dir"] for r in json.loads(summary.read_text())["runs"]]
            except (ValueError, KeyError, TypeError) as e:
                raise CnnlabError(f"{summary}: not a cnnlab summary ({e})") from None
        else:
            out.append(src)
    return out


# --- text ----------------------------------------------------------------------------------------------------

T: dict[str, dict[str, Any]] = {
    "en": {
        "title": "Lab report: overfitting, dropout and data size on Fashion-MNIST",
        "intro": "Written by cnnlab {version} on {date} from {n} training run(s). Every number below is read from "
        "the runs' own files, and every statement is computed from those numbers: when the data say the opposite, "
        "so does the sentence.",
        "setup": "1. Setup",
        "model": "Model: Keras' cifar10_cnn layout on 28x28x1 input (Conv 32 - Conv 32 - MaxPool - Conv 64 - Conv 64 "
        "- MaxPool - Dense 512 - [Dropout] - Dense 10), {params:,} parameters, Glorot-uniform initialization.",
        "data": "Data: Fashion-MNIST. A fixed seeded permutation takes 50,000 of the 60,000 training images as the "
        "pool and 10,000 as a held-out test set (holdout); the official 10,000 test images are a second test set. "
        "A run uses a fraction of the pool, of which the last 10% is the validation set (Keras' validation_split).",
        "setup_head": [
            "experiment",
            "train / val",
            "holdout / official",
            "epochs",
            "dropout",
            "seeds",
            "optimizer",
            "lr",
            "batch",
            "precision",
            "training time per run",
        ],
        "machine": "Trained on: {hw}. Software: {versions}.",
        "not_recorded": "not recorded by these runs",
        "curves": "2. Learning curves",
        "curves_all": "All experiments on shared axes: both loss panels share one y-axis and both accuracy panels "
        "another, so the runs compare on the same scale (watch the y-axis, as the exercise warns).",
        "curves_one": "{label}: training against validation.",
        "fig_all": "Learning curves of all experiments on shared axes.",
        "results": "3. Results",
        "results_head": [
            "experiment",
            "train loss",
            "train acc",
            "val loss",
            "val acc",
            "min val loss (epoch)",
            "val loss rise after min",
            "gap: train - val acc",
            "holdout acc (best ckpt)",
            "holdout acc (last epoch)",
        ],
        "results_note": "Last-epoch figures. Train loss and accuracy are running means over the epoch with dropout "
        "active, as Keras reports them. With several seeds: mean ± standard deviation. The best checkpoint is the "
        "epoch of lowest validation loss.",
        "findings": "4. Findings",
        "f_overfitting": "Overfitting",
        "f_dropout": "What dropout does",
        "f_data": "What more data does",
        "f_best": "The best model",
        "exercise": "5. Against the original exercise (Keras, 2018)",
        "exercise_intro": "The exercise's own figures (last epoch of each Keras run) beside cnnlab's, experiment by "
        "experiment. Source: {source}",
        "ex_head": ["experiment", "", "train loss", "train acc", "val loss", "val acc"],
        "ex_keras": "Keras (exercise)",
        "ex_cnnlab": "cnnlab",
        "ex_diff": "difference",
        "ex_missing": "Not run here: {labels}.",
        "claims": "The exercise's conclusions, tested on cnnlab's runs",
        "confirmed": "confirmed",
        "contradicted": "contradicted",
        "untested": "not tested (no matching runs)",
        "indistinct": "not distinguishable from seed-to-seed variation",
        "long": "6. Long runs and numerical collapse",
        "long_run": "{label}: {epochs} epochs trained.",
        "long_nonfinite": "{label}: the training loss became non-finite in epoch {epoch}; training stopped there "
        "and the run keeps its last good epoch.",
        "long_none": "No run here trained for 400 epochs or more, and none stopped on a non-finite loss.",
        "collapse": "The exercise's 4,000-epoch Keras run ended at loss {loss} and accuracy {acc}. Keras 2 clipped "
        "predicted probabilities to [1e-7, 1 - 1e-7], so a network that predicts one class with certainty is "
        "charged -ln(1e-7) = {cap:.4f} on every image it gets wrong: {wrong:.4f} x {cap:.4f} = {product:.4f}, the "
        "reported loss. The run diverged numerically; it did not converge. cnnlab computes the loss from the logits "
        "without clipping and stops with a message when the loss turns non-finite.",
        "keras3": "7. cnnlab and Keras 3 on the same protocol",
        "keras3_intro": "Both frameworks from the same initial weights, on the same images in the same order "
        "(benchmarks/parity_keras.py). Validation loss is the same unclipped cross-entropy for all.",
        "keras3_head": ["training", "final train acc", "final val loss", "min val loss (epoch)", "final val acc"],
        "filters": "Part 2: what InceptionV3's first layer sees",
        "weights": "Weights: {source}.",
        "random_warning": "These are random weights, not trained ones: the figures show the method, not what a "
        "trained network learned.",
        "taxonomy": "Filter categories (from the weights alone): {counts}.",
        "negative": "Filters with a negative luminance response (negative-photo-like maps): {filters}.",
        "hue": "Strongest response per hue (tuning curve peak): {items}.",
        "orientation": "Strongest response per grating orientation: {items}.",
        "dead": "Dead channels (all zero after ReLU): {items}.",
        "top5": "{image}: top-5 ImageNet classes: {classes}.",
        "runs": "Appendix: the runs",
        "none": "none",
    },
    "ja": {
        "title": "実験レポート：Fashion-MNIST における過学習・ドロップアウト・データ量",
        "intro": "本レポートは cnnlab {version} が {date} に、{n} 本の学習結果から作成した。数値はすべて各実験の記録"
        "ファイルから読み取り、文章もその数値から判定して書いている。データが逆を示せば、文章も逆の結論になる。",
        "setup": "1. 実験条件",
        "model": "モデル：Keras の cifar10_cnn と同じ構成（Conv 32 - Conv 32 - MaxPool - Conv 64 - Conv 64 - MaxPool - "
        "Dense 512 - [Dropout] - Dense 10）を 28×28×1 の入力に適用したもので、パラメータ数は {params:,}、"
        "重みは Glorot 一様分布で初期化した。",
        "data": "データ：Fashion-MNIST。訓練画像 60,000 枚を固定のシードで並べ替え、50,000 枚を学習用プール、"
        "10,000 枚をテスト用（holdout）とした。公式のテスト画像 10,000 枚（official）も別のテストセットとして使う。"
        "各実験ではプールの一部を使い、その末尾 10% を検証データとした（Keras の validation_split と同じ）。",
        "setup_head": [
            "実験",
            "訓練 / 検証",
            "holdout / official",
            "エポック数",
            "ドロップアウト",
            "シード",
            "最適化手法",
            "学習率",
            "バッチサイズ",
            "演算精度",
            "1 本あたりの学習時間",
        ],
        "machine": "計算環境：{hw}。ソフトウェア：{versions}。",
        "not_recorded": "この実験では記録されていない",
        "curves": "2. 学習曲線",
        "curves_all": "全実験を共通の軸で示す。損失の 2 枚は同じ縦軸、精度の 2 枚も同じ縦軸にそろえてあるので、"
        "同じスケールで比較できる（課題の注意どおり、縦軸の範囲に気をつけること）。",
        "curves_one": "{label}：訓練と検証の比較。",
        "fig_all": "全実験の学習曲線（共通の軸）。",
        "results": "3. 結果",
        "results_head": [
            "実験",
            "訓練損失",
            "訓練精度",
            "検証損失",
            "検証精度",
            "検証損失の最小値（エポック）",
            "最小値からの上昇",
            "精度の差（訓練 − 検証）",
            "holdout 精度（最良）",
            "holdout 精度（最終）",
        ],
        "results_note": "値は最終エポックのもの。訓練損失と訓練精度は Keras と同様、ドロップアウトを有効にしたまま"
        "エポック内で平均した値である。複数シードの場合は平均 ± 標準偏差。「最良」は検証損失が最小となった"
        "エポックのチェックポイントを指す。",
        "findings": "4. 考察",
        "f_overfitting": "過学習",
        "f_dropout": "ドロップアウトの効果",
        "f_data": "データ量の効果",
        "f_best": "最良のモデル",
        "exercise": "5. 元の課題（Keras、2018 年）との比較",
        "exercise_intro": "課題に掲載された Keras の結果（各実験の最終エポック）と cnnlab の結果を実験ごとに並べた。"
        "出典：{source}",
        "ex_head": ["実験", "", "訓練損失", "訓練精度", "検証損失", "検証精度"],
        "ex_keras": "Keras（課題）",
        "ex_cnnlab": "cnnlab",
        "ex_diff": "差",
        "ex_missing": "今回は実行していない実験：{labels}。",
        "claims": "課題の結論を cnnlab の結果で検証する",
        "confirmed": "再現した",
        "contradicted": "再現しなかった",
        "untested": "該当する実験がないため未検証",
        "indistinct": "シードによるばらつきと区別できない",
        "long": "6. 長時間学習と数値的な破綻",
        "long_run": "{label}：{epochs} エポック学習した。",
        "long_nonfinite": "{label}：エポック{epoch}で訓練損失が有限でなくなった（NaN または無限大）。学習はそこで"
        "止まり、最後の正常なエポックの結果が残っている。",
        "long_none": "今回は 400 エポック以上の学習も、損失が有限でなくなって止まった学習もない。",
        "collapse": "課題の 4,000 エポックの Keras 実験は、損失 {loss}、精度 {acc} で終わっている。Keras 2 は予測確率を"
        "[1e-7, 1 − 1e-7] に切り詰めるため、ある一つのクラスを確信して予測するネットワークは、誤った画像 1 枚ごとに "
        "−ln(1e-7) = {cap:.4f} の損失を課される。{wrong:.4f} × {cap:.4f} = {product:.4f} となり、"
        "報告された損失と一致する。"
        "つまりこの実験は収束したのではなく、数値的に発散している。cnnlab は切り詰めずにロジットから損失を計算し、"
        "損失が有限でなくなった時点でメッセージを出して止まる。",
        "keras3": "7. 同じ条件での cnnlab と Keras 3 の比較",
        "keras3_intro": "両フレームワークとも同じ初期重みから、同じ画像を同じ順序で学習した"
        "（benchmarks/parity_keras.py）。検証損失はすべて切り詰めなしの交差エントロピーで計算している。",
        "keras3_head": ["学習", "最終の訓練精度", "最終の検証損失", "検証損失の最小値（エポック）", "最終の検証精度"],
        "filters": "第 2 部：InceptionV3 の第 1 層が捉えるもの",
        "weights": "重み：{source}。",
        "random_warning": "これは学習済みではなくランダムな重みである。図は手法を示すだけで、学習したネットワークが"
        "何を獲得したかを示すものではない。",
        "taxonomy": "フィルタの分類（重みのみから判定）：{counts}。",
        "negative": "輝度に対して負に応答するフィルタ（ネガ写真のような特徴マップになる）：{filters}。",
        "hue": "色相ごとに最も強く応答するフィルタ（チューニング曲線の最大）：{items}。",
        "orientation": "縞の向きごとに最も強く応答するフィルタ：{items}。",
        "dead": "ReLU 後にすべて 0 となったチャネル：{items}。",
        "top5": "{image}：ImageNet の上位 5 クラスは {classes}。",
        "runs": "付録：使用した実験",
        "none": "なし",
    },
}

# The exercise author's conclusions (EXERCISE_RESULTS.md), each tied to the finding or figure that tests it.
CLAIMS: list[dict[str, Any]] = [
    {
        "id": "a_train_acc_near_100",
        "experiment": "a",
        "en": "(a) Training accuracy reaches almost 100% (Keras 0.9992).",
        "ja": "(a) 訓練精度はほぼ 100% に達する（Keras では 0.9992）。",
    },
    {
        "id": "a_overfits",
        "experiment": "a",
        "finding": "overfitting",
        "en": "(a) The model overfits: the validation loss grows after an early minimum.",
        "ja": "(a) 過学習する：検証損失は早い段階で最小になった後、増加する。",
    },
    {
        "id": "b_lowers_train_acc",
        "finding": "dropout_lowers_train_acc",
        "frac": 0.2,
        "en": "(b) Dropout lowers the training accuracy.",
        "ja": "(b) ドロップアウトで訓練精度は下がる。",
    },
    {
        "id": "b_raises_train_loss",
        "finding": "dropout_raises_train_loss",
        "frac": 0.2,
        "en": "(b) Dropout raises the training loss.",
        "ja": "(b) ドロップアウトで訓練損失は上がる。",
    },
    {
        "id": "b_lowers_val_loss",
        "finding": "dropout_lowers_val_loss",
        "frac": 0.2,
        "en": "(b) Dropout lowers the validation loss.",
        "ja": "(b) ドロップアウトで検証損失は下がる。",
    },
    {
        "id": "b_raises_val_acc",
        "finding": "dropout_raises_val_acc",
        "frac": 0.2,
        "en": "(b) Dropout raises the validation accuracy (the author's claim; the exercise's own table shows "
        "0.8650 -> 0.8580).",
        "ja": "(b) ドロップアウトで検証精度は上がる（著者の主張。ただし課題自身の表では "
        "0.8650 → 0.8580 と下がっている）。",
    },
    {
        "id": "b_narrows_gap",
        "finding": "dropout_narrows_gap",
        "frac": 0.2,
        "en": "(b) With dropout, training and validation figures move closer.",
        "ja": "(b) ドロップアウトにより、訓練と検証の値が近づく。",
    },
    {
        "id": "c_lowers_val_loss",
        "finding": "more_data_lowers_val_loss",
        "dropout": 0.0,
        "en": "(c) Without dropout, 100% of the data gives a lower validation loss than 20%.",
        "ja": "(c) ドロップアウトなしでは、データを 100% にすると 20% より検証損失が下がる。",
    },
    {
        "id": "c_val_acc_close",
        "experiment": "c",
        "en": "(c) Without dropout, 100% of the data gives a validation accuracy close to 20%'s (within 3 points; "
        "Keras: +2.6): 20% already captures most of what there is to learn.",
        "ja": "(c) ドロップアウトなしでは、データを 100% にしても検証精度は 20% の場合とあまり変わらない"
        "（差が 3 ポイント以内。Keras では +2.6）。つまり 20% のデータで学べることの大半は学べている。",
    },
    {
        "id": "c_best_above_90",
        "experiment": "c_dropout",
        "en": "(c) 100% of the data with dropout is the best model, above 90% validation accuracy.",
        "ja": "(c) データ 100% とドロップアウトの組み合わせが最良のモデルで、検証精度は 90% を超える。",
    },
]


# --- the report ----------------------------------------------------------------------------------------------


@dataclass
class ReportResult:
    out: Path
    files: list[Path]
    findings: list[Finding]
    claims: list[dict[str, Any]] = field(default_factory=list)


_JA_LABEL = [
    (r" \(mean of \d+ seeds: ([\d, ]+)\)", r"（シード \1 の平均）"),
    (r", dropout ", "、ドロップアウト "),
    (r", epochs ", "、エポック数 "),
    (r", optimizer ", "、最適化手法 "),
    (r", lr ", "、学習率 "),
    (r", batch_size ", "、バッチサイズ "),
    (r", init ", "、初期化 "),
    (r", val_split ", "、検証の割合 "),
    (r" \((\w[^()]*)\)$", r"（\1）"),
]


def ja_label(label: str) -> str:
    """A series label (compare.series_of writes it in English) in Japanese; run names stay as they are."""
    for pattern, repl in _JA_LABEL:
        label = re.sub(pattern, repl, label)
    return label


def _mean_run(s: Series) -> Run:
    """A series as one run: its seeds' mean curves (for the per-experiment train/validation figure)."""
    if not s.averaged:
        return s.runs[0]
    n = min(len(r.history) for r in s.runs)
    keys = [k for k in s.runs[0].history[0] if all(k in r.history[0] for r in s.runs)]
    history = [
        {k: (i + 1 if k == "epoch" else sum(r.history[i][k] for r in s.runs) / len(s.runs)) for k in keys}
        for i in range(n)
    ]
    run = Run(s.runs[0].run_dir, s.label, s.runs[0].info, history)
    run.title = s.label  # type: ignore[attr-defined]
    return run


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:80]


def write_report(
    sources: list[str],
    out: str | os.PathLike[str] = "report",
    lang: str = "en",
    threshold: float = OVERFIT_THRESHOLD,
    filters_dir: str | os.PathLike[str] | None = None,
    logdir: Path = Path("tb_logs"),
    keras_curves: str | os.PathLike[str] | None = None,
    tensorboard: Path | None = None,  # also write the findings and the figures as this TensorBoard run
) -> ReportResult:
    """Write REPORT.md, report.html, findings.json and the figures for these runs into ``out``."""
    from .plots import figure_lang, plot_run_curves, plot_runs

    if lang not in LANG_CHOICES:
        raise CnnlabError(f"--lang {lang!r}: unknown; choose one of {', '.join(LANG_CHOICES)}")
    if not (threshold > 0 and math.isfinite(threshold)):
        raise CnnlabError(f"--threshold {threshold}: must be a positive percentage, e.g. 10")
    if not sources:
        raise CnnlabError("report needs at least one run (a name, a run folder or a study's output folder)")
    runs = load_runs(expand_sources(sources), logdir)
    series = series_of(runs)
    if lang == "ja":
        for s in series:
            s.label = ja_label(s.label)
    stats = series_stats(series, threshold)
    findings = compute_findings(stats, threshold)
    out = Path(out)
    t = T[lang]
    fig_lang = figure_lang(lang)
    figures = [plot_runs(series, out / "curves.png", lang=fig_lang)]
    for s in series:
        figures.append(plot_run_curves(_mean_run(s), out / f"curves_{_safe(s.label)}.png", lang=fig_lang))
    claims = judge_claims(stats, findings, lang)
    blocks: list[Block] = [("h", 1, t["title"])]
    blocks.append(("p", t["intro"].format(version=__version__, date=datetime.date.today().isoformat(), n=len(runs))))
    blocks += _setup(series, t)
    blocks += [("h", 2, t["curves"]), ("p", t["curves_all"]), ("fig", "curves.png", t["fig_all"])]
    for s in series:
        blocks.append(("fig", f"curves_{_safe(s.label)}.png", t["curves_one"].format(label=s.label)))
    blocks += _results(series, stats, t)
    blocks += _findings(findings, t, lang)
    blocks += _exercise(stats, claims, t, lang)
    blocks += _long_runs(stats, runs, t)
    if keras_curves:
        blocks += _keras3(Path(keras_curves), t, out, fig_lang, figures)
    if filters_dir:
        blocks += _filters(Path(filters_dir), t, out, figures)
    blocks += [("h", 2, t["runs"]), ("ul", [f"`{r.run_dir}`" for r in runs])]
    md = render_markdown(blocks)
    atomic_write_text(out / "REPORT.md", md)
    atomic_write_text(out / "report.html", render_html(blocks, out, lang, t["title"]))
    payload = {
        "lang": lang,
        "threshold_pct": threshold,
        "findings": [f.to_dict(lang) for f in findings],
        "claims": claims,
        "series": [s.label for s in series],
    }
    atomic_write_json(out / "findings.json", payload)
    files = [out / "REPORT.md", out / "report.html", out / "findings.json", *figures]
    if tensorboard is not None:
        marks = {True: "✓", False: "✗"}
        text = "\n".join(f"- {marks[f.holds]} {f.sentence[lang]}" for f in findings)
        write_board(tensorboard, figures, {"findings": text})
    return ReportResult(out, files, findings, claims)


def _duration(seconds: float) -> str:
    if not seconds:
        return "-"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _epoch(stat: Any) -> str:
    return f"{stat.mean:.0f}" if stat.std is None else f"{stat.mean:.1f} ± {stat.std:.1f}"


def _fmt(stat: Any, digits: int = 4) -> str:
    return stat.fmt(digits)


def _setup(series: list[Series], t: dict[str, Any]) -> list[Block]:
    rows = []
    for s in series:
        info = s.runs[0].info
        cfg = info.get("config", {})
        split = info.get("split", {})
        seconds = [sum(r.info.get("epoch_seconds", [])) for r in s.runs]
        mean_s = sum(seconds) / len(seconds)
        rows.append(
            [
                s.label,
                f"{split.get('train', '?'):,} / {split.get('val', '?'):,}",
                f"{split.get('holdout', '?'):,} / {split.get('official', '?'):,}",
                str(s.runs[0].setting("epochs")),
                f"{s.runs[0].setting('dropout')}",
                ", ".join(str(r.setting("seed")) for r in s.runs),
                str(s.runs[0].setting("optimizer")),
                f"{s.runs[0].setting('lr'):g}",
                str(s.runs[0].setting("batch_size")),
                str(cfg.get("precision", "32-true")),
                _duration(mean_s),
            ]
        )
    info = series[0].runs[0].info
    hw = info.get("hardware")
    hw_text = (
        f"{hw.get('cpu')}, {hw.get('cores')} cores ({hw.get('torch_threads')} PyTorch threads), device "
        f"{hw.get('gpu') or hw.get('device')}"
        if hw
        else t["not_recorded"]
    )
    versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items()) or t["not_recorded"]
    return [
        ("h", 2, t["setup"]),
        ("p", t["data"]),
        ("p", t["model"].format(params=count_parameters(KerasCNN()))),
        ("table", t["setup_head"], rows),
        ("p", t["machine"].format(hw=hw_text, versions=versions)),
    ]


def _results(series: list[Series], stats: list[SeriesStats], t: dict[str, Any]) -> list[Block]:
    runs_of = {se.label: se.runs for se in series}
    rows = []
    for s in stats:
        tests = _tests(runs_of[s.label])
        rows.append(
            [
                s.label,
                _fmt(s["final_train_loss"]),
                _fmt(s["final_train_acc"]),
                _fmt(s["final_val_loss"]),
                _fmt(s["final_val_acc"]),
                f"{_fmt(s['best_val_loss'])} ({_epoch(s['min_val_loss_epoch'])})",
                f"{s['val_loss_rise_pct'].mean:+.0f}%",
                _fmt(s["gap_acc"]),
                tests["best"],
                tests["last"],
            ]
        )
    return [("h", 2, t["results"]), ("table", t["results_head"], rows), ("p", t["results_note"])]


def _tests(runs: list[Run]) -> dict[str, str]:
    """Holdout accuracy of the best and last weights, from the run.json files already loaded."""
    out = {}
    for which in ("best", "last"):
        vals = []
        for run in runs:
            acc = run.info.get("test", {}).get(which, {}).get("holdout", {}).get("acc")
            if acc is not None:
                vals.append(float(acc))
        out[which] = (
            Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None).fmt() if vals else "-"
        )
    return out


def _findings(findings: list[Finding], t: dict[str, Any], lang: str) -> list[Block]:
    groups = [("f_overfitting", "overfitting"), ("f_dropout", "dropout"), ("f_data", "more_data"), ("f_best", "best")]
    blocks: list[Block] = [("h", 2, t["findings"])]
    for key, pick in groups:
        items = [f.sentence[lang] for f in findings if f.id.startswith(pick)]
        if items:
            blocks += [("h", 3, t[key]), ("ul", items)]
    return blocks


def _match(stats: list[SeriesStats], frac: float, dropout: float, epochs: int) -> SeriesStats | None:
    return next((s for s in stats if (s.frac, s.dropout, s.epochs) == (frac, dropout, epochs)), None)


def judge_claims(stats: list[SeriesStats], findings: list[Finding], lang: str) -> list[dict[str, Any]]:
    """Each of the exercise's conclusions: confirmed, contradicted, or untested, with the sentence behind it."""
    ref = {e["id"]: e for e in reference()["experiments"]}
    out = []
    for claim in CLAIMS:
        verdict, because = None, ""
        if "finding" in claim and claim["finding"] != "overfitting":
            scope_key = "frac" if "frac" in claim else "dropout"
            f = next(
                (
                    f
                    for f in findings
                    if f.id == claim["finding"]
                    and f.scope.get(scope_key) == claim[scope_key]
                    and (scope_key != "frac" or f.scope.get("dropout", [0])[0] == 0.0)
                ),
                None,
            )
            if f:
                verdict, because = (None if f.distinguishable is False else f.holds), f.sentence[lang]
                if f.distinguishable is False:
                    out.append({"id": claim["id"], "claim": claim[lang], "verdict": "indistinct", "because": because})
                    continue
        else:
            e = ref[claim["experiment"]]
            s = _match(stats, e["frac"], e["dropout"], e["epochs"])
            if s is not None:
                verdict, because = _experiment_claim(claim["id"], s, stats, findings, lang)
        out.append(
            {
                "id": claim["id"],
                "claim": claim[lang],
                "verdict": "untested" if verdict is None else "confirmed" if verdict else "contradicted",
                "because": because,
            }
        )
    return out


def _experiment_claim(
    cid: str, s: SeriesStats, stats: list[SeriesStats], findings: list[Finding], lang: str
) -> tuple[bool | None, str]:
    if cid == "a_train_acc_near_100":
        acc = s["final_train_acc"]
        return acc.mean >= 0.99, (
            f"{s.label}：訓練精度 {acc.fmt()}" if lang == "ja" else f"{s.label}: train acc {acc.fmt()}"
        )
    if cid == "a_overfits":
        f = next(f for f in findings if f.id == "overfitting" and f.scope["series"] == s.label)
        return f.holds, f.sentence[lang]
    if cid == "c_val_acc_close":
        small = _match(stats, 0.2, 0.0, s.epochs)
        if small is None:
            return None, ""
        d = s["final_val_acc"].mean - small["final_val_acc"].mean
        arrow, points = ("→", "ポイント") if lang == "ja" else ("->", " points")
        before, after = small["final_val_acc"].fmt(), s["final_val_acc"].fmt()
        text = f"{small.label} {before} {arrow} {s.label} {after} ({100 * d:+.1f}{points})"
        return abs(d) <= 0.03, text
    if cid == "c_best_above_90":
        best = next((f for f in findings if f.id == "best_model"), None)
        acc = s["best_val_acc"]
        is_best = best is not None and best.figures["by_val_loss"] == s.label == best.figures["by_val_acc"]
        tail = f"（{s.label}：{acc.fmt()}）" if lang == "ja" else f" ({s.label}: {acc.fmt()})"
        return is_best and acc.mean > 0.90, (best.sentence[lang] if best else "") + tail
    return None, ""


def _exercise(stats: list[SeriesStats], claims: list[dict[str, Any]], t: dict[str, Any], lang: str) -> list[Block]:
    ref = reference()
    rows, missing = [], []
    for e in ref["experiments"]:
        s = _match(stats, e["frac"], e["dropout"], e["epochs"])
        if s is None:
            missing.append(e["label"])
            continue
        ours = [s["final_train_loss"], s["final_train_acc"], s["final_val_loss"], s["final_val_acc"]]
        theirs = [e["loss"], e["acc"], e["val_loss"], e["val_acc"]]
        rows.append([e["label"], t["ex_keras"], *(f"{v:.4f}" for v in theirs)])
        rows.append(["", t["ex_cnnlab"], *(_fmt(v) for v in ours)])
        rows.append(["", t["ex_diff"], *(f"{o.mean - k:+.4f}" for o, k in zip(ours, theirs, strict=True))])
    source = ref["source_ja"] if lang == "ja" else ref["source"]
    blocks: list[Block] = [("h", 2, t["exercise"]), ("p", t["exercise_intro"].format(source=source))]
    if rows:
        blocks.append(("table", t["ex_head"], rows))
    if missing:
        blocks.append(("p", t["ex_missing"].format(labels=", ".join(missing))))
    if lang == "ja":
        items = [
            f"**{t[c['verdict']]}**：{c['claim']}" + (f"（{c['because']}）" if c["because"] else "") for c in claims
        ]
    else:
        items = [
            f"**{t[c['verdict']]}**: {c['claim']}" + (f" ({c['because']})" if c["because"] else "") for c in claims
        ]
    blocks += [("h", 3, t["claims"]), ("ul", items)]
    return blocks


def _long_runs(stats: list[SeriesStats], runs: list[Run], t: dict[str, Any]) -> list[Block]:
    items = []
    for r in runs:
        epochs = r.setting("epochs") or len(r.history)
        if r.info.get("nonfinite_epoch"):
            items.append(t["long_nonfinite"].format(label=r.label, epoch=r.info["nonfinite_epoch"]))
        elif int(epochs) >= 400:
            last = r.history[-1]
            items.append(
                t["long_run"].format(label=r.label, epochs=epochs) + f" train acc {last['train_acc']:.4f}, "
                f"val loss {last['val_loss']:.4f}, val acc {last['val_acc']:.4f}"
            )
    e = next(e for e in reference()["experiments"] if e["id"] == "a_very_long")
    cap = -math.log(reference()["clip_epsilon"])
    wrong = 1 - e["acc"]
    collapse = t["collapse"].format(loss=e["loss"], acc=e["acc"], cap=cap, wrong=wrong, product=wrong * cap)
    return [("h", 2, t["long"]), ("ul", items) if items else ("p", t["long_none"]), ("p", collapse)]


def _keras3(path: Path, t: dict[str, Any], out: Path, lang: str, figures: list[Path]) -> list[Block]:
    from .plots import plot_curve_sets

    try:
        curves = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CnnlabError(
            f"--keras {path}: unreadable ({e}); write it with benchmarks/parity_keras.py --epochs N"
        ) from None
    rows = []
    for name, rows_ in curves.items():
        best = min(range(len(rows_)), key=lambda i: rows_[i]["val_loss"])
        last = rows_[-1]
        rows.append(
            [
                name,
                f"{last['train_acc']:.4f}",
                f"{last['val_loss']:.4f}",
                f"{rows_[best]['val_loss']:.4f} ({best + 1})",
                f"{last['val_acc']:.4f}",
            ]
        )
    figures.append(plot_curve_sets(curves, out / "keras3_vs_cnnlab.png", lang=lang))
    return [
        ("h", 2, t["keras3"]),
        ("p", t["keras3_intro"]),
        ("table", t["keras3_head"], rows),
        ("fig", "keras3_vs_cnnlab.png", t["keras3"]),
    ]


def _filters(folder: Path, t: dict[str, Any], out: Path, figures: list[Path]) -> list[Block]:
    import shutil

    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError) as e:
        raise CnnlabError(
            f"--filters {folder}: no readable summary.json ({e}); run `cnnlab filters --out DIR` first"
        ) from None
    source = summary.get("title", "?")
    heading = t["filters"] + (" (random weights)" if summary.get("random_weights") else "")
    blocks: list[Block] = [("h", 2, heading), ("p", t["weights"].format(source=source))]
    if summary.get("random_weights"):
        blocks.append(("p", t["random_warning"]))
    filt = summary.get("filters", [])
    counts: dict[str, int] = {}
    for f in filt:
        counts[f["category"]] = counts.get(f["category"], 0) + 1
    blocks.append(("p", t["taxonomy"].format(counts=", ".join(f"{k} {v}" for k, v in sorted(counts.items())))))
    negative = [str(f["index"]) for f in filt if f.get("luminance_dc", 0) < 0 and f["category"] == "low-frequency"]
    blocks.append(("p", t["negative"].format(filters=", ".join(negative) or t["none"])))
    for key, every in (("hue", 3), ("orientation", 1)):  # hue in 10-degree steps: show every 30 degrees
        tuning = summary.get("tuning", {}).get(key)
        if tuning:
            pairs = list(zip(tuning["x"], tuning["response"], strict=True))[::every]
            items = [f"{x:g}°: {max(range(len(r)), key=lambda i: r[i])}" for x, r in pairs]
            blocks.append(("p", t[key].format(items="; ".join(items))))
    for name in ("filters.png", *sorted(p.name for p in folder.glob("*_overview.png"))):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
            figures.append(out / name)
            blocks.append(("fig", name, f"{heading}: {name}"))
    for image, info in summary.get("images", {}).items():
        if info.get("dead_channels"):
            blocks.append(("p", t["dead"].format(items=f"{image}: {info['dead_channels']}")))
        if info.get("top5"):
            classes = ", ".join(f"{c['label']} ({c['probability']:.1%})" for c in info["top5"])
            blocks.append(("p", t["top5"].format(image=image, classes=classes)))
    return blocks


# --- rendering -----------------------------------------------------------------------------------------------


def render_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            lines += ["#" * b[1] + " " + b[2], ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in b[1]] + [""]
        elif kind == "table":
            head, rows = b[1], b[2]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
            lines.append("")
        elif kind == "fig":
            lines += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK JP", "Hiragino Sans",
       "Yu Gothic", sans-serif; max-width: 64rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.6;
       color: #1a1a1a; }
h1 { font-size: 1.7rem; border-bottom: 2px solid #333; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1rem; }
table { border-collapse: collapse; margin: 1rem 0; font-size: .85rem; }
th, td { border: 1px solid #bbb; padding: .25rem .5rem; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .85rem; color: #555; }
code { font-size: .85em; }
@media print { body { max-width: none; margin: 0; } h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
"""


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the report uses inline: **bold** and `code`."""
    parts = html.escape(text).split("`")
    for i in range(1, len(parts), 2):
        parts[i] = f"<code>{parts[i]}</code>"
    joined = "".join(parts)
    bold = joined.split("**")
    for i in range(1, len(bold), 2):
        bold[i] = f"<strong>{bold[i]}</strong>"
    return "".join(bold)


def render_html(blocks: list[Block], folder: Path, lang: str, title: str) -> str:
    body: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "fig":
            data = base64.b64encode((folder / b[1]).read_bytes()).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline(b[2])}</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{html.escape(title)}</title>\n'
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )
