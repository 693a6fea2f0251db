"""``zoo convert``: torchvision, timm or pickle checkpoints -> a verified safetensors file (+ manifest entry).

zoo convert torchvision resnet50 --weights IMAGENET1K_V2 [--file resnet50-11ad3fa6.pth]
zoo convert timm resnet50.a1_in1k [--file model.safetensors]
zoo convert checkpoint my_run.pth --model mnist_cnn [--out my_run.safetensors]
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``zoo convert``."""
    from zoo.pretrained.convert import CONVERTIBLE

    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    tv = sub.add_parser("torchvision", help="torchvision's weights of a ResNet or VGG")
    tv.add_argument("model", help=f"zoo arch: {', '.join(CONVERTIBLE)}")
    tv.add_argument("--weights", default="IMAGENET1K_V1", help="torchvision weights name (default IMAGENET1K_V1)")
    tv.add_argument("--file", help="torchvision's .pth file, already downloaded (default: torch.hub downloads it)")
    tv.add_argument("--no-check-hash", action="store_true", help="convert a --file whose hash is not torchvision's")
    tm = sub.add_parser("timm", help="timm's weights of a ResNet or VGG, e.g. resnet50.a1_in1k")
    tm.add_argument("model", help="timm's arch.tag")
    tm.add_argument("--file", help="timm's weights file (.safetensors, or .pth) instead of downloading")
    ck = sub.add_parser("checkpoint", help="a torch.save checkpoint of a zoo model (e.g. from training)")
    ck.add_argument("file", help="the .pth/.pt/.bin file")
    ck.add_argument("--model", required=True, help="zoo arch the checkpoint belongs to")
    ck.add_argument("--num-classes", type=int, help="the checkpoint's number of classes")
    ck.add_argument("--in-chans", type=int, help="the checkpoint's input channels")
    ck.add_argument("--stem", choices=("imagenet", "cifar"), help="the checkpoint's stem")
    for p in (tv, tm, ck):
        p.add_argument("--out", help="where to write the .safetensors file")
    for p in (tv, tm):
        p.add_argument("--no-manifest", action="store_true", help="do not record the file in the manifest")
    tm.set_defaults(weights="IMAGENET1K_V1", no_check_hash=False)  # torchvision's options, unused by timm


def main(args: argparse.Namespace) -> int:
    """Run ``zoo convert``."""
    from zoo.pretrained import manifest
    from zoo.pretrained.cache import converted_path
    from zoo.pretrained.convert import convert_checkpoint, convert_upstream

    if args.source == "checkpoint":
        kwargs = {k: v for k in ("num_classes", "in_chans", "stem") if (v := getattr(args, k)) is not None}
        saved = convert_checkpoint(args.file, args.model, args.out, **kwargs)
        print(f"wrote {saved.path} ({saved.size:,} bytes, sha256 {saved.sha256})")
        print(f"load it with zoo.create_model({args.model!r}, checkpoint_path={str(saved.path)!r})")
        return 0
    weights = f" --weights {args.weights.split('.')[-1]}" if args.source == "torchvision" else ""
    record_as = None if args.no_manifest else f"zoo convert {args.source} {args.model}{weights}"
    options = {"file": args.file, "check_hash": not args.no_check_hash, "out": args.out, "record_as": record_as}
    name, saved = convert_upstream(args.source, args.model, weights=args.weights, **options)
    print(f"wrote {saved.path} ({saved.size:,} bytes, sha256 {saved.sha256})")
    if not args.no_manifest:
        entry = manifest.get_entry(*name.split(".", 1))
        if entry.third_party:
            print(f"recorded its SHA-256 in zoo's cache ({name} in the manifest describes upstream's files)")
        else:
            print(f"recorded {name} in {manifest.manifest_path()}")
        if saved.path != converted_path(name):
            print(f"to use it locally, place it at {converted_path(name)}, or load it with checkpoint_path=")
        else:
            print(f"zoo.create_model({name!r}, pretrained=True) now loads it")
    return 0
