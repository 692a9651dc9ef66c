"""`cnnlab report`: findings follow the data both ways, in English and Japanese; the HTML stands alone."""

import json
import re

import pytest
from typer.testing import CliRunner

from cnnlab.atomic import atomic_write_json
from cnnlab.cli import app
from cnnlab.report import write_report
from cnnlab.runs import write_history

runner = CliRunner()


def _run(logdir, frac, dropout, last, seed=42, first_val_loss=None, epochs=2):
    """A hand-written run whose last epoch has the given figures (train_loss, train_acc, val_loss, val_acc)."""
    name = f"frac{frac}_drop{dropout}_seed{seed}"
    run = logdir / name / "version_0"
    run.mkdir(parents=True)
    first = {"epoch": 1, "train_loss": 1.0, "train_acc": 0.6, "val_loss": first_val_loss or 0.9, "val_acc": 0.6}
    rows = [first] + [dict(first, epoch=e) for e in range(2, epochs)] + [{"epoch": epochs, **last}]
    write_history(run, rows)
    config = {"frac": frac, "dropout": dropout, "seed": seed, "epochs": epochs, "batch_size": 32, "lr": 1e-4,
              "optimizer": "rmsprop", "init": "keras", "val_split": 0.1, "precision": "32-true"}  # fmt: skip
    atomic_write_json(run / "run.json", {"name": name, "status": "finished", "config": config,
                                         "split": {"train": 9000, "val": 1000, "holdout": 10000, "official": 10000},
                                         "epoch_seconds": [3.0] * epochs})  # fmt: skip
    return str(run)


def _fig(train_loss=0.3, train_acc=0.9, val_loss=0.5, val_acc=0.85):
    return {"train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc}


def _findings(tmp_path, runs, lang="en"):
    result = write_report(runs, tmp_path / f"out_{lang}", lang=lang)
    return {(f.id, json.dumps(f.scope, sort_keys=True)): f for f in result.findings}, result


def _one(found, fid):
    (f,) = [f for (i, _), f in found.items() if i == fid]
    return f


# Each dropout finding, with a dropout run that makes it hold and one that makes it fail.
DROPOUT_CASES = {
    "dropout_lowers_val_loss": (_fig(val_loss=0.4), _fig(val_loss=0.6)),
    "dropout_raises_train_loss": (_fig(train_loss=0.5), _fig(train_loss=0.2)),
    "dropout_lowers_train_acc": (_fig(train_acc=0.8), _fig(train_acc=0.95)),
    "dropout_raises_val_acc": (_fig(val_acc=0.88), _fig(val_acc=0.82)),
    "dropout_narrows_gap": (_fig(train_acc=0.86, val_acc=0.85), _fig(train_acc=0.99, val_acc=0.80)),
}


@pytest.mark.parametrize("fid", sorted(DROPOUT_CASES))
@pytest.mark.parametrize("holds", [True, False])
def test_dropout_findings_follow_the_data(tmp_path, fid, holds):
    logdir = tmp_path / "tb"
    base = _run(logdir, 0.2, 0.0, _fig())
    other = _run(logdir, 0.2, 0.5, DROPOUT_CASES[fid][0 if holds else 1])
    found, _ = _findings(tmp_path, [base, other])
    f = _one(found, fid)
    assert f.holds is holds and f.distinguishable is None
    assert ("did not" not in f.sentence["en"]) is holds
    assert ("なかった" not in f.sentence["ja"]) is holds
    before, after = f.figures["before"]["mean"], f.figures["after"]["mean"]
    assert f"{before:.4f}" in f.sentence["en"] and f"{after:.4f}" in f.sentence["ja"]


DATA_CASES = {
    "more_data_lowers_val_loss": (_fig(val_loss=0.35), _fig(val_loss=0.7)),
    "more_data_raises_val_acc": (_fig(val_acc=0.9), _fig(val_acc=0.8)),
    "more_data_narrows_gap": (_fig(train_acc=0.9, val_acc=0.88), _fig(train_acc=0.99, val_acc=0.8)),
}


@pytest.mark.parametrize("fid", sorted(DATA_CASES))
@pytest.mark.parametrize("holds", [True, False])
def test_more_data_findings_follow_the_data(tmp_path, fid, holds):
    logdir = tmp_path / "tb"
    small = _run(logdir, 0.2, 0.0, _fig())
    large = _run(logdir, 1.0, 0.0, DATA_CASES[fid][0 if holds else 1])
    f = _one(_findings(tmp_path, [small, large])[0], fid)
    assert f.holds is holds and ("did not" not in f.sentence["en"]) is holds
    assert f.scope["frac"] == [0.2, 1.0]


@pytest.mark.parametrize("holds", [True, False])
def test_overfitting_follows_the_validation_loss(tmp_path, holds):
    logdir = tmp_path / "tb"
    run = _run(logdir, 0.2, 0.0, _fig(val_loss=0.7 if holds else 0.41), first_val_loss=0.4, epochs=3)
    a = _run(logdir, 0.2, 0.5, _fig())
    f = next(f for (i, s), f in _findings(tmp_path, [run, a])[0].items() if i == "overfitting" and "drop0.0" in s)
    assert f.holds is holds and f.figures["min_val_loss_epoch"]["mean"] == 1
    assert ("overfitting from about epoch 1" in f.sentence["en"]) is holds
    assert ("過学習している" in f.sentence["ja"]) is holds and ("過学習とは言えない" in f.sentence["ja"]) is not holds


@pytest.mark.parametrize("agree", [True, False])
def test_best_model_by_loss_and_by_accuracy(tmp_path, agree):
    logdir = tmp_path / "tb"
    a = _run(logdir, 0.2, 0.0, _fig(val_loss=0.3, val_acc=0.9))
    b = _run(logdir, 0.2, 0.5, _fig(val_loss=0.5, val_acc=0.8 if agree else 0.95))
    f = _one(_findings(tmp_path, [a, b])[0], "best_model")
    assert f.figures["by_val_loss"].startswith("frac0.2_drop0.0")
    assert f.figures["by_val_acc"].startswith("frac0.2_drop0.0" if agree else "frac0.2_drop0.5")
    assert ("disagree" in f.sentence["en"]) is not agree


def test_an_effect_within_the_seed_spread_is_not_distinguishable(tmp_path):
    logdir = tmp_path / "tb"
    # validation accuracy: no dropout 0.80 / 0.90 (std 0.07), dropout 0.84 / 0.88 (std 0.03): a +0.01 effect
    base = [_run(logdir, 0.2, 0.0, _fig(val_acc=v), seed=s) for s, v in ((1, 0.80), (2, 0.90))]
    drop = [
        _run(logdir, 0.2, 0.5, _fig(val_acc=v, val_loss=vl), seed=s) for s, v, vl in ((1, 0.84, 0.30), (2, 0.88, 0.31))
    ]
    found, _ = _findings(tmp_path, base + drop)
    f = _one(found, "dropout_raises_val_acc")
    assert f.distinguishable is False and f.holds is False
    assert "not distinguishable from seed-to-seed variation" in f.sentence["en"] and "区別できない" in f.sentence["ja"]
    assert "0.8500 ± 0.0707" in f.sentence["en"] and "0.8600 ± 0.0283" in f.sentence["en"]
    claim = next(c for c in _findings(tmp_path, base + drop)[1].claims if c["id"] == "b_raises_val_acc")
    assert claim["verdict"] == "indistinct"  # neither confirmed nor contradicted
    # validation loss 0.5 / 0.5 -> 0.30 / 0.31: an effect far beyond its spread holds
    clear = _one(found, "dropout_lowers_val_loss")
    assert clear.holds is True and clear.distinguishable is True and "did not" not in clear.sentence["en"]


def test_claims_of_the_exercise_are_judged(tmp_path):
    logdir = tmp_path / "tb"
    a = _run(logdir, 0.2, 0.0, _fig(train_loss=0.01, train_acc=0.999, val_loss=0.9, val_acc=0.86),
             first_val_loss=0.4, epochs=40)  # fmt: skip
    b = _run(logdir, 0.2, 0.5, _fig(train_loss=0.3, train_acc=0.88, val_loss=0.45, val_acc=0.87), epochs=40)
    _, result = _findings(tmp_path, [a, b])
    verdicts = {c["id"]: c["verdict"] for c in result.claims}
    assert verdicts["a_train_acc_near_100"] == "confirmed" and verdicts["a_overfits"] == "confirmed"
    assert verdicts["b_raises_val_acc"] == "confirmed" and verdicts["b_lowers_val_loss"] == "confirmed"
    assert verdicts["c_best_above_90"] == "untested"  # no 100% run
    md = (tmp_path / "out_en" / "REPORT.md").read_text()
    assert "| (a) 20% | Keras (exercise) | 0.0109 | 0.9992 | 0.7134 | 0.8650 |" in md
    assert "|  | cnnlab | 0.0100 | 0.9990 | 0.9000 | 0.8600 |" in md


def test_report_files_html_self_contained_and_japanese_throughout(tmp_path, in_tmp):
    logdir = tmp_path / "tb"
    runs = [_run(logdir, 0.2, 0.0, _fig()), _run(logdir, 0.2, 0.5, _fig(val_loss=0.4))]
    for lang in ("en", "ja"):
        result = runner.invoke(app, ["report", *runs, "--out", f"r_{lang}", "--lang", lang])
        assert result.exit_code == 0, result.output
        out = in_tmp / f"r_{lang}"
        assert {"REPORT.md", "report.html", "findings.json", "curves.png"} <= {p.name for p in out.iterdir()}
        page = (out / "report.html").read_text()
        assert f'<html lang="{lang}">' in page and page.count("data:image/png;base64,") >= 3
        # no external reference of any kind: no URLs, no scripts, no linked files (the embedded images aside, whose
        # base64 text could spell anything)
        text = re.sub(r"(data:image/png;base64,)[A-Za-z0-9+/=]+", r"\1", page)
        assert not re.search(r"(src|href)=\"(?!data:)", text) and "<script" not in text and "http" not in text
        assert "url(" not in text and "@import" not in text and "<link" not in text
        findings = json.loads((out / "findings.json").read_text())
        assert findings["lang"] == lang and {f["id"] for f in findings["findings"]} >= {"overfitting", "best_model"}
    ja = (in_tmp / "r_ja" / "REPORT.md").read_text()
    # Japanese throughout: every line of prose (headings, sentences, table headers) carries Japanese text; what
    # stays Latin is names (runs, files, optimizers), numbers and units.
    prose = [ln for ln in ja.splitlines() if ln and not ln.startswith(("![", "|---", "- `"))]
    latin_only = [ln for ln in prose if not re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", ln)]
    assert all(ln.startswith("| frac") for ln in latin_only), latin_only  # table rows: run names and numbers
    assert "## 4. 考察" in ja and "## 1. 実験条件" in ja


def test_bad_report_input_is_one_line(tmp_path, in_tmp):
    for args, needle in ((["nope"], "nope: not a run folder"), (["x", "--lang", "fr"], "--lang 'fr'"),
                         (["x", "--threshold", "0"], "--threshold 0.0")):  # fmt: skip
        result = runner.invoke(app, ["report", *args])
        assert result.exit_code == 2 and needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
