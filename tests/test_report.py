"""`cnnlab report`: verdicts from the curve's tail and from tests, in a five-section report in two languages."""

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnlab.analysis.compare import load_runs
from cnnlab.analysis.report import write_report
from cnnlab.analysis.report.findings import compute
from cnnlab.cli import app
from cnnlab.text import LANGS, catalog, fields_of, flatten
from runfolders import flat, make_run, rising

runner = CliRunner()


def _findings(run_dirs):
    return compute(load_runs([str(r) for r in run_dirs]))


def _one_epoch_rule(curve, threshold=10.0):
    return 100 * (curve[-1] / min(curve) - 1) > threshold


@pytest.mark.parametrize("case", ["spike", "dip"])
def test_overfitting_is_judged_on_the_tail_where_one_epoch_gets_it_wrong(tmp_path, case):
    if case == "spike":  # flat curve, one bad last epoch: the one-epoch rule says overfitting
        curve, overfits = flat() + [0.6], False
    else:  # a steady climb that dips at the last epoch: the one-epoch rule says none
        curve, overfits = rising() + [0.31], True
    assert _one_epoch_rule(curve) is not overfits
    for variant, values in (("all", curve), ("without_last", curve[:-1])):
        run = make_run(tmp_path / variant, val_loss=values)
        (e,) = _findings([run]).experiments
        assert e.verdict == ("overfits" if overfits else "none"), (variant, e.tails)


def test_the_dropout_comparison_uses_the_per_image_test_and_names_it(tmp_path):
    logdir = tmp_path / "tb"
    base_right = [np.random.default_rng(s).random(10_000) < 0.85 for s in range(3)]
    runs = []
    for i, seed in enumerate((1, 2, 3)):
        runs.append(make_run(logdir, 0.2, 0.0, seed, val_loss=rising(), base_right=base_right[i]))
        runs.append(make_run(logdir, 0.2, 0.5, seed, val_loss=flat(), base_right=base_right[i], flip=150))
    f = _findings(runs)
    (c,) = f.comparisons
    e = c.primary
    assert e.test == "exact McNemar" and e.pairs == 3 and e.images == 30_000 and e.seeds == (3, 3)
    assert e.difference == pytest.approx(0.015) and e.low < 0.015 < e.high and e.p_value < 1e-10
    assert e.verdict == "holds"
    assert c.effects["val_loss"].test == "Welch t" and c.effects["val_loss"].verdict == "holds"
    out = write_report([str(r) for r in runs], tmp_path / "rep", lang="en")
    data = json.loads((out.out / "findings.json").read_text())
    for comp in data["comparisons"]:  # every comparison names its test, its interval or p, its seeds
        for effect in comp["effects"].values():
            assert effect["test"] in ("exact McNemar", "Welch t", "none") and effect["seeds"]
            assert effect["test"] == "none" or effect["p_value"] is not None and effect["low"] is not None
    md = (out.out / "REPORT.md").read_text()
    assert "on 30,000 paired holdout predictions (3 seed pairs, seeds 1, 2, 3)" in md


def test_a_one_seed_comparison_is_marked_and_never_claimed(tmp_path):
    logdir = tmp_path / "tb"
    a = make_run(logdir, 1.0, 0.0, 42, val_loss=rising(), train_acc=0.99)
    b = make_run(logdir, 1.0, 0.5, 42, val_loss=flat())
    f = _findings([a, b])
    (c,) = f.comparisons
    assert all(e.test == "none" and e.verdict == "one seed" and e.p_value is None for e in c.effects.values())
    report = write_report([str(a), str(b)], tmp_path / "ja", lang="ja")
    md = (report.out / "REPORT.md").read_text()
    assert "なし（一方がシード 1 個）" in md and "シード 1 個の条件を含むため検定なし" in md


def test_a_small_difference_is_not_significant(tmp_path):
    logdir = tmp_path / "tb"
    right = np.random.default_rng(0).random(10_000) < 0.85
    a = make_run(logdir, 0.2, 0.0, 1, val_loss=flat(), base_right=right)
    b = make_run(logdir, 0.2, 0.5, 1, val_loss=flat(), base_right=right, flip=5)
    (c,) = _findings([a, b]).comparisons
    assert c.primary.test == "exact McNemar" and c.primary.verdict == "not significant"


def test_claims_follow_the_findings(tmp_path):
    logdir = tmp_path / "tb"
    right = [np.random.default_rng(s).random(10_000) < 0.86 for s in range(2)]
    runs = []
    for i, seed in enumerate((1, 2)):
        runs.append(make_run(logdir, 0.2, 0.0, seed, val_loss=rising(), train_acc=0.995, base_right=right[i]))
        runs.append(make_run(logdir, 0.2, 0.5, seed, val_loss=flat(), train_acc=0.9, base_right=right[i], flip=200))
    result = write_report([str(r) for r in runs], tmp_path / "rep", lang="en")
    verdicts = {c.id: c.verdict for c in result.claims}
    assert verdicts["a_overfits"] == "confirmed" and verdicts["a_train_acc_near_100"] == "confirmed"
    assert verdicts["b_raises_val_acc"] == "confirmed" and verdicts["b_lowers_train_acc"] == "confirmed"
    assert verdicts["c_best_above_90"] == "untested" and verdicts["a_long_val_acc_higher"] == "untested"


def test_a_long_run_is_compared_with_its_short_run(tmp_path):
    logdir = tmp_path / "tb"
    right = np.random.default_rng(0).random(10_000) < 0.86
    short = make_run(logdir, 0.2, 0.0, 42, val_loss=rising(), base_right=right)
    long = make_run(logdir, 0.2, 0.0, 42, val_loss=rising(400), base_right=right, flip=100, name="long")
    f = _findings([short, long])
    (lr,) = f.long_runs
    assert lr.short is not None and lr.short.epochs == 40 and lr.run.verdict == "overfits"
    assert lr.best_vs_last is not None and lr.best_vs_last.difference == 0  # same predictions for best and last
    md = (write_report([str(short), str(long)], tmp_path / "rep").out / "REPORT.md").read_text()
    assert "400 epochs" in md and "3.5 The long run" in md


def test_catalogs_have_the_same_entries_and_fields():
    en, ja = (flatten(catalog(lang).data) for lang in LANGS)
    assert set(en) == set(ja)
    for key, text in en.items():
        if isinstance(text, str):
            assert fields_of(text) == fields_of(ja[key]), key
        else:
            assert len(text) == len(ja[key]), key


def test_report_has_five_sections_numbered_figures_and_stands_alone(tmp_path, in_tmp):
    logdir = tmp_path / "tb"
    runs = [str(make_run(logdir, 0.2, d, val_loss=flat(), holdout_right=0.85, rng_seed=i)) for i, d in
            enumerate((0.0, 0.5))]  # fmt: skip
    heads = {"en": ["1. Objective", "2. Method", "3. Results", "4. Discussion", "5. Conclusion"],
             "ja": ["1. 目的", "2. 方法", "3. 結果", "4. 考察", "5. まとめ"]}  # fmt: skip
    for lang in ("en", "ja"):
        result = runner.invoke(app, ["report", *runs, "--out", f"r_{lang}", "--lang", lang])
        assert result.exit_code == 0, result.output
        out = in_tmp / f"r_{lang}"
        md = (out / "REPORT.md").read_text()
        assert [ln[3:] for ln in md.splitlines() if ln.startswith("## ")][:5] == heads[lang]
        fig_word = "Figure" if lang == "en" else "図"
        numbers = [int(n) for n in re.findall(rf"\*\*{fig_word} (\d+)", md)]
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
        assert ("3.6 Part 2" if lang == "en" else "3.6 第 2 部") in md
        page = (out / "report.html").read_text()
        assert f'<html lang="{lang}">' in page and page.count("data:image/png;base64,") == len(numbers)
        text = re.sub(r"(data:image/png;base64,)[A-Za-z0-9+/=]+", r"\1", page)
        assert not re.search(r"(src|href)=\"(?!data:)", text) and "<script" not in text and "http" not in text
        assert "url(" not in text and "@import" not in text and "<link" not in text
    ja = (in_tmp / "r_ja" / "REPORT.md").read_text()
    prose = [ln for ln in ja.split("## 付録")[0].splitlines() if not ln.startswith("![")]
    assert not any("frac0.2_drop" in ln for ln in prose)  # experiments go by names, not run ids
    assert "データ 20%・ドロップアウトなし" in ja and "汎化" in ja and "正則化" in ja


def test_part2_reads_a_filters_folder_and_flags_random_weights(tmp_path):
    folder = tmp_path / "filters"
    folder.mkdir()
    filters = [{"index": i, "category": "edge" if i < 10 else "other", "orientation_deg": 0.0 if i < 5 else 90.0,
                "partner": None, "luminance_dc": 0.1} for i in range(32)]  # fmt: skip
    summary = {"title": "random weights (seed 0)", "random_weights": True, "network": "InceptionV3",
               "activation": "BN + ReLU", "filters": filters, "images": {}, "tuning": {}}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    run = make_run(tmp_path / "tb", val_loss=flat())
    md = (write_report([str(run)], tmp_path / "rep", filters_dirs=[folder]).out / "REPORT.md").read_text()
    assert "These are random weights, not trained ones." in md and "vertical 5" in md and "horizontal 5" in md
    assert "no conclusion is drawn" in md


def test_bad_report_input_is_one_line(tmp_path, in_tmp):
    for args, needle in ((["nope"], "nope: not a run folder"), (["x", "--lang", "fr"], "--lang 'fr'"),
                         (["x", "--filters", "nowhere"], "--filters nowhere")):  # fmt: skip
        if args[0] == "x":
            args = [str(make_run(tmp_path / f"tb{len(needle)}", val_loss=flat())), *args[1:]]
        result = runner.invoke(app, ["report", *args])
        assert result.exit_code == 2 and needle in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_dropout_on_and_off_training_accuracy_are_compared_on_the_same_runs(tmp_path):
    logdir = tmp_path / "tb"
    base = [make_run(logdir, 0.2, 0.0, s, val_loss=rising()) for s in (1, 2)]

    def measured(epoch):  # the training set measured again with dropout off: higher than the running mean
        return {"train_loss": 0.3, "train_acc": 0.90, "val_acc": 0.87, "train_eval_loss": 0.2, "train_eval_acc": 0.95}

    drop = [make_run(logdir, 0.2, 0.5, 1, val_loss=flat(), curves=measured),
            make_run(logdir, 0.2, 0.5, 2, val_loss=flat(), train_acc=0.80)]  # fmt: skip
    md = (write_report([str(r) for r in base + drop], tmp_path / "rep").out / "REPORT.md").read_text()
    # seed 1 alone measured it: its 0.9500 with dropout off against its own 0.9000 logged, not the seeds' mean
    assert "with dropout off (seed 1), the dropout network's training accuracy is 0.9500 against the 0.9000" in md
