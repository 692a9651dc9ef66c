import json
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cnnlab import filters as F
from cnnlab.cli import app
from cnnlab.filters import PROBES, make_probe

runner = CliRunner()


@pytest.fixture(scope="module")
def stem():
    return F.load_inception("random", seed=0)


def test_hooks_capture_the_exercise_shapes_and_are_removed(stem):
    stem.model.train()
    x, shown = F.prepare(stem, make_probe("rainbow"))
    maps = F.capture(stem, x)
    assert maps["conv2d_1"].shape == (1, 32, 149, 149) and maps["activation_1"].shape == (1, 32, 149, 149)
    assert maps["activation_1"].min() >= 0 and maps["conv2d_1"].min() < 0  # after ReLU vs before BN
    assert not stem.conv._forward_hooks and not stem.block._forward_hooks
    assert stem.model.training  # the mode it had is restored
    assert shown.shape == (299, 299, 3) and shown.dtype == np.uint8


def test_hooks_are_removed_on_error(stem):
    def boom(x):
        raise RuntimeError("boom")

    broken = F.Stem(stem.title, True, stem.model, stem.conv, stem.block, 299, boom, boom)
    with pytest.raises(RuntimeError):
        F.capture(broken, torch.zeros(1, 3, 299, 299))
    assert not stem.conv._forward_hooks and not stem.block._forward_hooks


def test_stem_only_equals_the_full_forward(stem):
    x, _ = F.prepare(stem, make_probe("shapes"))
    short, full = F.capture(stem, x), F.capture(stem, x, full=True)
    for key in ("conv2d_1", "activation_1"):
        torch.testing.assert_close(short[key], full[key])


def test_probes_are_deterministic_and_distinct():
    images = {p: make_probe(p) for p in PROBES}
    for p, img in images.items():
        assert img.shape == (299, 299, 3) and img.dtype == np.uint8
        assert np.array_equal(img, make_probe(p)), p
    assert len({img.tobytes() for img in images.values()}) == len(PROBES)
    rainbow = images["rainbow"]
    assert tuple(rainbow[0, 0]) == (255, 0, 0) and rainbow[:, 100].std(0).max() == 0  # hue varies along x only


def test_taxonomy_labels_colour_and_edges():
    opponent = np.zeros((3, 3, 3))
    opponent[0], opponent[1] = 1.0, -1.0  # red excites, green inhibits, uniform in space
    assert F.describe_filter(opponent)["category"] == "colour"
    ramp = np.tile(np.array([-1.0, 0.0, 1.0]), (3, 3, 1))  # every channel: dark left, bright right
    d = F.describe_filter(ramp)
    assert d["category"] == "edge" and d["orientation_deg"] == 0.0 and d["colour_energy"] < 1e-12
    assert F.describe_filter(ramp.transpose(0, 2, 1))["orientation_deg"] == 90.0  # top to bottom
    diag = F.describe_filter(np.tile(np.add.outer([-1.0, 0, 1], [-1.0, 0, 1]), (3, 1, 1)))
    assert diag["category"] == "edge" and diag["orientation_deg"] == 45.0
    assert F.describe_filter(np.ones((3, 3, 3)))["category"] == "low-frequency"
    assert F.describe_filter(-np.ones((3, 3, 3)))["luminance_dc"] < 0  # a negative-photo filter


def test_opposite_sign_partners():
    w = torch.randn(32, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    w[7] = -w[3]
    info = F.describe_filters(w)
    assert info[3]["partner"] == 7 and info[7]["partner"] == 3 and info[3]["partner_cosine"] == -1.0
    assert len(info) == 32 and all("category" in f for f in info)


def test_keras_h5_mapping(tmp_path):
    h5py = pytest.importorskip("h5py")
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 32)).astype(np.float32)  # HWIO
    beta, mean, var = (np.linspace(a, a + 1, 32, dtype=np.float32) for a in (0.1, 0.2, 1.0))
    path = tmp_path / "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"input_1", b"conv2d_1", b"batch_normalization_1", b"activation_1"]
        bn = {"beta:0": beta, "moving_mean:0": mean, "moving_variance:0": var}
        for layer, ws in (("conv2d_1", {"kernel:0": kernel}), ("batch_normalization_1", bn)):
            g = f.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/{k}".encode() for k in ws]
            for k, v in ws.items():
                g.create_dataset(f"{layer}/{k}", data=v)
    stem = F.load_inception(str(path))
    assert "Keras" in stem.title and not stem.random
    torch.testing.assert_close(stem.weight[5, 2], torch.from_numpy(kernel[:, :, 2, 5]))  # OIHW[o, i] = HWIO[..., i, o]
    norm = stem.block.bn
    assert torch.equal(norm.weight, torch.ones(32)) and torch.equal(norm.bias, torch.from_numpy(beta))
    assert torch.equal(norm.running_var, torch.from_numpy(var))


def test_imagenet_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    result = runner.invoke(app, ["filters", "--weights", "imagenet", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    msg = result.stderr.strip()
    assert len(msg.splitlines()) == 1 and str(tmp_path / "hub" / "checkpoints") in msg and "--weights PATH" in msg


def _save(img, path, **kw):
    img.save(path, **kw)
    return path


@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (lambda p: _save(Image.new("L", (40, 30), 200), p / "g.png"), (30, 40, (200, 200, 200))),
        (lambda p: _save(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), p / "a.png"), (30, 40, (255, 255, 255))),
        (lambda p: _save(Image.new("RGB", (40, 30), (0, 0, 255)).convert("P"), p / "p.png"), (30, 40, (0, 0, 255))),
        (lambda p: _save(Image.new("I;16", (40, 30), 65535), p / "w16.png"), (30, 40, (255, 255, 255))),
        (lambda p: _save(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), p / "c.jpg"), (30, 40, None)),
        (
            lambda p: _save(
                Image.new("RGB", (40, 30), (0, 255, 0)),
                p / "anim.gif",
                save_all=True,
                append_images=[Image.new("RGB", (40, 30), (255, 0, 0))],
            ),
            (30, 40, (0, 255, 0)),
        ),  # fmt: skip
    ],
)
def test_image_conversions(tmp_path, make, expect):
    rgb = F.load_image(make(tmp_path))
    h, w, colour = expect
    assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    if colour:
        assert tuple(int(v) for v in rgb[5, 5]) == colour


def test_cmyk_red_is_red(tmp_path):
    rgb = F.load_image(_save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "c.tif"))
    assert rgb[0, 0, 0] > 200 and rgb[0, 0, 1] < 60


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.jpg", "--weights", "random"], "missing.jpg: no such image file"),
        (lambda p: (p / "dir").mkdir(), ["dir", "--weights", "random"], "is a folder, not an image"),
        (lambda p: (p / "zero.png").write_bytes(b""), ["zero.png", "--weights", "random"], "not a readable image"),
        (
            lambda p: (p / "t.png").write_bytes(_png_bytes()[:60]),
            ["t.png", "--weights", "random"],
            "not a readable image",
        ),
        (None, ["--probe", "zebra", "--weights", "random"], "--probe 'zebra': unknown"),
        (None, ["--normalize", "max", "--weights", "random"], "--normalize 'max'"),
        (None, ["--weights", "nope.pth"], "--weights 'nope.pth'"),
        (lambda p: (p / "w.pth").write_text("x"), ["--weights", "w.pth"], "not a PyTorch checkpoint"),
    ],
)
def test_bad_inputs_exit_2(setup, args, message, in_tmp):
    if setup:
        setup(in_tmp)
    result = runner.invoke(app, ["filters", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def _png_bytes():
    import io

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_all_probes_end_to_end(in_tmp):
    result = runner.invoke(app, ["filters", "--weights", "random", "--probe", "all", "--out", "o",
                                 "--tensorboard", "tb"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = in_tmp / "o"
    expected = {"filters.png", "filters_rgb.png", "tuning_hue.png", "tuning_orientation.png", "summary.json"}
    expected |= {f"{p}_{kind}.png" for p in PROBES for kind in ("input", "conv2d_1", "activation_1", "overview")}
    assert {p.name for p in out.iterdir()} == expected
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is True and "random weights" in summary["title"]
    assert len(summary["filters"]) == 32 and all(f["category"] in {"colour", "edge", "colour-edge", "low-frequency",
                                                                    "other"} for f in summary["filters"])  # fmt: skip
    assert set(summary["images"]) == set(PROBES) and len(summary["images"]["rainbow"]["mean_activation"]) == 32
    with Image.open(out / "rainbow_input.png") as im:
        assert im.size == (299, 299)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(in_tmp / "tb" / "filters" / "o"), size_guidance={"images": 0})  # LOGDIR/filters/<out>
    acc.Reload()
    assert {"filters", "tuning_hue", "rainbow_overview"} <= set(acc.Tags()["images"])


@pytest.mark.slow
def test_photo_and_default_probes(in_tmp):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)).save("photo.jpg")
    result = runner.invoke(app, ["filters", "photo.jpg", "--weights", "random"])
    assert result.exit_code == 0, result.output
    out = in_tmp / "filters_out"
    assert (out / "photo_overview.png").is_file() and not (out / "rainbow_input.png").exists()
    with Image.open(out / "photo_input.png") as im:
        assert im.size == (299, 299)  # resized to 342 and centre-cropped
    result = runner.invoke(app, ["filters", "--weights", "random", "--out", "d"])
    assert result.exit_code == 0 and {"rainbow_input.png", "shapes_input.png"} <= {
        p.name for p in (in_tmp / "d").iterdir()
    }


@pytest.mark.slow
def test_checkpoint_first_layer(synth_dir, trained, in_tmp):
    run = trained.run_dir
    result = runner.invoke(app, ["filters", "--model", str(run), "--data-dir", str(synth_dir), "--out", "m"])
    assert result.exit_code == 0, result.output
    summary = json.loads((in_tmp / "m" / "summary.json").read_text())
    assert len(summary["filters"]) == 32 and all(f["colour_energy"] == 0 for f in summary["filters"])
    assert len(summary["images"]) == 4
    names = {p.name for p in (in_tmp / "m").iterdir()}
    assert "filters.png" in names and "tuning_orientation.png" in names and "filters_rgb.png" not in names
