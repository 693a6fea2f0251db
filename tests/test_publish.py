"""`zoo publish`: a tiny real training run published end to end, each check failing for real, and the push."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from synth_data import make_idx_dataset, make_image_folder

import zoo
from zoo import data, evaluation
from zoo.cli import main as cli
from zoo.errors import PublishError
from zoo.pretrained import cache, files
from zoo.pretrained.files import WeightsMetadata
from zoo.publish import publish
from zoo.utils import scores


def _train(args: list[str]) -> None:
    assert cli(["train", *args]) == 0


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch mnist_cnn run on synthetic IDX files: (run folder, data folder)."""
    root = tmp_path_factory.mktemp("publish-mnist")
    data = make_idx_dataset(root / "data", n_train=400, n_test=100)
    run = root / "run"
    _train(["mnist_cnn", "--dataset", "mnist", "--data-dir", str(data), "--epochs", "2", "--output", str(run)])
    return run, data


@pytest.fixture(scope="module")
def resnet18_run(tmp_path_factory) -> tuple[Path, Path]:
    """resnet18 with torchvision's own layout (ImageNet stem), one epoch on a small image folder."""
    root = tmp_path_factory.mktemp("publish-resnet18")
    folder = root / "photos"
    make_image_folder(folder, per_class=8, size=40)
    run = root / "run"
    _train(["resnet18", "--dataset", f"imagefolder:{folder}", "--val-split", "0.25", "--epochs", "1",
            "--output", str(run), "--set", "batch_size=8", "--set", "workers=0"])  # fmt: skip
    return run, folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_publish_writes_a_checked_hub_folder(mnist_run, weights_env, tmp_path):
    run, data_dir = mnist_run
    out = tmp_path / "hub" / "mnist_cnn.synth"
    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(out), "--bundle"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "confusion.png", "curves.png", "eval.json", "model.safetensors",
    ]  # fmt: skip
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "staging folder left behind"

    # The file holds exactly the run's best weights, and says what it is.
    best = files.load_file(run / "best.safetensors")
    published = files.load_file(out / "model.safetensors")
    assert best.keys() == published.keys() and all(torch.equal(best[k], published[k]) for k in best)
    meta = files.read_metadata(out / "model.safetensors")
    assert meta["zoo.architecture"] == "mnist_cnn" and meta["zoo.tag"] == "synth" and meta["zoo.num_classes"] == "10"

    # An independent evaluation of the published weights equals the card, config and manifest numbers.
    model = zoo.create_model("mnist_cnn.synth", pretrained=True)
    _, test_set, _ = data.create_datasets("mnist", str(data_dir), splits=("val",))
    fresh = evaluation.evaluate(model, test_set)
    card = (out / "README.md").read_text()
    _check_front_matter(out / "README.md", fresh)
    assert f"| top-1 | {scores.score_text(fresh['acc1'], fresh['count'])} |" in card  # with its images
    assert "zoo train mnist_cnn --dataset mnist" in card and "![training curves](curves.png)" in card
    assert json.loads((out / "eval.json").read_text())["acc1"] == pytest.approx(fresh["acc1"])

    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "mnist_cnn" and config["num_classes"] == 10
    assert config["num_features"] == 64  # timm >= 1.0: the channels of layer2's map, not the 3136 flattened
    assert config["label_names"] == [str(i) for i in range(10)]
    assert config["pretrained_cfg"]["input_size"] == [1, 28, 28]
    assert config["pretrained_cfg"]["mean"] == list(model.pretrained_cfg["mean"])

    entry = weights_env.manifest()["weights"]["mnist_cnn.synth"]
    assert entry["status"] == "published" and entry["source"] == {
        "type": "bundled",
        "path": "mnist_cnn.synth.safetensors",
    }
    assert entry["sha256"] == cache.sha256_file(out / "model.safetensors")
    assert entry["metrics"]["top1"] == round(fresh["acc1"], 2) and entry["metrics"]["images"] == fresh["count"]
    assert entry["metrics"]["command"].startswith("zoo eval mnist_cnn.synth --pretrained --dataset mnist")
    assert entry["origin"]["command"].startswith("zoo train mnist_cnn")
    assert model.pretrained_cfg["label_names"] == tuple(str(i) for i in range(10))


def _check_front_matter(readme: Path, fresh: dict) -> None:
    """The card's YAML parses back, as the Hub reads it, with the fresh evaluation's accuracies."""
    import yaml
    from huggingface_hub import ModelCard

    data = ModelCard.load(readme).data
    assert (data.license, data.library_name, data.pipeline_tag) == ("bsd-3-clause", "zoo", "image-classification")
    assert data.datasets == ["ylecun/mnist"] and "safetensors" in data.tags
    top1, top5 = data.eval_results
    for result, key, label in ((top1, "acc1", "top-1 accuracy"), (top5, "acc5", "top-5 accuracy")):
        assert result.metric_name == label and result.metric_type == "accuracy"
        assert result.metric_value == pytest.approx(fresh[key], abs=0.005)
        assert (result.task_type, result.dataset_type, result.dataset_split) == ("image-classification", "ylecun/mnist",
                                                                                 "test")  # fmt: skip
    front = yaml.safe_load(readme.read_text().split("---")[1])  # plain YAML, without huggingface_hub
    assert front["model-index"][0]["name"] == "mnist_cnn.synth"
    assert front["model-index"][0]["results"][0]["metrics"][0]["value"] == pytest.approx(fresh["acc1"], abs=0.005)


def test_publishing_over_an_existing_folder_needs_force(mnist_run, weights_env, tmp_path, capsys):
    run, _ = mnist_run
    out = tmp_path / "out"
    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(out)]) == 0
    first = _snapshot(out)
    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--force" in err
    assert _snapshot(out) == first
    assert "mnist_cnn.synth" not in weights_env.manifest()["weights"]

    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(out), "--force"]) == 0
    assert (out / "model.safetensors").is_file() and not list(tmp_path.glob(".mnist_cnn.synth.*"))
    assert "mnist_cnn.synth" not in weights_env.manifest()["weights"]  # the installed manifest only when asked
    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(out), "--force", "--manifest"]) == 0
    assert weights_env.manifest()["weights"]["mnist_cnn.synth"]["status"] == "unpublished"  # not pushed, not bundled


def test_force_never_replaces_a_folder_zoo_did_not_publish(mnist_run, weights_env, tmp_path, capsys):
    run, _ = mnist_run
    data = tmp_path / "data"
    data.mkdir()
    (data / "train-images-idx3-ubyte").write_bytes(b"\x00" * 64)
    bundled = weights_env.dir  # weights/: the manifest and every bundled file
    for out in (data, bundled):
        before = _snapshot(out)
        assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(out), "--force"]) == 2
        assert str(out) in capsys.readouterr().err
        assert _snapshot(out) == before
    assert "mnist_cnn.synth" not in weights_env.manifest()["weights"]


def test_publishing_under_a_name_the_manifest_has_needs_force_and_never_replaces_a_users_file(
    mnist_run, weights_env, tmp_path, capsys
):
    """The weights of a name in the manifest are what `pretrained=True` loads: replaced only with --force. A
    file in weights/ that the manifest does not list as the name's bundled file is the user's: never replaced."""
    run, _ = mnist_run
    assert cli(["publish", str(run), "--name", "mnist_cnn.kept", "--out", str(tmp_path / "a"), "--bundle"]) == 0
    before = _snapshot(weights_env.dir)
    assert cli(["publish", str(run), "--name", "mnist_cnn.kept", "--out", str(tmp_path / "b"), "--bundle"]) == 2
    err = capsys.readouterr().err
    assert "'mnist_cnn.kept'" in err and "--force" in err
    assert _snapshot(weights_env.dir) == before and not (tmp_path / "b").exists()
    assert (
        cli(["publish", str(run), "--name", "mnist_cnn.kept", "--out", str(tmp_path / "b"), "--bundle", "--force"]) == 0
    )
    users = weights_env.dir / "mnist_cnn.mine.safetensors"
    users.write_bytes(b"the user's own weights")
    for extra in ([], ["--force"]):
        assert (
            cli(["publish", str(run), "--name", "mnist_cnn.mine", "--out", str(tmp_path / "c"), "--bundle", *extra])
            == 2
        )
        assert str(users) in capsys.readouterr().err
        assert (
            users.read_bytes() == b"the user's own weights"
            and "mnist_cnn.mine" not in weights_env.manifest()["weights"]
        )


def test_a_killed_publish_leaves_no_staging_folder_for_good(mnist_run, weights_env, tmp_path):
    run, _ = mnist_run
    stale = tmp_path / ".mnist_cnn.synth.staging-999999999-abc"  # no such process
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    live = tmp_path / f".mnist_cnn.synth.staging-{os.getpid()}-abc"  # a publish still running
    live.mkdir()
    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(tmp_path / "out")]) == 0
    assert not stale.exists() and live.is_dir()


def test_a_name_too_long_for_a_file_name_is_refused_before_writing(mnist_run, weights_env, tmp_path, capsys):
    run, _ = mnist_run
    name = "mnist_cnn." + "x" * 240
    assert cli(["publish", str(run), "--name", name, "--out", str(tmp_path / "out"), "--bundle"]) == 2
    assert repr(name) in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and name not in weights_env.manifest()["weights"]


def test_new_weights_do_not_take_the_default_from_published_ones(mnist_run, weights_env, tmp_path):
    run, _ = mnist_run
    weights = lambda: weights_env.manifest()["weights"]  # noqa: E731
    is_default = lambda name: weights()[name].get("default", False)  # noqa: E731  (false is not written)
    assert cli(["publish", str(run), "--name", "mnist_cnn.first", "--out", str(tmp_path / "a"), "--manifest"]) == 0
    assert is_default("mnist_cnn.first")  # the arch had no weights: these become its default
    assert cli(["publish", str(run), "--name", "mnist_cnn.second", "--out", str(tmp_path / "b"), "--manifest"]) == 0
    assert is_default("mnist_cnn.first") and not is_default("mnist_cnn.second")
    assert (
        cli(["publish", str(run), "--name", "mnist_cnn.first", "--out", str(tmp_path / "a"), "--force", "--manifest"])
        == 0
    )
    assert is_default("mnist_cnn.first")  # republishing the default keeps it the default
    assert (
        cli(["publish", str(run), "--name", "mnist_cnn.third", "--out", str(tmp_path / "c"), "--default", "--manifest"])
        == 0
    )
    assert [n for n in weights() if is_default(n)] == ["mnist_cnn.third"]  # asked for: it moves
    assert (
        cli(
            [
                "publish",
                str(run),
                "--name",
                "mnist_cnn.fourth",
                "--out",
                str(tmp_path / "d"),
                "--no-default",
                "--manifest",
            ]
        )
        == 0
    )
    assert not is_default("mnist_cnn.fourth")


def test_failed_evaluation_check_writes_nothing(mnist_run, weights_env, tmp_path, capsys):
    from safetensors.torch import save_file

    run, _ = mnist_run
    # Weights whose accuracy is not the one recorded in their metadata: the fresh evaluation must catch it.
    state = files.load_file(run / "best.safetensors")
    state["fc.weight"] = torch.zeros_like(state["fc.weight"])
    bad = tmp_path / "bad.safetensors"
    save_file(state, bad, metadata=WeightsMetadata(metric=99.5).to_header())
    manifest_before = (weights_env.dir / "manifest.json").read_bytes()
    out = tmp_path / "hub" / "x"
    code = cli(
        ["publish", str(run), "--name", "mnist_cnn.bad", "--out", str(out), "--checkpoint", str(bad), "--bundle"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "fresh evaluation" in err and "99.50" in err and "0.10" in err
    )  # the check, the recorded top-1, the tolerance
    assert not out.exists() and not list((tmp_path / "hub").iterdir())
    assert (weights_env.dir / "manifest.json").read_bytes() == manifest_before
    assert not (weights_env.dir / "mnist_cnn.bad.safetensors").exists()


def test_bad_inputs_are_clear_and_write_nothing(mnist_run, weights_env, tmp_path, capsys):
    run, _ = mnist_run
    empty = tmp_path / "empty-run"
    shutil.copytree(run, empty, ignore=shutil.ignore_patterns("*.safetensors"))
    damaged = Path(shutil.copytree(run, tmp_path / "damaged-run"))
    config = json.loads((damaged / "config.json").read_text())
    (damaged / "config.json").write_text(json.dumps({**config, "model_args": [1, 2]}))
    cases = [
        ([str(tmp_path / "nope"), "--name", "mnist_cnn.x"], [str(tmp_path / "nope")]),
        ([str(empty), "--name", "mnist_cnn.x"], [str(empty / "best.safetensors")]),
        ([str(run), "--name", "mnist_cnn"], ["'mnist_cnn'"]),
        ([str(run), "--name", "resnet20.x"], ["'mnist_cnn'", "'resnet20'"]),
        ([str(run), "--name", "nosuch.x"], ["'nosuch'"]),
        ([str(damaged), "--name", "mnist_cnn.x"], [str(damaged / "config.json"), "model_args=[1, 2]"]),
    ]
    for args, named in cases:
        assert cli(["publish", *args, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("zoo publish: error: ") and all(n in err for n in named), (named, err)
    assert not (tmp_path / "out").exists()
    assert weights_env.manifest()["weights"] == {}


class RecordingHfApi:
    """Stands in for huggingface_hub.HfApi at the network boundary; records what would be sent."""

    def __init__(self, existing: set[str] | None = None):
        self.existing = existing or set()
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))

    def file_exists(self, repo_id, filename, **kw):
        self.calls.append(("file_exists", {"repo_id": repo_id, "filename": filename}))
        return filename in self.existing

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        self.uploaded = _snapshot(Path(kw["folder_path"]))

        class Commit:
            commit_url = f"https://huggingface.co/{kw['repo_id']}/commit/abc123"

        return Commit()


def test_push_uploads_the_checked_folder(mnist_run, weights_env, tmp_path):
    run, _ = mnist_run
    api = RecordingHfApi()
    out = tmp_path / "pushed"
    result = publish(
        run, "mnist_cnn.synth", out, repo_id="me/mnist_cnn.synth", push=True, api=api, update_manifest=True
    )
    assert [c[0] for c in api.calls] == ["create_repo", "file_exists", "upload_folder"]
    assert api.calls[2][1]["repo_id"] == "me/mnist_cnn.synth"
    assert api.uploaded == _snapshot(out)
    assert result.commit_url == "https://huggingface.co/me/mnist_cnn.synth/commit/abc123"
    entry = weights_env.manifest()["weights"]["mnist_cnn.synth"]
    assert entry["status"] == "published"
    assert entry["source"] == {"type": "hub", "repo_id": "me/mnist_cnn.synth", "filename": "model.safetensors",
                               "revision": "main"}  # fmt: skip


def test_push_over_an_existing_revision_needs_force(mnist_run, weights_env, tmp_path):
    run, _ = mnist_run
    api = RecordingHfApi(existing={"model.safetensors"})
    with pytest.raises(PublishError) as e:
        publish(run, "mnist_cnn.synth", tmp_path / "o", repo_id="me/m", push=True, api=api)
    assert "me/m" in str(e.value)
    assert "upload_folder" not in [c[0] for c in api.calls]
    assert not (tmp_path / "o").exists() and weights_env.manifest()["weights"] == {}
    publish(run, "mnist_cnn.synth", tmp_path / "o", repo_id="me/m", push=True, api=api, force=True)
    assert api.calls[-1][0] == "upload_folder"


def test_dry_run_writes_nothing(mnist_run, weights_env, tmp_path, capsys):
    run, _ = mnist_run
    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(tmp_path / "o"), "--dry-run",
                "--push", "--repo-id", "me/m"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    written = out[out.index("dry run") :]
    assert all(name in written for name in ("README.md", "config.json", "model.safetensors", "me/m")), written
    assert "manifest.json" not in written  # the installed package's files only when asked
    assert cli(["publish", str(run), "--name", "mnist_cnn.synth", "--out", str(tmp_path / "o"), "--dry-run",
                "--bundle"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    listed = {Path(line.strip()) for line in out[out.index("dry run") :].splitlines()[1:]}
    assert {weights_env.dir / "manifest.json", weights_env.dir / "mnist_cnn.synth.safetensors"} <= listed
    assert tmp_path / "o" / "model.safetensors" in listed
    assert not (tmp_path / "o").exists() and weights_env.manifest()["weights"] == {}
    assert not (weights_env.dir / "mnist_cnn.synth.safetensors").exists()


@pytest.mark.slow
def test_torchvision_and_timm_load_a_published_resnet18(resnet18_run, weights_env, tmp_path):
    timm = pytest.importorskip("timm")
    torchvision = pytest.importorskip("torchvision")
    from safetensors.torch import load_file

    run, _ = resnet18_run
    out = tmp_path / "resnet18.photos"
    result = publish(run, "resnet18.photos", out, tolerance=0.1)
    tv_check = next(c for c in result.checks if c.name == "torchvision layout")
    assert tv_check.passed is True

    ours = zoo.create_model("resnet18", checkpoint_path=out / "model.safetensors").eval()
    x = torch.randn(2, 3, 32, 32)
    reference = torchvision.models.resnet18(num_classes=3)
    reference.load_state_dict(load_file(out / "model.safetensors"))
    from_timm = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(reference.eval()(x), ours(x))
        torch.testing.assert_close(from_timm(x), ours(x))
    assert from_timm.pretrained_cfg["label_names"] == ["cat", "dog", "fish"]
    assert "timm.create_model" in (out / "README.md").read_text()
