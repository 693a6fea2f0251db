"""Training: recipes, the Python API, the CLI's run folder, resume after SIGKILL and Ctrl-C, NaN handling."""

from __future__ import annotations

import json
import math
import os
import re
import signal
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from synth_data import make_cifar, make_idx_dataset, make_image_folder, run_zoo
from torch.utils.data import Dataset

import zoo
from zoo.cli import main as cli_main
from zoo.errors import ArgumentValueError, RecipeError
from zoo.evaluation import evaluate
from zoo.training import TrainingDiverged, fit
from zoo.training.loggers import read_metrics
from zoo.training.recipes import Recipe, get_recipe
from zoo.training.reporting import selection_warning

COMPARED = ("epoch", "lr", "train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5", "test_loss", "test_acc1")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("mnist") / "MNIST" / "raw", n_train=320, n_test=80)


def train_args(data: Path, out: Path, *extra: str, epochs: int = 3) -> list[str]:
    return [
        "zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(data), "--recipe", "fast",
        "--epochs", str(epochs), "--batch-size", "32", "--output", str(out), *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------- recipes


def test_print_recipe_shows_resolved_values(capsys):
    assert cli_main(["train", "--recipe", "seed-mnist", "--print-recipe"]) == 0
    out = capsys.readouterr().out
    values = dict(line.split(None, 1) for line in out.splitlines() if line and not line.startswith("#"))
    # The course's Lab10-2 recipe: Adam 1e-3, batch 100, 15 epochs.
    assert (values["opt"], float(values["lr"]), values["batch_size"], values["epochs"]) == ("adam", 1e-3, "100", "15")
    assert values["sched"] == "none" and values["ema"] == "False"


def test_cli_options_override_the_recipe(capsys):
    argv = ["train", "--recipe", "seed-vgg-cifar", "--dataset", "cifar10", "--lr", "0.02", "--set", "ema=true",
            "--set", "min_lr=0", "--no-channels-last", "--print-recipe"]  # fmt: skip
    assert cli_main(argv) == 0
    values = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if not line.startswith("#"))
    assert float(values["lr"]) == 0.02 and values["ema"] == "True" and values["channels_last"] == "False"
    # Values the options did not touch stay the recipe's (Lab10-5: StepLR(5, 0.9), batch 512, 50 epochs).
    assert (values["sched"], float(values["decay_epochs"]), float(values["decay_rate"])) == ("step", 5.0, 0.9)
    assert (values["batch_size"], values["epochs"], values["opt"], float(values["momentum"])) == (
        "512", "50", "momentum", 0.9,
    )  # fmt: skip


def test_every_recipe_setting_has_an_option(capsys):
    import dataclasses

    from zoo.cli import build_parser
    from zoo.training.recipes import Recipe

    help_text = build_parser("train")[0].format_help()
    settings = [f.name for f in dataclasses.fields(Recipe) if f.name not in ("name", "description", "notes")]
    assert [n for n in settings if f"--{n.replace('_', '-')}" not in help_text] == []
    argv = ["train", "--print-recipe", "--mixup-prob", "0.25", "--no-filter-bias-and-bn", "--sched-on-updates",
            "--eval-model", "model", "--crop-pad", "3"]  # fmt: skip
    assert cli_main(argv) == 0
    values = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if not line.startswith("#"))
    assert (float(values["mixup_prob"]), values["filter_bias_and_bn"], values["sched_on_updates"]) == (
        0.25, "False", "True",
    )  # fmt: skip
    assert (values["eval_model"], values["crop_pad"]) == ("model", "3")


def test_recipes_fit_the_dataset():
    r = get_recipe("seed-resnet-cifar")
    assert (r.lr, r.momentum, r.weight_decay, r.decay_epochs, r.decay_rate, r.batch_size) == (
        0.1, 0.9, 5e-4, 10, 0.5, 256,
    )  # fmt: skip
    mnist, cifar, folder = (get_recipe("fast", d) for d in ("mnist", "cifar10", "imagefolder"))
    assert mnist.hflip == 0 and cifar.hflip > 0  # digits must not be mirrored
    assert not mnist.rand_augment and cifar.rand_augment.startswith("rand-")
    assert folder.mixup > 0 and mnist.mixup == 0
    assert all(r.ema and r.label_smoothing > 0 for r in (mnist, cifar, folder))


def test_a_small_folder_gets_a_recipe_scaled_to_it():
    from zoo.training.recipes import fit_recipe_to_data

    folder = get_recipe("fast", "imagefolder").replace(epochs=3)  # 30 epochs, batch 64, mixup: for big folders
    fitted = fit_recipe_to_data(folder, 210, explicit={"epochs"})
    assert fitted.batch_size == 16 and 210 // 16 >= 10  # ten steps an epoch or more
    assert fitted.warmup_epochs == pytest.approx(0.3) and not fitted.ema  # 42 steps: too few to average
    assert fitted.mixup == fitted.cutmix == 0.0
    assert len(fitted.notes) == 4  # one note a change: batch, warm-up, EMA, mixup/CutMix
    assert {"210", "14"} <= set(re.findall(r"\d+", fitted.notes[0]))  # 13 steps of 16 and one of 2, as the run steps
    assert {"15", "2"} <= set(re.findall(r"\d+", fit_recipe_to_data(folder, 15, explicit={"epochs"}).notes[0]))
    longer = fit_recipe_to_data(folder.replace(epochs=10), 210, explicit={"epochs"})
    assert longer.ema and longer.ema_decay == pytest.approx(1 - 5 / (14 * 10), abs=1e-4)  # a fifth of 140 steps
    kept = fit_recipe_to_data(folder, 210, explicit={"epochs", "batch_size", "mixup", "cutmix", "ema"})
    assert (kept.batch_size, kept.mixup, kept.cutmix, kept.ema, kept.ema_decay) == (64, 0.2, 1.0, True, 0.998)
    big = get_recipe("fast", "imagefolder")
    assert fit_recipe_to_data(big, 50_000) is big  # what the recipe was made for: unchanged


@pytest.mark.slow
def test_weights_that_score_about_chance_are_called_out(tmp_path):
    recipe = _small_recipe(epochs=1, lr=0.0, min_lr=0.0, warmup_lr=0.0, ema=False)  # nothing can be learned
    torch.manual_seed(0)
    result = fit(Tiny(), BrightDark(32, seed=0), BrightDark(32, seed=1), recipe, tmp_path / "run", progress=False)
    small, *chance = result.warnings  # 32 held-out images are too few to choose an epoch, said first
    assert [small] == selection_warning(BrightDark(32, seed=1))
    assert len(chance) == 1 and "50.0 %" in chance[0]  # chance for 2 classes
    assert json.loads((tmp_path / "run" / "run.json").read_text())["warnings"] == result.warnings
    recipe = _small_recipe(epochs=6, lr=0.2, ema=False)
    learned = fit(Tiny(), BrightDark(64, seed=0), BrightDark(32, seed=1), recipe, None, progress=False)
    assert learned.history[-1]["val_acc1"] > 62.5 and learned.warnings == selection_warning(BrightDark(32, seed=1))


def test_bad_recipe_input_is_a_clear_error(capsys):
    assert cli_main(["train", "--recipe", "slow", "--print-recipe"]) == 2
    assert "'slow'" in capsys.readouterr().err
    assert cli_main(["train", "--set", "lrr=1", "--print-recipe"]) == 2
    assert "lrr" in capsys.readouterr().err
    with pytest.raises(RecipeError) as e:
        get_recipe("fast", "mnist").replace(lrr=1)
    assert e.value.name == "lrr"


@pytest.mark.parametrize(
    "field, value", [("batch_size", "64"), ("batch_size", 0), ("epochs", 2.5), ("ema", 1), ("eval_model", "best"),
                     ("rand_augment", 5), ("lr", float("nan")), ("notes", "a note")],
)  # fmt: skip
def test_every_recipe_field_is_checked_for_its_type_and_range(field, value):
    with pytest.raises(RecipeError) as e:
        Recipe(**{field: value})
    assert e.value.name == field and e.value.value is value


# ------------------------------------------------------------------------------------------------ Python API


class BrightDark(Dataset):
    """A plain Dataset (not zoo's): 8x8 RGB images, class 1 bright, class 0 dark."""

    classes = ["dark", "bright"]

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 2
        self.images = torch.rand(n, 3, 8, 8, generator=g) * 0.5 + self.labels.view(-1, 1, 1, 1) * 0.5

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


@pytest.mark.slow
def test_fit_accepts_any_dataset(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("resnet20", num_classes=2)
    recipe = get_recipe("fast", "cifar10").replace(
        epochs=3, batch_size=16, workers=0, rand_augment="", crop_pad=0, lr=0.05, warmup_epochs=0, ema=False
    )
    val = BrightDark(32, seed=1)
    result = fit(model, BrightDark(64, seed=0), val, recipe, tmp_path / "run", progress=False)
    assert result.status == "finished" and result.epochs_done == 3
    assert result.last["val_acc1"] == 100.0
    for name in ("last.pt", "best.safetensors", "config.json", "run.json", "metrics.csv", "curves.png"):
        assert (tmp_path / "run" / name).is_file(), name
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["architecture"] == "resnet20" and config["label_names"] == ["dark", "bright"]
    # best.safetensors holds the weights that scored the best epoch's val accuracy.
    fresh = zoo.create_model("resnet20", num_classes=2)
    fresh.load_state_dict(load_file(tmp_path / "run" / "best.safetensors"))
    again = evaluate(fresh, val, batch_size=8)
    best_row = result.history[result.best_epoch - 1]
    assert again["acc1"] == best_row["val_acc1"] and again["loss"] == pytest.approx(best_row["val_loss"], rel=1e-5)


class Tiny(nn.Module):
    """A small classifier for the API tests: one convolution, pooling and a linear layer."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1))


def _small_recipe(**changes):
    base = get_recipe("fast", "cifar10").replace(batch_size=16, workers=0, rand_augment="", crop_pad=0, hflip=0.0)
    return base.replace(**changes)


def test_fit_leaves_the_model_with_the_weights_it_reports(tmp_path):
    train, val = BrightDark(64, seed=0), BrightDark(32, seed=1)
    recipe = _small_recipe(epochs=3, ema=True, ema_decay=0.9, lr=0.05)  # validated with the EMA weights
    for out in (tmp_path / "run", None):  # with a run folder, and with the best weights kept in memory only
        torch.manual_seed(0)
        model = Tiny()
        result = fit(model, train, val, recipe, out, progress=False)
        best = result.history[result.best_epoch - 1]
        again = evaluate(model, val, batch_size=8)
        assert again["acc1"] == best["val_acc1"] and again["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
        assert result.best_metric == best["val_acc1"] and result.best_metric_name == "val_acc1"
    saved = load_file(tmp_path / "run" / "best.safetensors")
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def _cpu_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return set()


@pytest.mark.parametrize("amp", [True, False])
def test_amp_on_the_cpu_is_bf16_where_the_cpu_has_it_and_evaluation_stays_float32(tmp_path, amp):
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("the CPU's features are read from /proc/cpuinfo")
    model = Tiny()
    seen = {True: set(), False: set()}  # dtypes of the convolution's output, in training and in evaluation
    model.conv.register_forward_hook(lambda m, i, o: seen[m.training].add(o.dtype))
    recipe = _small_recipe(epochs=1, ema=False, amp=amp)
    fit(model, BrightDark(32, seed=0), BrightDark(16, seed=1), recipe, tmp_path / "run", progress=False)
    trained_in = torch.bfloat16 if amp and native else torch.float32
    assert seen[True] == {trained_in} and seen[False] == {torch.float32}
    precision = json.loads((tmp_path / "run" / "run.json").read_text())["precision"]
    assert precision == ("bfloat16 autocast" if trained_in == torch.bfloat16 else "float32")


def test_resuming_with_more_epochs_recomputes_the_schedule(tmp_path):
    from timm.scheduler import create_scheduler_v2

    train, val = BrightDark(64, seed=0), BrightDark(16, seed=1)  # 4 steps per epoch
    recipe = _small_recipe(epochs=2, lr=0.05, min_lr=1e-4, warmup_epochs=0.5, warmup_lr=1e-3, ema=False)
    torch.manual_seed(0)
    fit(Tiny(), train, val, recipe, tmp_path / "run", progress=False)
    with pytest.warns(UserWarning):  # the schedule is recomputed for the new length
        result = fit(Tiny(), train, val, recipe.replace(epochs=4), tmp_path / "run", resume=tmp_path / "run",
                     progress=False)  # fmt: skip
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    # The mean rate of the steps of epochs 3 and 4 under timm's own cosine schedule for 4 epochs: the rate
    # before step k is the one after step_update(k - 1).
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=4, warmup_epochs=recipe.warmup_epochs,
                                   warmup_lr=recipe.warmup_lr, min_lr=recipe.min_lr, step_on_epochs=False,
                                   updates_per_epoch=4)  # fmt: skip
    rates = []
    for step in range(16):
        sched.step_update(num_updates=step)
        rates.append(opt.param_groups[0]["lr"])
    expected = [sum(rates[8:12]) / 4, sum(rates[12:16]) / 4]
    assert [r["lr"] for r in result.history[2:]] == pytest.approx(expected, rel=1e-9)
    assert result.history[2]["lr"] > 10 * recipe.min_lr  # not trained at min_lr
    changes = json.loads((tmp_path / "run" / "run.json").read_text())["schedule_changes"]
    assert [(c["from_epochs"], c["to_epochs"], c["at_epoch"], c["at_step"]) for c in changes] == [(2, 4, 2, 8)]


@pytest.mark.slow
def test_without_validation_the_last_epoch_is_kept(tmp_path, capsys):
    from zoo.pretrained.files import read_metadata

    make_image_folder(tmp_path / "photos", per_class=1, size=20)  # one image per class: nothing to hold out
    out = tmp_path / "run"
    argv = ["train", "resnet20", "--dataset", f"imagefolder:{tmp_path / 'photos'}", "--epochs", "3", "--batch-size",
            "3", "--workers", "0", "--mixup", "0", "--cutmix", "0", "--output", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    assert all(row["val_acc1"] is None for row in read_metrics(out / "metrics.csv"))
    run = json.loads((out / "run.json").read_text())
    assert run["val_images"] == 0 and run["best_metric_name"] == "last_epoch" and run["best_epoch"] == 3
    meta = read_metadata(out / "best.safetensors")
    assert "zoo.metric" not in meta and "metric" not in meta and meta["zoo.selected_by"] == "last_epoch"
    assert meta["zoo.epoch"] == "3"


class InfAfter(Dataset):
    """Finite images for the first ``good`` reads, then infinities (a data bug appearing mid-run)."""

    def __init__(self, base: Dataset, good: int):
        self.base, self.good, self.reads = base, good, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        x, y = self.base[i]
        return (x if self.reads <= self.good else torch.full_like(x, math.inf)), y


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("resnet20", num_classes=2)
    recipe = get_recipe("seed-mnist").replace(epochs=3, batch_size=16, workers=0)
    train = InfAfter(BrightDark(32, seed=0), good=32 + 8)  # epoch 1 clean, epoch 2 breaks in its first batch
    with pytest.raises(TrainingDiverged) as e:
        fit(model, train, BrightDark(16, seed=1), recipe, tmp_path / "run", progress=False)
    assert (
        "epoch 2" in str(e.value) and "batch 1 " in str(e.value) and str(tmp_path / "run" / "last.pt") in str(e.value)
    )
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["batch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len(read_metrics(tmp_path / "run" / "metrics.csv")) == 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"


def test_a_nan_loss_read_back_late_still_names_its_batch(tmp_path):
    """The trainer reads losses back from the device once per logging interval, not every step (which would
    stall a GPU): the error still names the first batch whose loss was not finite, and nothing is saved."""
    torch.manual_seed(0)
    model = zoo.create_model("resnet20", num_classes=2)
    recipe = get_recipe("seed-mnist").replace(epochs=2, batch_size=16, workers=0)
    # 40 steps an epoch, read back every 2: batch 8 is the second of the window holding batches 7 and 8
    train = InfAfter(BrightDark(640, seed=0), good=16 * 7 + 3)
    with pytest.raises(TrainingDiverged) as e:
        fit(model, train, None, recipe, tmp_path / "run", progress=False)
    assert "epoch 1" in str(e.value) and "batch 8 " in str(e.value) and "last.pt" not in str(e.value)
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "best.safetensors").exists()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"


def test_nan_from_the_cli_is_a_clear_error(mnist_dir, tmp_path, capsys):
    argv = train_args(mnist_dir, tmp_path / "run", "--recipe", "seed-mnist", "--lr", "1e30")
    assert cli_main(argv[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo train: error: ") and "1e+30" in err and "last.pt" not in err  # the lr; no checkpoint
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "diverged"


# ---------------------------------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def reference_run(mnist_dir, tmp_path_factory) -> Path:
    """An uninterrupted 3-epoch run, the yardstick for the resumed ones."""
    out = tmp_path_factory.mktemp("ref") / "run"
    res = run_zoo(*train_args(mnist_dir, out))
    assert res.returncode == 0, res.stderr
    (out.parent / "stdout.txt").write_text(res.stdout)
    (out.parent / "stderr.txt").write_text(res.stderr)
    return out


@pytest.mark.slow
def test_cli_run_folder(reference_run, mnist_dir):
    rows = read_metrics(reference_run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["test_acc1"] > 50  # learnable synthetic digits, far above 10 % chance
    run = json.loads((reference_run / "run.json").read_text())
    assert run["status"] == "finished" and run["dataset"] == "mnist" and run["train_images"] == 320
    assert "--recipe fast" in run["command"] and run["recipe"]["name"] == "fast"
    config = json.loads((reference_run / "config.json").read_text())
    assert config["architecture"] == "mnist_cnn" and config["model_args"] == {"num_classes": 10, "in_chans": 1}
    assert config["label_names"] == [str(i) for i in range(10)]
    assert config["pretrained_cfg"]["mean"] == [0.1307] and config["pretrained_cfg"]["input_size"] == [1, 28, 28]
    with Image.open(reference_run / "curves.png") as im:
        assert im.format == "PNG" and im.size[0] > 400
    # best.safetensors rebuilds into the architecture config.json names.
    model = zoo.create_model(config["architecture"], **config["model_args"])
    model.load_state_dict(load_file(reference_run / "best.safetensors"))


@pytest.mark.slow
def test_progress_bars_are_quiet_without_a_terminal(reference_run):
    stdout = (reference_run.parent / "stdout.txt").read_text()
    stderr = (reference_run.parent / "stderr.txt").read_text()
    assert "\r" not in stderr and "batch/s" not in stderr and "it/s" not in stderr
    assert "epoch 3/3" in stdout and "top-1" in stdout


@pytest.mark.slow
def test_refuses_to_overwrite_a_run(reference_run, mnist_dir, capsys):
    before = (reference_run / "last.pt").read_bytes()
    assert cli_main(train_args(mnist_dir, reference_run)[1:]) == 2
    assert str(reference_run) in capsys.readouterr().err
    assert (reference_run / "last.pt").read_bytes() == before


def _stop_env(signal_at: str) -> dict:
    """The run sends itself a signal right after that optimiser step (zoo.training.signals); 10 steps/epoch."""
    return {**os.environ, "ZOO_TRAIN_SIGNAL": signal_at}


def _assert_same_run(a: Path, b: Path) -> None:
    rows_a, rows_b = read_metrics(a / "metrics.csv"), read_metrics(b / "metrics.csv")
    assert [[r[k] for k in COMPARED] for r in rows_a] == [[r[k] for k in COMPARED] for r in rows_b]
    ca, cb = (torch.load(p / "last.pt", weights_only=True) for p in (a, b))
    for key in ("model", "ema"):
        assert ca[key].keys() == cb[key].keys()
        for name in ca[key]:
            assert torch.equal(ca[key][name], cb[key][name]), f"{key}.{name} differs"
    assert ca["best_metric"] == cb["best_metric"] and ca["global_step"] == cb["global_step"]
    best_a, best_b = load_file(a / "best.safetensors"), load_file(b / "best.safetensors")
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(reference_run, mnist_dir, tmp_path):
    out = tmp_path / "run"
    # A crash in the middle of epoch 2 (step 13 of 30), after epoch 1 was fully written.
    crashed = run_zoo(*train_args(mnist_dir, out), env=_stop_env("SIGKILL@13"))
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(read_metrics(out / "metrics.csv")) == 1
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["global_step"]) == (1, 0, 10)  # the last completed epoch boundary
    res = run_zoo(*train_args(mnist_dir, out, "--resume"))
    assert res.returncode == 0, res.stderr
    assert "resumed at epoch 2 batch 0" in res.stdout
    _assert_same_run(reference_run, out)


@pytest.mark.slow
def test_ctrl_c_saves_exits_cleanly_and_resumes_exactly(reference_run, mnist_dir, tmp_path):
    out = tmp_path / "run"
    stopped = run_zoo(*train_args(mnist_dir, out), env=_stop_env("SIGINT@13"))
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert f"interrupted: saved {out / 'last.pt'}" in stopped.stdout
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["global_step"]) == (1, 3, 13)  # saved right after that batch
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    res = run_zoo(*train_args(mnist_dir, out, "--resume"))
    assert res.returncode == 0, res.stderr
    assert "resumed at epoch 2 batch 3" in res.stdout
    _assert_same_run(reference_run, out)


def test_signal_hook_rejects_a_bad_value(monkeypatch):
    from zoo.training.signals import SignalHook

    for bad in ("SIGKILL", "NOPE@3", "SIGINT@x", "SIGINT@0"):
        with pytest.raises(ArgumentValueError) as e:
            SignalHook(bad)
        assert repr(bad) in str(e.value)  # the value refused
    assert SignalHook("").plan == []


# ------------------------------------------------------------------------------------------ other datasets


@pytest.mark.slow
def test_image_folder_training_fails_on_a_corrupt_file_or_skips_it_when_asked(tmp_path):
    make_image_folder(tmp_path / "photos", per_class=6, size=20)
    bad = tmp_path / "photos" / "dog" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not an image")
    spec = f"imagefolder:{tmp_path / 'photos'}"
    argv = ["zoo", "train", "resnet20", "--dataset", spec, "--val-split", "0.34", "--epochs", "1", "--batch-size", "4",
            "--workers", "1", "--output", str(tmp_path / "run")]  # fmt: skip
    res = run_zoo(*argv)
    assert res.returncode == 2 and str(bad) in res.stderr and "--skip-bad-images" in res.stderr
    assert not (tmp_path / "run" / "best.safetensors").exists()
    res = run_zoo(*argv, "--skip-bad-images")
    assert res.returncode == 0, res.stderr
    assert str(bad) in res.stderr
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["train_images"] == 12 and run["val_images"] == 6 and run["data"]["skipped_images"] == [str(bad)]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["label_names"] == ["cat", "dog", "fish"] and config["pretrained_cfg"]["input_size"] == [3, 32, 32]


@pytest.mark.slow
def test_cifar_training_and_a_model_that_does_not_fit(tmp_path, capsys):
    make_cifar(tmp_path, "cifar10", per_batch=8, n_test=16)
    res = run_zoo("zoo", "train", "resnet20", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1",
                  "--batch-size", "8", "--workers", "2", "--output", str(tmp_path / "run"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(read_metrics(tmp_path / "run" / "metrics.csv")) == 1
    argv = ["train", "mnist_cnn", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--output", str(tmp_path / "x")]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "mnist_cnn" in err and "(3, 32, 32)" in err


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.realdata
def test_short_training_on_real_mnist(shared_data, tmp_path):
    out = tmp_path / "run"
    res = run_zoo("zoo", "train", "mnist_cnn", "--dataset", "mnist", "--data-dir", str(shared_data), "--epochs", "1",
                  "--train-subset", "4000", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["train_images"] == 4000 and run["val_images"] == 0 and run["test_images"] == 10000
    assert read_metrics(out / "metrics.csv")[0]["test_acc1"] > 85  # 31 steps on real digits; chance is 10 %
