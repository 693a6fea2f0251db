"""Publishing: a finished training run's weights as a Hub-ready folder, written only once they pass the round trip,
torchvision and fresh-evaluation checks (docs/publishing.md)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import ManifestError, PublishError, ZooError
from zoo.evaluation import plot_confusion
from zoo.pretrained import manifest
from zoo.pretrained.files import WeightsMetadata, save_weights
from zoo.pretrained.manifest import Source, WeightsEntry, check_name
from zoo.publish.card import CONFIG_KEYS, model_card, timm_config
from zoo.publish.checks import Check, check_eval, check_round_trip, check_torchvision
from zoo.registry import is_model, split_model_name_tag
from zoo.runs import (
    CONFIG_JSON,
    PUBLISHED,
    RUN_JSON,
    RunConfig,
    RunRecord,
    images_called,
    json_of,
    load_model,
    read_config,
    read_run,
)
from zoo.training.loggers import read_metrics
from zoo.utils.files import atomic_path, check_output_folder, current_umask, fsync_dir, pid_alive


@dataclass
class PublishResult:
    """What ``publish`` produced."""

    name: str
    out_dir: Path | None
    sha256: str
    size: int
    metrics: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every path written (or, in a dry run, to be written)
    manifest_entry: WeightsEntry | None = None
    commit_url: str | None = None


def _load_run(run_dir: Path, checkpoint: Path | None) -> tuple[RunConfig, RunRecord, Path]:
    if not run_dir.is_dir():
        raise PublishError(f"run folder {run_dir} does not exist (give the --output folder of `zoo train`)")
    for name in (CONFIG_JSON, RUN_JSON):
        if not (run_dir / name).is_file():
            raise PublishError(f"{run_dir} has no {name}: it is not a finished `zoo train` run folder")
    config, run = read_config(run_dir), read_run(run_dir)
    ckpt = checkpoint or run_dir / config.weights
    if not ckpt.is_file():
        raise PublishError(
            f"no checkpoint to publish: {ckpt} does not exist (`zoo train` writes best.safetensors after its "
            "first finished epoch; pass --checkpoint FILE to publish another safetensors file)"
        )
    return config, run, ckpt


def _recorded_top1(ckpt: Path, run: RunRecord) -> float | None:
    """The top-1 the run recorded for these weights on the set publishing evaluates: its test top-1 at the kept epoch,
    else an image folder's held-out top-1, and None for an epoch kept for being the last."""
    meta = WeightsMetadata.read(ckpt)
    if meta.extra.get("zoo.test_acc1") is not None:
        return float(meta.extra["zoo.test_acc1"])
    if meta.extra.get("zoo.selected_by", "val_acc1") != "val_acc1":
        return None
    if meta.metric is not None:
        return meta.metric
    return run.best_metric if run.best_metric_name == "val_acc1" else None


def _check_out(out: Path, run_dir: Path) -> None:
    """``--out`` is replaced with ``--force``: it must not be the run, a folder holding it, or the working folder."""
    target, run, here = out.resolve(), run_dir.resolve(), Path.cwd().resolve()
    if target == run or run.is_relative_to(target):
        raise PublishError(
            f"--out {out} is the run folder {run_dir}" + ("" if target == run else " or a folder that holds it"),
            hint="give a new folder for the published files, e.g. hub/NAME; the run stays as it is",
        )
    if here.is_relative_to(target):
        raise PublishError(f"--out {out} holds the current folder {here}", hint="give a new folder, e.g. hub/NAME")


# What publish writes: a folder of these regular files alone, whose config.json and weights are zoo's, is one it
# published (and may replace with --force).
PUBLISHED_FILES = frozenset({PUBLISHED, "config.json", "README.md", "eval.json", "confusion.png", "curves.png"})


def is_published_folder(folder: Path) -> bool:
    """Whether ``folder`` is one zoo published, known by its content: its files are regular files named as publish
    writes them, its config.json is timm's config as publish writes it and its weights' header names the same model."""
    config = json_of(folder / "config.json", CONFIG_KEYS)
    try:
        files = all(e.name in PUBLISHED_FILES and e.is_file(follow_symlinks=False) for e in os.scandir(folder))
        meta = WeightsMetadata.read(folder / PUBLISHED) if config and files else None
    except (OSError, ValueError, ZooError):  # unreadable, not safetensors: nobody's publication
        return False
    return meta is not None and meta.tag is not None and config["architecture"] == meta.architecture


def _remove_stale_staging(parent: Path, name: str) -> None:
    """Staging folders of this name left by a killed ``zoo publish`` (its process is gone) are removed."""
    for stale in parent.glob(f".{name}.staging-*-*"):
        pid = stale.name[len(f".{name}.staging-") :].split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def _install(staging: Path, out_dir: Path) -> None:
    """Move the staged folder to ``out_dir``; an existing folder (--force) is swapped out, then removed."""
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    fsync_dir(out_dir.parent)  # the swap survives a power cut, as atomic_path's renames do
    shutil.rmtree(old, ignore_errors=True)


def _check_manifest_name(name: str, bundle: bool, force: bool) -> None:
    """Publishing under a name the manifest has replaces what ``pretrained=True`` loads for it: only with
    --force. A bundled file zoo did not record is a user's file, never replaced."""
    listed = manifest.load_manifest()["weights"].get(name)
    if listed is not None and not force:
        raise PublishError(
            f"the manifest already has weights {name!r}; publishing would replace them for every "
            "`pretrained=True` user: pass --force to replace them, or choose another --name"
        )
    target = manifest.weights_dir() / f"{name}.safetensors"
    ours = listed is not None and (listed.get("source") or {}).get("path") == target.name
    if bundle and (target.exists() or target.is_symlink()) and not ours:
        raise PublishError(
            f"{target} exists and the manifest does not list it as the bundled file of {name!r}: zoo does not "
            "replace a file it did not write; move it away or choose another --name"
        )


def publish(
    run_dir: str | os.PathLike[str],
    name: str,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    data_dir: str | None = None,
    repo_id: str | None = None,
    push: bool = False,
    dry_run: bool = False,
    force: bool = False,
    bundle: bool = False,
    update_manifest: bool = False,
    default: bool | None = None,
    license_id: str = "bsd-3-clause",
    tolerance: float = 0.1,
    batch_size: int = 1000,
    api: Any = None,
) -> PublishResult:
    """Check a run's weights and write them as a Hub-ready folder (``zoo publish``; ``api`` replaces huggingface_hub's
    ``HfApi``); only ``update_manifest`` (implied by ``bundle``) writes into the installed package's manifest;
    ``default`` None makes them the arch's default weights only if it has none."""
    arch, tag = split_model_name_tag(name)
    update_manifest = update_manifest or bundle  # a bundled file is one the manifest lists
    run_dir = Path(run_dir)
    try:
        check_name(name)  # 'arch.tag', and it becomes file and folder names: no '/', no '..'
    except ManifestError as e:
        raise PublishError(f"--name: {e.args[0]}", hint=f"e.g. '{arch}.mnist'") from None
    if not is_model(arch):
        raise PublishError(f"--name {name!r}: {arch!r} is not a registered model (`zoo list`)")
    if out_dir is None and not dry_run:
        raise PublishError("give --out FOLDER for the published files")
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        _check_out(out, run_dir)
        check_output_folder(out, "--out", "published folder", is_published_folder)
        if out.exists() and not force and not dry_run:
            raise PublishError(f"{out} exists; pass --force to replace it")
    if update_manifest:
        _check_manifest_name(name, bundle, force)
    if push and not repo_id:
        repo_id = f"{manifest.hub_org()}/{name}"
    config, run, ckpt = _load_run(run_dir, Path(checkpoint) if checkpoint else None)
    if config.architecture != arch:
        raise PublishError(f"{run_dir} trained {config.architecture!r}, not {arch!r} (from --name {name!r})")
    model = load_model(ckpt, arch, config).eval()
    model.pretrained_cfg = {**model.pretrained_cfg, "architecture": arch, "tag": tag, "num_classes": model.num_classes}
    recorded, original = _recorded_top1(ckpt, run), model.state_dict()
    parent = (out.parent if out is not None else Path(tempfile.gettempdir())).resolve()
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(parent, name)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-{os.getpid()}-", dir=parent))
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it 0700; the published folder is a plain one
        meta = WeightsMetadata(architecture=arch, tag=tag, num_classes=model.num_classes, model_args=config.model_args)
        saved = save_weights(model, staging / PUBLISHED, meta)
        checks = [check_round_trip(original, saved.path), check_torchvision(arch, model, saved.path)]
        if checks[0].passed:
            check, results, info = check_eval(saved.path, run, recorded, data_dir, tolerance, batch_size)
            checks.append(check)
        failed = [c for c in checks if c.passed is False]
        if failed:
            report = "\n".join(c.line() for c in checks)
            raise PublishError(f"{name} was not published: {', '.join(c.name for c in failed)} failed\n{report}")

        data_hint = shlex.quote(str(data_dir or run.data_dir or "DATA"))
        eval_command = f"zoo eval {name} --pretrained --dataset {run.dataset} --data-dir {data_hint}"
        eval_set = images_called(run, info.eval_split == "holdout", info.eval_set_name)
        metrics = {
            "top1": round(results["acc1"], 2),
            "top5": round(results["acc5"], 2),
            "images": results["count"],
            "top1_ci95": [round(v, 1) for v in results["acc1_ci95"]],
            "command": eval_command,
            "eval_set": eval_set,
        }
        if default is None:
            # Publishing new weights must not silently change what other users' pretrained=True loads.
            default = not any(e.default for t, e in manifest.entries_for_arch(arch).items() if t != tag)
        source = Source(type="hub", repo_id=repo_id or f"{{org}}/{name}", filename=PUBLISHED, revision="main")
        cfg, fresh = model.pretrained_cfg, "zoo publish (fresh evaluation of the exported file)"
        # The run's training time: the sum of its epochs' times in metrics.csv.
        per_epoch = {r["epoch"]: r["epoch_time"] for r in read_metrics(run_dir / "metrics.csv") if r.get("epoch_time")}
        entry = WeightsEntry(
            status="published" if bundle or push else "unpublished",
            default=default,
            source=Source(type="bundled", path=f"{name}.safetensors") if bundle else source,
            sha256=saved.sha256,
            size=saved.size,
            num_classes=model.num_classes,
            label_names=cfg.get("label_names") or None,
            **{k: cfg[k] for k in ("input_size", "mean", "std")},  # the entry makes them tuples
            interpolation=cfg.get("interpolation", "bilinear"),
            crop_pct=cfg.get("crop_pct", 1.0),
            model_args={k: v for k, v in run.model_args.items() if k not in ("num_classes", "in_chans")},
            dataset=info.name,
            metrics={**metrics, "measured_by": fresh},
            license=license_id,
            origin={
                "command": run.zoo_command or run.command or "",
                **({"resumed_with": run.resumed_with} if run.resumed_with else {}),
                **({"schedule_changes": run.schedule_changes} if run.schedule_changes else {}),
                "recipe": (run.recipe or {}).get("name", ""),
                "best_epoch": run.best_epoch,
                "epochs": run.epochs_done,
                "selection": run.selection or run.best_metric_name,  # how best_epoch was chosen: never by the test
                "train_seconds": round(sum(per_epoch.values()), 1) if per_epoch else None,
                "device": run.device,
                "precision": run.precision,
                "published_by": f"zoo publish {name}",
            },
        )  # a typed record: a bad entry fails here, before any file is written
        curves = run_dir / "curves.png"
        if curves.is_file():
            shutil.copyfile(curves, staging / "curves.png")
        title = f"{name} ({info.name}, {eval_set})"
        plot_confusion(results["confusion"], results["label_names"], staging / "confusion.png", title)
        (staging / "config.json").write_text(json.dumps(timm_config(model, arch, vars(config)), indent=2) + "\n")
        card = model_card(name, model, run, entry, results, checks, repo_id, curves.is_file())
        (staging / "README.md").write_text(card, encoding="utf-8")
        keep = ("acc1", "acc5", "loss", "count", "per_class_acc", "label_names", "confusion")
        (staging / "eval.json").write_text(json.dumps({k: results[k] for k in keep}, indent=1) + "\n", encoding="utf-8")
        files = [str(out / p.name) if out else p.name for p in sorted(staging.iterdir())]
        if update_manifest:  # the installed package's files, only when asked
            files += [str(manifest.manifest_path())] + [str(manifest.weights_dir() / f"{name}.safetensors")] * bundle
        result = PublishResult(name, None if dry_run else out, saved.sha256, saved.size, metrics, checks, files)
        if dry_run:
            return result
        if push:
            result.commit_url = _push(staging, repo_id, name, force, api)  # type: ignore[arg-type]
        assert out is not None
        _install(staging, out)
        if update_manifest:
            if bundle:
                with atomic_path(manifest.weights_dir() / f"{name}.safetensors") as tmp:
                    shutil.copyfile(out / PUBLISHED, tmp)
            result.manifest_entry = manifest.update_entry(name, entry)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _push(folder: Path, repo_id: str, name: str, force: bool, api: Any) -> str:
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(repo_id=repo_id, repo_type="model", exist_ok=True)
    if api.file_exists(repo_id=repo_id, filename=PUBLISHED) and not force:
        raise PublishError(f"{repo_id} already has a {PUBLISHED}; pass --force to publish a new revision over it")
    commit = api.upload_folder(
        repo_id=repo_id, repo_type="model", folder_path=str(folder), commit_message=f"zoo publish {name}"
    )
    return str(getattr(commit, "commit_url", commit))
