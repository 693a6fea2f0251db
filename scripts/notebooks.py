"""The six labs as Jupyter notebooks: ``docs/tutorials/lab10-N-*.ipynb``, written and run from the cells below.

    python scripts/notebooks.py            # write every notebook and run it, storing its outputs
    python scripts/notebooks.py --check    # fail when a committed notebook's cells differ from the ones here

The notebooks follow the course's order (PyTorch basics part 3, CNN: Lab10-1 ... Lab10-6) and its examples.
They find the data sets in ``ZOO_DATA`` (default ``data/``, where ``download=True`` puts them); with
``ZOO_NOTEBOOK_QUICK=1`` every training and evaluation runs on a few hundred images, which is how the tests
run them. The stored outputs come from the default settings, run here on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "docs" / "tutorials"

SETUP = """import os
from pathlib import Path

import torch

import zoo

# Where MNIST/, FashionMNIST/ and CIFAR10/ are (download=True below fetches what is missing, as torchvision does).
DATA = Path(os.environ.get("ZOO_DATA", "data"))
# QUICK: a few hundred images for a look in seconds (the tests run the notebooks this way).
QUICK = os.environ.get("ZOO_NOTEBOOK_QUICK") == "1"
_ = torch.manual_seed(0)"""


def lab10_1() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-1: convolution and pooling output sizes\n\n"
            "How big is a feature map after a convolution or a pooling layer? For one side of the map, with input "
            "size `n`, kernel `k`, padding `p` and stride `s`:\n\n"
            "    out = floor((n - k + 2p) / s) + 1\n\n"
            "This notebook checks the rule against PyTorch on the course's examples, then shows zoo's layer table, "
            "which does the same for every layer of a model.",
        ),
        (
            "code",
            "import torch\nimport torch.nn as nn\n\n\n"
            "def out_size(n: int, k: int, p: int = 0, s: int = 1) -> int:\n"
            "    return (n - k + 2 * p) // s + 1",
        ),
        (
            "md",
            "The course's first example: a 227 x 227 image, an 11 x 11 kernel, stride 4 and no padding (AlexNet's "
            "first layer).",
        ),
        (
            "code",
            "conv = nn.Conv2d(1, 1, kernel_size=11, stride=4, padding=0)\n"
            "x = torch.randn(1, 1, 227, 227)\n"
            "print(conv(x).shape, out_size(227, 11, 0, 4))",
        ),
        ("md", "The exercises: each line is (input height, input width), kernel, stride, padding."),
        (
            "code",
            "examples = [((64, 64), 7, 2, 0), ((32, 32), 5, 1, 2), ((32, 64), 5, 1, 0), ((64, 32), 3, 1, 1)]\n"
            "for (h, w), k, s, p in examples:\n"
            "    y = nn.Conv2d(1, 1, kernel_size=k, stride=s, padding=p)(torch.randn(1, 1, h, w))\n"
            '    print(f"{h} x {w}, kernel {k}, stride {s}, padding {p} -> {tuple(y.shape[2:])} "\n'
            '          f"(formula: {out_size(h, k, p, s)} x {out_size(w, k, p, s)})")',
        ),
        (
            "md",
            "The lab's MNIST CNN, layer by layer: two 3 x 3 convolutions with padding 1 keep the side, and each "
            "2 x 2 max-pool halves it (28 -> 14 -> 7).",
        ),
        (
            "code",
            "x = torch.randn(1, 1, 28, 28)\n"
            "layers = [nn.Conv2d(1, 32, 3, stride=1, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
            "          nn.Conv2d(32, 64, 3, stride=1, padding=1), nn.ReLU(), nn.MaxPool2d(2)]\n"
            "print(tuple(x.shape))\n"
            "for layer in layers:\n"
            "    x = layer(x)\n"
            '    print(f"{type(layer).__name__:<10} -> {tuple(x.shape)}")\n'
            "x = x.view(x.size(0), -1)\n"
            'print(f"flattened  -> {tuple(x.shape)}")\n'
            'print(f"fc         -> {tuple(nn.Linear(7 * 7 * 64, 10)(x).shape)}")',
        ),
        (
            "md",
            "zoo's `mnist_cnn` is this model. `zoo.model_info` builds it and lists every layer with its output size "
            "and the formula that gave it (the `zoo info mnist_cnn` command prints the same).",
        ),
        ("code", 'import zoo\nfrom zoo.info import format_info\n\nprint(format_info(zoo.model_info("mnist_cnn")))'),
        (
            "md",
            "The same for a ResNet-18 on the 227 x 227 image: its 7 x 7 stride-2 stem and 3 x 3 stride-2 max-pool "
            "take 227 to 114, then 57.",
        ),
        (
            "code",
            'rows = zoo.model_info("resnet18", input_size=(3, 227, 227))["layers"]\n'
            "for row in rows[:4]:\n"
            "    print(f\"{row.name:<8} {row.kind:<12} {' x '.join(map(str, row.output_shape)):<14} {row.formula}\")",
        ),
        ("md", "Next: Lab10-2, training the MNIST CNN (`lab10-2.ipynb`)."),
    ]


def lab10_2() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-2: training the MNIST CNN\n\n"
            "The lab trains the CNN of Lab10-1 on MNIST with Adam (learning rate 0.001, batch 100, 15 epochs). zoo "
            "has this as the recipe `seed-mnist`. Here it runs for one epoch; then the weights bundled with zoo "
            "(`mnist_cnn.mnist`, trained with zoo's `fast` recipe) are evaluated on the test set.",
        ),
        ("code", SETUP),
        (
            "code",
            "from zoo.data import create_datasets, subset\n"
            "from zoo.training import get_recipe\n\n"
            'train_set, test_set, info = create_datasets("mnist", DATA, download=True)\n'
            "if QUICK:\n"
            "    train_set, test_set = subset(train_set, 1000, 0), subset(test_set, 500, 0)\n"
            'print(f"{len(train_set)} training and {len(test_set)} test images of {info.input_size}, "\n'
            '      f"classes {info.classes}")',
        ),
        (
            "md",
            "The lab's recipe, for one epoch (the full lab is `epochs=15`). `zoo.fit` trains, evaluates the test "
            "set after each epoch (for the report only: it never chooses the weights) and prints a line per "
            "epoch.",
        ),
        (
            "code",
            'model = zoo.create_model("mnist_cnn")\n'
            'recipe = get_recipe("seed-mnist", "mnist").replace(epochs=1)\n'
            "result = zoo.fit(model, train_set, recipe=recipe, test_set=test_set, progress=False)",
        ),
        ("md", "The bundled weights, trained for 4 epochs with the `fast` recipe on all 60,000 images:"),
        (
            "code",
            'pretrained = zoo.create_model("mnist_cnn.mnist", pretrained=True)\n'
            "results = zoo.evaluate(pretrained, test_set)\n"
            "print(f\"top-1 {results['acc1']:.2f} %, top-5 {results['acc5']:.2f} % \"\n"
            "      f\"on {results['count']} test images\")",
        ),
        ("md", "Where it goes wrong: the confusion matrix (rows are the true digits, columns the predictions)."),
        (
            "code",
            'confusion = torch.tensor(results["confusion"])\n'
            "mistakes = confusion.sum() - confusion.trace()\n"
            'print(f"{int(mistakes)} mistakes")\n'
            "print(confusion)",
        ),
        ("md", "Next: Lab10-3, watching training (`lab10-3.ipynb`)."),
    ]


def lab10_3() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-3: watching training\n\n"
            "The lab plots the loss in Visdom while the model trains. zoo's training writes `metrics.csv` and "
            "`curves.png` into every run folder, and can also send the curves to Visdom or TensorBoard. From a "
            "terminal, with a Visdom server running (`python -m visdom.server`, then open http://localhost:8097):\n\n"
            "    zoo train mnist_cnn --dataset mnist --data-dir data --logger visdom\n\n"
            "In a notebook, the run's history is at hand: this one trains the Fashion-MNIST CNN for two epochs and "
            "plots its curves.",
        ),
        ("code", SETUP),
        (
            "code",
            "from zoo.data import create_datasets, subset\n"
            "from zoo.training import get_recipe\n\n"
            'train_set, test_set, info = create_datasets("fashion_mnist", DATA, download=True)\n'
            "train_set = subset(train_set, 1000 if QUICK else 10000, 0)\n"
            "test_set = subset(test_set, 500 if QUICK else 2000, 0)\n"
            'model = zoo.create_model("mnist_cnn")\n'
            'recipe = get_recipe("fast", "fashion_mnist").replace(epochs=2)\n'
            'result = zoo.fit(model, train_set, recipe=recipe, test_set=test_set, out_dir="fashion-run",\n'
            "                 progress=False)",
        ),
        ("md", "`result.history` holds one row per epoch, as `fashion-run/metrics.csv` does:"),
        (
            "code",
            "import csv\n\n"
            'with open("fashion-run/metrics.csv") as f:\n'
            "    rows = list(csv.DictReader(f))\n"
            "for row in rows:\n"
            '    print({k: row[k] for k in ("epoch", "train_loss", "test_loss", "test_acc1")})',
        ),
        (
            "code",
            "import matplotlib.pyplot as plt\n\n"
            'epochs = [row["epoch"] for row in result.history]\n'
            "fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3))\n"
            'loss.plot(epochs, [row["train_loss"] for row in result.history], "o-", label="train")\n'
            'loss.plot(epochs, [row["test_loss"] for row in result.history], "o-", label="test")\n'
            'loss.set(xlabel="epoch", ylabel="loss")\n'
            "loss.legend()\n"
            'acc.plot(epochs, [row["test_acc1"] for row in result.history], "o-")\n'
            'acc.set(xlabel="epoch", ylabel="test top-1 (%)")\n'
            "plt.show()",
        ),
        (
            "md",
            "TensorBoard reads the same run when it is trained with `--logger tensorboard` (in Python: "
            '`loggers=("tensorboard",)`): `tensorboard --logdir fashion-run/tensorboard`.\n\n'
            "Next: Lab10-4, a folder of your own images (`lab10-4.ipynb`).",
        ),
    ]


def lab10_4() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-4: training on a folder of your own images\n\n"
            "The lab reads photos sorted into one folder per class with `torchvision.datasets.ImageFolder`. zoo "
            "reads such a folder with `--dataset imagefolder:PATH`. This notebook makes a small folder of "
            '"photos" (cats, dogs and horses from the CIFAR-10 test set, saved as PNG files), fine-tunes the '
            "CIFAR-10 ResNet-20 on it and classifies one image.",
        ),
        ("code", SETUP),
        (
            "code",
            "from PIL import Image\n\n"
            "from zoo.data import create_datasets\n\n"
            "# CIFAR-10's test images: one uint8 tensor (N, 3, 32, 32), .targets and .classes\n"
            '_, cifar_test, _ = create_datasets("cifar10", DATA, download=True, splits=("val",))\n'
            "per_class = 30 if QUICK else 150\n"
            'photos = Path("photos")\n'
            "counts = {}\n"
            "for image, label in zip(cifar_test.images, cifar_test.targets.tolist(), strict=True):\n"
            "    name = cifar_test.classes[label]\n"
            '    if name in ("cat", "dog", "horse") and counts.get(name, 0) < per_class:\n'
            "        counts[name] = counts.get(name, 0) + 1\n"
            "        (photos / name).mkdir(parents=True, exist_ok=True)\n"
            '        Image.fromarray(image.permute(1, 2, 0).numpy()).save(photos / name / f"{counts[name]:04d}.png")\n'
            "print(counts)",
        ),
        (
            "md",
            "The command line is the natural tool here: `zoo train` splits off 10 % of the images to choose the "
            "kept epoch, fits the recipe to a small folder (and says how), and writes a run folder.",
        ),
        (
            "code",
            "!zoo train resnet20 --pretrained --dataset imagefolder:photos --epochs 3 --output photos-run --seed 0",
        ),
        ("md", "The run's weights rebuild the model with its classes and preprocessing:"),
        (
            "code",
            'model = zoo.create_model("resnet20", checkpoint_path="photos-run/best.safetensors").eval()\n'
            "transform = zoo.create_transform(model.pretrained_cfg)\n"
            'names = model.pretrained_cfg["label_names"]\n'
            "for truth in names:\n"
            '    image = Image.open(photos / truth / "0001.png").convert("RGB")\n'
            "    with torch.no_grad():\n"
            "        probs = model(transform(image).unsqueeze(0)).softmax(1)[0]\n"
            '    print(truth, "->", {name: f"{p:.2f}" for name, p in zip(names, probs.tolist(), strict=True)})',
        ),
        ("md", "Next: Lab10-5, VGG on CIFAR-10 (`lab10-5.ipynb`)."),
    ]


def lab10_5() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-5: VGG on CIFAR-10\n\n"
            "The lab builds VGG from a configuration list (numbers are convolutions' channels, `M` a max-pool) "
            "and trains it on CIFAR-10. zoo has every configuration of the VGG paper, with the ImageNet stem of "
            "torchvision's VGG or a CIFAR stem for 32 x 32 images.",
        ),
        ("code", SETUP),
        ("code", "from zoo.models import VGG_CONFIGS\n\nfor name, cfg in VGG_CONFIGS.items():\n    print(name, cfg)"),
        (
            "code",
            'model = zoo.create_model("vgg11_bn", stem="cifar", num_classes=10)\n'
            'print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")\n'
            "print(model(torch.randn(2, 3, 32, 32)).shape)",
        ),
        (
            "md",
            "The lab's recipe is `seed-vgg-cifar` (SGD 0.005, momentum 0.9, batch 512, 50 epochs). Two epochs on "
            "5,000 training images, a first step of the lab's fifty on all 50,000:",
        ),
        (
            "code",
            "from zoo.data import create_datasets, subset\n"
            "from zoo.training import get_recipe\n\n"
            'train_set, test_set, info = create_datasets("cifar10", DATA, download=True)\n'
            "small_train = subset(train_set, 1000 if QUICK else 5000, 0)\n"
            "small_test = subset(test_set, 500 if QUICK else 2000, 0)\n"
            'recipe = get_recipe("seed-vgg-cifar", "cifar10").replace(epochs=2)\n'
            "result = zoo.fit(model, small_train, recipe=recipe, test_set=small_test, progress=False)",
        ),
        ("md", "zoo's bundled `vgg11_bn.cifar10`, trained on all 50,000 images, on the CIFAR-10 test set:"),
        (
            "code",
            'pretrained = zoo.create_model("vgg11_bn.cifar10", pretrained=True)\n'
            "evaluated = subset(test_set, 1000, 0) if QUICK else test_set\n"
            "results = zoo.evaluate(pretrained, evaluated)\n"
            "print(f\"top-1 {results['acc1']:.2f} %, top-5 {results['acc5']:.2f} % \"\n"
            "      f\"on {results['count']} test images\")\n"
            'for name, acc in zip(info.classes, results["per_class_acc"], strict=True):\n'
            '    print(f"  {name:<10} {acc:.1f} %")',
        ),
        ("md", "Next: Lab10-6, ResNet on CIFAR-10 (`lab10-6.ipynb`)."),
    ]


def lab10_6() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-6: ResNet on CIFAR-10\n\n"
            "The lab builds ResNet from basic blocks and trains it on CIFAR-10. zoo has the ImageNet ResNets "
            "(18 to 152, torchvision's layout) with a CIFAR stem, and the ResNet paper's own CIFAR networks "
            "(`resnet20` ... `resnet110`: three stages of 16, 32 and 64 channels).",
        ),
        ("code", SETUP),
        (
            "code",
            'for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):\n'
            "    model = zoo.create_model(name)\n"
            '    print(f"{name:<10} {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")\n'
            'lab = zoo.create_model("resnet18", stem="cifar")\n'
            'print(f"resnet18 with the CIFAR stem: {sum(p.numel() for p in lab.parameters()) / 1e6:.2f} M")',
        ),
        (
            "md",
            "The lab's recipe is `seed-resnet-cifar` (SGD 0.1, momentum 0.9, weight decay 5e-4, batch 256, "
            "random crops). One epoch of `resnet20` on 5,000 training images:",
        ),
        (
            "code",
            "from zoo.data import create_datasets, subset\n"
            "from zoo.training import get_recipe\n\n"
            'train_set, test_set, info = create_datasets("cifar10", DATA, download=True)\n'
            'model = zoo.create_model("resnet20")\n'
            'recipe = get_recipe("seed-resnet-cifar", "cifar10").replace(epochs=1)\n'
            "result = zoo.fit(model, subset(train_set, 1000 if QUICK else 5000, 0), recipe=recipe,\n"
            "                 test_set=subset(test_set, 500 if QUICK else 2000, 0), progress=False)",
        ),
        (
            "md",
            "zoo's bundled weights, each trained on all 50,000 training images, on the CIFAR-10 test set (the "
            "ResNet paper reports 91.25 % for ResNet-20 and 92.49 % for ResNet-32):",
        ),
        (
            "code",
            "evaluated = subset(test_set, 1000, 0) if QUICK else test_set\n"
            'for name in ("resnet20.cifar10", "resnet32.cifar10"):\n'
            "    results = zoo.evaluate(zoo.create_model(name, pretrained=True), evaluated)\n"
            "    print(f\"{name}: top-1 {results['acc1']:.2f} %, top-5 {results['acc5']:.2f} % \"\n"
            "          f\"on {results['count']} test images\")",
        ),
        ("md", "How they were trained, and their curves, are on the training page of the documentation."),
    ]


NOTEBOOKS = {
    "lab10-1": lab10_1,
    "lab10-2": lab10_2,
    "lab10-3": lab10_3,
    "lab10-4": lab10_4,
    "lab10-5": lab10_5,
    "lab10-6": lab10_6,
}


def ruff(source: str) -> str:
    """A code cell as ruff (the project's settings) sorts and formats it; IPython's ``!``/``%`` lines as they are."""
    import subprocess

    if source.lstrip().startswith(("!", "%")):
        return source
    exe = Path(sys.executable).parent / "ruff"
    for args in (["check", "--fix", "--select", "I", "--quiet"], ["format", "--quiet"]):
        done = subprocess.run([str(exe), *args, "--stdin-filename", "cell.py", "-"], input=source, cwd=ROOT,
                              capture_output=True, text=True, check=True)  # fmt: skip
        source = done.stdout
    return source.rstrip("\n")


def make(name: str):  # noqa: ANN201 - an nbformat NotebookNode
    """The notebook ``name`` with its cells (code cells as ruff formats them) and no outputs."""
    import nbformat.v4 as nbf

    cells = [nbf.new_markdown_cell(src) if kind == "md" else nbf.new_code_cell(ruff(src))
             for kind, src in NOTEBOOKS[name]()]  # fmt: skip
    for i, cell in enumerate(cells):
        cell["id"] = f"{name}-{i}"  # stable ids: a rerun changes outputs only
    nb = nbf.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def run(nb, cwd: Path, timeout: int = 1200) -> None:  # noqa: ANN001
    """Execute ``nb`` in ``cwd`` (its outputs stored in it), with zoo's ``.venv`` first on PATH for ``!zoo``."""
    from nbclient import NotebookClient

    # The kernel's environment only: this process's PATH stays as it is (the tests run one notebook after another).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)


_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")  # a tqdm bar: "epoch 1/3:  50%|##   | 6/12 [00:01<00:01, ..."


def tidy(text: str, paths: dict[str, str]) -> str:
    """Output text as a terminal shows it once a command is done: each line after its last carriage return, and
    no progress bars (zoo's clear themselves); this machine's folders (``paths``, longest first) written as the
    reader's."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if not _BAR.search(line)]
    text = "\n".join(line for i, line in enumerate(lines) if line or i == len(lines) - 1)
    for path in sorted(paths, key=len, reverse=True):
        text = text.replace(path, paths[path])
    return text


def store(nb, paths: dict[str, str]) -> None:  # noqa: ANN001
    """Tidy every text output of ``nb`` in place (:func:`tidy`)."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = tidy(out["text"], paths)
            if "text/plain" in out.get("data", {}):
                out["data"]["text/plain"] = tidy(out["data"]["text/plain"], paths)


def _sources(nb) -> list[tuple[str, str]]:  # noqa: ANN001
    return [(c["cell_type"], c["source"]) for c in nb.cells]


def main() -> int:
    import nbformat

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare the committed notebooks' cells, run nothing")
    parser.add_argument("names", nargs="*", help="notebooks to write (default: all)")
    args = parser.parse_args()
    stale = []
    for name in args.names or NOTEBOOKS:
        path = TUTORIALS / f"{name}.ipynb"
        nb = make(name)
        if args.check:
            if not path.is_file() or _sources(nbformat.read(path, as_version=4)) != _sources(nb):
                stale.append(path.name)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            run(nb, Path(tmp))
            data = os.environ.get("ZOO_DATA", "data")
            store(nb, {f"{Path(tmp).resolve()}/": "", f"{tmp}/": "", f"{ROOT}/": "", str(Path(data).resolve()): "data",
                       f"{Path.home()}/": "~/"})  # fmt: skip
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/notebooks.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
