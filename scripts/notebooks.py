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
            "The course's step: write the CNN of Lab10-1 as an `nn.Module` class (two blocks of a 3 x 3 convolution, "
            "ReLU and a 2 x 2 max-pool, then one linear layer from the 7 x 7 x 64 map to 10 digits) and train it with "
            "Adam (learning rate 0.001, batch 100, 15 epochs). First in plain PyTorch, for one epoch; then the same "
            "network in zoo (`mnist_cnn`) and zoo's training loop (`zoo.fit`); last, the course's deeper CNN, which "
            "zoo ships trained (`mnist_cnn_deep.mnist`).",
        ),
        ("code", SETUP),
        (
            "md",
            "The data: MNIST's IDX files, read by zoo's IDX reader into one uint8 tensor of 60,000 training and one "
            "of 10,000 test images. Divided by 255 they are what the course's `transforms.ToTensor()` gives.",
        ),
        (
            "code",
            "from zoo.data import create_datasets, subset\n\n"
            'train_set, test_set, info = create_datasets("mnist", DATA, download=True)\n'
            "if QUICK:\n"
            "    train_set, test_set = subset(train_set, 1000, 0), subset(test_set, 500, 0)\n"
            "x_train, y_train = train_set.images.float() / 255, train_set.targets  # (N, 1, 28, 28) in [0, 1]\n"
            "x_test, y_test = test_set.images.float() / 255, test_set.targets\n"
            'print(f"{len(x_train)} training and {len(x_test)} test images, {tuple(x_train.shape[1:])} each")',
        ),
        ("md", "## The course's step, in plain PyTorch\n\nThe network, as a class:"),
        (
            "code",
            "import torch.nn as nn\n\n\n"
            "class CNN(nn.Module):\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        self.layer1 = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))\n"
            "        self.layer2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))\n"
            "        self.fc = nn.Linear(7 * 7 * 64, 10)\n"
            "        nn.init.xavier_uniform_(self.fc.weight)\n\n"
            "    def forward(self, x):\n"
            "        x = self.layer2(self.layer1(x))  # (N, 64, 7, 7)\n"
            "        return self.fc(x.view(x.size(0), -1))  # flattened to (N, 3136), then 10 scores",
        ),
        (
            "md",
            "The training loop: shuffled batches of 100, cross-entropy, Adam at 0.001. One epoch here (the course "
            "runs 15):",
        ),
        (
            "code",
            "from torch.utils.data import DataLoader, TensorDataset\n\n"
            "model = CNN()\n"
            "loader = DataLoader(TensorDataset(x_train, y_train), batch_size=100, shuffle=True, drop_last=True)\n"
            "criterion = nn.CrossEntropyLoss()\n"
            "optimizer = torch.optim.Adam(model.parameters(), lr=0.001)\n"
            "for epoch in range(1):\n"
            "    model.train()\n"
            "    total = 0.0\n"
            "    for x, y in loader:\n"
            "        optimizer.zero_grad()\n"
            "        loss = criterion(model(x), y)\n"
            "        loss.backward()\n"
            "        optimizer.step()\n"
            "        total += loss.item()\n"
            '    print(f"epoch {epoch + 1}: mean training loss {total / len(loader):.4f} over {len(loader)} batches")',
        ),
        (
            "md",
            "Its accuracy on the test images, scaled as the training images were (the course's test cell feeds the "
            "raw 0-255 pixels to the network, which was trained on 0-1):",
        ),
        (
            "code",
            "from zoo.evaluation import score_text  # a score with its images, and its 95 % interval where wide\n\n"
            "model.eval()\n"
            "with torch.no_grad():\n"
            "    predicted = torch.cat([model(x).argmax(1) for x in x_test.split(1000)])\n"
            "correct = int((predicted == y_test).sum())\n"
            'print(f"test accuracy {score_text(100 * correct / len(y_test), len(y_test))}")',
        ),
        (
            "md",
            "## The same network in zoo\n\n"
            "zoo's `mnist_cnn` is this class: the same layers under the same names, so the two have the same "
            "`state_dict`. With the weights just trained copied in, it gives the same outputs:",
        ),
        (
            "code",
            'zoo_model = zoo.create_model("mnist_cnn")\n'
            "ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}\n"
            "theirs = {k: tuple(v.shape) for k, v in zoo_model.state_dict().items()}\n"
            "for key, shape in ours.items():\n"
            '    print(f"{key:<16} {shape}")\n'
            'print("same keys and shapes:", ours == theirs)\n'
            'print(f"parameters: {sum(p.numel() for p in model.parameters()):,} (class), "\n'
            '      f"{sum(p.numel() for p in zoo_model.parameters()):,} (zoo)")\n'
            "zoo_model.load_state_dict(model.state_dict())\n"
            "zoo_model.eval()\n"
            "with torch.no_grad():\n"
            '    print("same outputs:", torch.equal(model(x_test[:100]), zoo_model(x_test[:100])))',
        ),
        (
            "md",
            "zoo's training loop runs the course's recipe as `seed-mnist` (Adam 0.001, batch 100, no schedule, no "
            "augmentation). It normalises the images with MNIST's mean and standard deviation (0.1307, 0.3081) "
            "rather than leaving them in [0, 1], evaluates the test set after each epoch (for the report only: it "
            "never chooses the weights) and prints a line per epoch:",
        ),
        (
            "code",
            "from zoo.training import get_recipe\n\n"
            'recipe = get_recipe("seed-mnist", "mnist").replace(epochs=1)\n'
            'print(f"{recipe.opt}, lr {recipe.lr}, batch {recipe.batch_size}, schedule {recipe.sched}; "\n'
            '      f"images normalised with mean {info.mean} and std {info.std}")\n'
            'zoo_trained = zoo.create_model("mnist_cnn")\n'
            "result = zoo.fit(zoo_trained, train_set, recipe=recipe, test_set=test_set, progress=False)",
        ),
        (
            "md",
            "## The course's deeper CNN: `mnist_cnn_deep`\n\n"
            "The course's next network adds a third block (128 channels; its max-pool pads by one, so 7 x 7 becomes "
            "4 x 4) and a 625-wide hidden layer with dropout before the 10 outputs. In zoo it is `mnist_cnn_deep`, "
            "with the course's names (`layer1` ... `layer4`, `fc2`):",
        ),
        (
            "code",
            'deep = zoo.create_model("mnist_cnn_deep")\n'
            "for key, value in deep.state_dict().items():\n"
            '    print(f"{key:<16} {tuple(value.shape)}")\n'
            'print(f"{sum(p.numel() for p in deep.parameters()):,} parameters")',
        ),
        (
            "md",
            "zoo ships it trained: the weights `mnist_cnn_deep.mnist` are in the package, so they load without a "
            "network connection. On the test set:",
        ),
        (
            "code",
            'pretrained = zoo.create_model("mnist_cnn_deep.mnist", pretrained=True)\n'
            "results = zoo.evaluate(pretrained, test_set)\n"
            "print(f\"top-1 {score_text(results['acc1'], results['count'])}, top-5 {results['acc5']:.2f} % \"\n"
            "      f\"on the {results['count']:,} test images\")",
        ),
        ("md", "Where it goes wrong: the confusion matrix (rows are the true digits, columns the predictions)."),
        (
            "code",
            'confusion = torch.tensor(results["confusion"])\n'
            'print(f"{int(confusion.sum() - confusion.trace())} mistakes")\n'
            "print(confusion)",
        ),
        ("md", "Next: Lab10-3, watching training (`lab10-3.ipynb`)."),
    ]


def lab10_3() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-3: watching training in Visdom\n\n"
            "The course's Lab10-3 teaches [Visdom](https://github.com/fossasia/visdom)'s API: `vis.text`, "
            "`vis.image` and `vis.images` put text and pictures in a browser page, and `vis.line` with "
            '`update="append"` adds points to a plot, which makes it a loss tracker while a model trains. This '
            "notebook makes those calls first, with a few steps of a plain PyTorch training loop, then trains with "
            'zoo, whose Visdom logger (`loggers=("visdom",)`, `--logger visdom` on the command line) draws the '
            "plots for any run.\n\n"
            "In a terminal you start the server with `python -m visdom.server -port 8097` and open "
            "http://localhost:8097 (`make venv` installs the page's JavaScript from the npm registry, so the server "
            "needs no internet). Here the notebook starts its own server on a free port of 127.0.0.1, keeps its "
            "environments in a temporary folder and stops it at the end.",
        ),
        ("code", SETUP),
        (
            "code",
            "import atexit\nimport logging\nimport shutil\nimport socket\nimport subprocess\nimport sys\n"
            "import tempfile\nimport time\nimport urllib.request\n\nimport visdom\n\n"
            "with socket.socket() as s:  # a free port\n"
            '    s.bind(("127.0.0.1", 0))\n'
            "    PORT = s.getsockname()[1]\n"
            "env_path = tempfile.mkdtemp()\n"
            'command = [sys.executable, "-m", "visdom.server", "-port", str(PORT), "-env_path", env_path, '
            '"-bind_local"]\n'
            "server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\n\n"
            "def stop_server():\n"
            "    try:\n"
            "        server.terminate()\n"
            "        server.wait(timeout=10)\n"
            "    finally:\n"
            "        shutil.rmtree(env_path, ignore_errors=True)\n\n\n"
            "atexit.register(stop_server)  # also when a cell below fails; the last cell stops it\n"
            "for _ in range(150):  # the server starts in a few seconds\n"
            "    try:\n"
            '        urllib.request.urlopen(f"http://127.0.0.1:{PORT}", timeout=1)\n'
            "        break\n"
            "    except OSError:\n"
            "        time.sleep(0.2)\n"
            'logging.getLogger("visdom").setLevel(logging.ERROR)  # quiet its notes about client sessions\n'
            "# The course's vis = visdom.Visdom() is the same with the default server http://localhost:8097.\n"
            'vis = visdom.Visdom(server="http://127.0.0.1", port=PORT, env="lab10_3", use_incoming_socket=False)\n'
            'print("connected:", vis.check_connection())',
        ),
        (
            "md",
            "Text, one image and a batch of images. The digits come from zoo's MNIST reader, which keeps the images "
            "as one uint8 tensor; divided by 255 they are what torchvision's `ToTensor()` gives the course. Each "
            "call returns the name of its window (`win`), and `get_window_data` reads a window back from the server.",
        ),
        (
            "code",
            "import base64\nimport io\nimport json\n\nfrom PIL import Image\n\n"
            "from zoo.data import create_datasets\n\n"
            'train_set, test_set, info = create_datasets("mnist", DATA, download=True)\n'
            "images = train_set.images.float() / 255  # (60000, 1, 28, 28) in [0, 1]\n"
            "labels = train_set.targets\n\n"
            'text_win = vis.text("Hello, world!", win="hello")\n'
            'image_win = vis.image(images[0], win="digit", opts=dict(title=f"label {labels[0]}"))\n'
            'images_win = vis.images(images[:32], nrow=8, win="batch", opts=dict(title="32 training digits"))\n\n'
            "for win in (text_win, image_win, images_win):\n"
            "    data = json.loads(vis.get_window_data(win))\n"
            '    if data["type"] == "image":  # a PNG, base64 in a data: URL\n'
            '        png = Image.open(io.BytesIO(base64.b64decode(data["content"]["src"].split(",")[1])))\n'
            '        shown = f"a {png.width} x {png.height} PNG"\n'
            "    else:\n"
            '        shown = repr(data["content"])\n'
            "    print(f\"{win}: exists {vis.win_exists(win)}, {data['type']}, {shown}\")",
        ),
        (
            "md",
            "The loss tracker: the course's function appends one point to a line plot. A few steps of the course's "
            "CNN (two 3 x 3 convolutions with max-pooling, one linear layer; Adam, learning rate 0.001, batch 100) "
            "on a small part of the training set, with a point every step; step 0 is the untrained model's loss.",
        ),
        (
            "code",
            "import torch.nn as nn\n\n\n"
            "def loss_tracker(loss_plot, loss_value, num):\n"
            '    vis.line(X=num, Y=loss_value, win=loss_plot, update="append")\n\n\n'
            "n = 500 if QUICK else 2000\n"
            "loader = torch.utils.data.DataLoader(\n"
            "    torch.utils.data.TensorDataset(images[:n], labels[:n]), batch_size=100, shuffle=True\n"
            ")\n"
            "model = nn.Sequential(\n"
            "    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
            "    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
            "    nn.Flatten(), nn.Linear(7 * 7 * 64, 10),\n"
            ")\n"
            "criterion = nn.CrossEntropyLoss()\n"
            "optimizer = torch.optim.Adam(model.parameters(), lr=0.001)\n\n"
            "x, y = next(iter(loader))\n"
            "with torch.no_grad():\n"
            "    first = criterion(model(x), y)\n"
            "loss_plt = vis.line(\n"
            '    X=torch.zeros(1), Y=first.reshape(1), win="loss",\n'
            '    opts=dict(title="loss_tracker", legend=["loss"], showlegend=True, xlabel="step"),\n'
            ")\n"
            "for step, (x, y) in enumerate(loader, 1):\n"
            "    loss = criterion(model(x), y)\n"
            "    optimizer.zero_grad()\n"
            "    loss.backward()\n"
            "    optimizer.step()\n"
            "    loss_tracker(loss_plt, loss.detach().reshape(1), torch.tensor([step]))\n\n"
            'trace = json.loads(vis.get_window_data(loss_plt))["content"]["data"][0]\n'
            "print(f\"{loss_plt}: {len(trace['y'])} points, steps {trace['x'][0]:g} to {trace['x'][-1]:g}, \"\n"
            "      f\"loss {trace['y'][0]:.3f} -> {trace['y'][-1]:.3f}\")",
        ),
        (
            "md",
            "zoo draws such plots for every run: with the Visdom logger, `zoo.fit` sends the loss every few steps, "
            "the loss and accuracy of each epoch, and test images with their predictions, to the environment it is "
            "given. On the command line the same is\n\n"
            "    zoo train mnist_cnn --dataset mnist --data-dir data --epochs 1 --train-subset 2000 \\\n"
            "        --logger visdom --visdom-port 8097 --visdom-env lab10_3_zoo\n\n"
            "One short epoch of zoo's `mnist_cnn` (the same CNN) on the same server:",
        ),
        (
            "code",
            "from zoo.data import subset\nfrom zoo.training import get_recipe\n\n"
            "result = zoo.fit(\n"
            '    zoo.create_model("mnist_cnn"),\n'
            "    subset(train_set, 500 if QUICK else 2000, 0),\n"
            '    recipe=get_recipe("fast", "mnist").replace(epochs=1),\n'
            "    test_set=subset(test_set, 200 if QUICK else 500, 0),\n"
            '    out_dir="visdom-run",\n'
            '    loggers=("visdom",),\n'
            '    logger_options=dict(visdom_server="http://127.0.0.1", visdom_port=PORT, visdom_env="lab10_3_zoo"),\n'
            "    progress=False,\n"
            ")",
        ),
        (
            "md",
            "The windows zoo made, read back from the server (for a plot: its lines and how many points each has), "
            "and the epoch's row of `result.history`:",
        ),
        (
            "code",
            'windows = json.loads(vis.get_window_data(env="lab10_3_zoo"))\n'
            "for win, data in sorted(windows.items()):\n"
            '    traces = data["content"]["data"] if data["type"] == "plot" else []\n'
            '    print(f"{win}: {data[\'type\']}", {t["name"]: len(t["y"]) for t in traces} if traces else "")\n'
            'print({k: result.history[-1][k] for k in ("epoch", "train_loss", "test_loss", "test_acc1")})',
        ),
        (
            "md",
            "Every run also writes `metrics.csv` and `curves.png` into its folder (`visdom-run/` here), with or "
            'without a server, and `loggers=("tensorboard",)` writes TensorBoard\'s event files '
            "(`tensorboard --logdir visdom-run/tensorboard`). The end: stop the server.",
        ),
        ("code", 'stop_server()\nprint("server stopped:", server.poll() is not None)'),
        ("md", "Next: Lab10-4, a folder of your own images (`lab10-4.ipynb`)."),
    ]


def lab10_4() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-4: training on a folder of your own photos\n\n"
            "The lab reads photos sorted into one folder per class with `torchvision.datasets.ImageFolder`, trains a "
            "small CNN on them, saves it and loads it again to classify new photos. This notebook does that on real "
            "photos, the 398 pictures of ants and bees of PyTorch's transfer-learning tutorial: first in plain "
            "PyTorch, then with zoo, which reads the same folder with `--dataset imagefolder:PATH`.",
        ),
        (
            "code",
            "import os\n"
            "from pathlib import Path\n\n"
            "# Where hymenoptera/ is: the ants and bees of PyTorch's transfer-learning tutorial.\n"
            'DATA = Path(os.environ.get("ZOO_DATA", "data"))\n'
            "# QUICK: fewer epochs, for a look in seconds (the tests run the notebooks this way).\n"
            'QUICK = os.environ.get("ZOO_NOTEBOOK_QUICK") == "1"',
        ),
        (
            "md",
            "## The folder\n\n"
            "`hymenoptera/` holds `train/` and `val/`, each with one folder per class, `ants/` and `bees/`: the "
            "folder names are the labels. Like most folders of real photos, its pictures have every size, some file "
            "names have spaces or parentheses, and one picture is no photo at all.",
        ),
        (
            "code",
            "from PIL import Image\n\n"
            'folder = DATA / "hymenoptera"\n'
            'for split in ("train", "val"):\n'
            '    for label in ("ants", "bees"):\n'
            "        sizes = [Image.open(f).size for f in (folder / split / label).iterdir()]\n"
            "        widths, heights = [w for w, _ in sizes], [h for _, h in sizes]\n"
            '        print(f"{split}/{label}: {len(sizes)} photos, {min(widths)}-{max(widths)} pixels wide, "\n'
            '              f"{min(heights)}-{max(heights)} high")\n'
            'odd = [f.relative_to(folder).as_posix() for f in sorted(folder.rglob("*.jpg"))]\n'
            'print("names with spaces or parentheses:", [name for name in odd if " " in name or "(" in name])',
        ),
        (
            "md",
            "Spaces and parentheses matter only to a shell, which needs such names quoted; Python and "
            "`ImageFolder` take them as they are. `train/ants/imageNotFound.jpg` is a placeholder, a grey \"We're "
            'sorry, this image could not be found" picture saved where a photo went missing: a valid JPEG, so '
            "nothing fails on it, but a wrong example of an ant. The code below leaves it out by name.\n\n"
            "## The course's way, in plain PyTorch\n\n"
            "Two processes: one trains the network and saves its weights with `torch.save(model.state_dict(), "
            "path)`; a new one builds the same network, loads them with `load_state_dict` and classifies the "
            "photos of `val/`. What both need is in one file, `small_cnn.py`: the image size `S`, the "
            "preprocessing (`Resize((S, S))` makes every photo S x S, then `ToTensor` and `Normalize`) and the "
            "network, three blocks of 3x3 convolution, ReLU and 2x2 max-pooling. Each pooling halves the side, so "
            "the last block gives 64 maps of S/8 x S/8 and the `nn.Linear` input is 64 x (S/8)^2, 4,096 for "
            "S = 64; change `S` and it follows.",
        ),
        (
            "code",
            "%%writefile small_cnn.py\n"
            '"""What training and predicting share: the image size, the preprocessing and the network."""\n'
            "\n"
            "from pathlib import Path\n"
            "\n"
            "import torch\n"
            "from torch import nn\n"
            "from torchvision import transforms\n"
            "\n"
            "S = 64  # every photo becomes S x S pixels, whatever its size\n"
            "transform = transforms.Compose(\n"
            "    [\n"
            "        transforms.Resize((S, S)),  # both sides to S: the aspect ratio is not kept\n"
            "        transforms.ToTensor(),  # H x W x 3 bytes -> 3 x H x W floats in [0, 1]\n"
            "        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # -> [-1, 1]\n"
            "    ]\n"
            ")\n"
            "\n"
            "\n"
            "def is_photo(path: str) -> bool:\n"
            '    """ImageFolder\'s file filter: every .jpg but the folder\'s "image not found" placeholder."""\n'
            '    return path.lower().endswith(".jpg") and Path(path).name != "imageNotFound.jpg"\n'
            "\n"
            "\n"
            "class SmallCNN(nn.Module):\n"
            "    def __init__(self, size: int = S, classes: int = 2) -> None:\n"
            "        super().__init__()\n"
            "        # 3x3 convolutions with padding 1 keep the size; each 2x2 max-pooling halves it\n"
            "        self.features = nn.Sequential(\n"
            "            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
            "            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
            "            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
            "        )\n"
            "        side = size // 2 // 2 // 2  # three poolings: S -> S/2 -> S/4 -> S/8\n"
            "        self.fc = nn.Linear(64 * side * side, classes)  # 64 channels of side x side, flattened\n"
            "\n"
            "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
            "        return self.fc(torch.flatten(self.features(x), 1))",
        ),
        (
            "md",
            "Training: `ImageFolder` on `train/` (labels are the sorted folder names: ants 0, bees 1), batches of "
            "16, Adam and cross-entropy for 8 epochs. The script checks the `nn.Linear` input against a dummy "
            "forward and saves the weights in `small_cnn.pt`:",
        ),
        (
            "code",
            "%%writefile train_cnn.py\n"
            "import sys\n"
            "from pathlib import Path\n"
            "\n"
            "import torch\n"
            "from torch import nn\n"
            "from torchvision import datasets\n"
            "\n"
            "from small_cnn import S, SmallCNN, is_photo, transform\n"
            "\n"
            "folder, epochs = Path(sys.argv[1]), int(sys.argv[2])\n"
            "torch.manual_seed(0)\n"
            'train_set = datasets.ImageFolder(folder / "train", transform, is_valid_file=is_photo)\n'
            'print(f"{len(train_set)} training photos, labels {train_set.class_to_idx}")\n'
            "loader = torch.utils.data.DataLoader(train_set, batch_size=16, shuffle=True)\n"
            "\n"
            "model = SmallCNN()\n"
            "flat = model.features(torch.zeros(1, 3, S, S)).flatten(1).shape[1]\n"
            'print(f"nn.Linear input: 64 * ({S} // 8) ** 2 = {model.fc.in_features}; a dummy forward: {flat}")\n'
            "\n"
            "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)\n"
            "loss_fn = nn.CrossEntropyLoss()\n"
            "for epoch in range(1, epochs + 1):\n"
            "    total_loss, right = 0.0, 0\n"
            "    for images, labels in loader:\n"
            "        optimizer.zero_grad()\n"
            "        outputs = model(images)\n"
            "        loss = loss_fn(outputs, labels)\n"
            "        loss.backward()\n"
            "        optimizer.step()\n"
            "        total_loss += loss.item() * len(labels)\n"
            "        right += (outputs.argmax(1) == labels).sum().item()\n"
            "    n = len(train_set)\n"
            '    print(f"epoch {epoch}: loss {total_loss / n:.3f}, right on train/ {right}/{n}")\n'
            "\n"
            'torch.save(model.state_dict(), "small_cnn.pt")\n'
            'print("saved small_cnn.pt")',
        ),
        ("code", "!python train_cnn.py {folder} {2 if QUICK else 8}"),
        (
            "md",
            "A new process knows the network from `small_cnn.py`, loads the weights from `small_cnn.pt` and "
            "classifies the 153 photos of `val/`, which training never saw. On 153 photos one more right is 0.65 "
            "points and the 95 % interval is about 16 points wide; compare the accuracy with always answering the "
            "largest class, bees (83 of 153):",
        ),
        (
            "code",
            "%%writefile predict_val.py\n"
            "import sys\n"
            "from pathlib import Path\n"
            "\n"
            "import torch\n"
            "from torchvision import datasets\n"
            "\n"
            "from small_cnn import SmallCNN, is_photo, transform\n"
            "\n"
            "model = SmallCNN()\n"
            'model.load_state_dict(torch.load("small_cnn.pt", weights_only=True))\n'
            "model.eval()\n"
            "\n"
            'val_set = datasets.ImageFolder(Path(sys.argv[1]) / "val", transform, is_valid_file=is_photo)\n'
            "loader = torch.utils.data.DataLoader(val_set, batch_size=64)\n"
            "with torch.no_grad():\n"
            "    guesses = torch.cat([model(images).argmax(1) for images, _ in loader])\n"
            "truth = torch.tensor(val_set.targets)\n"
            "right, n = (guesses == truth).sum().item(), len(val_set)\n"
            "p = right / n\n"
            "half = 1.96 * (p * (1 - p) / n) ** 0.5  # 95 % interval, normal approximation\n"
            'print(f"accuracy on val/: {right}/{n} = {100 * p:.1f} % (95 % interval: ±{100 * half:.0f} points)")\n'
            "for i, name in enumerate(val_set.classes):\n"
            '    print(f"  {name}: {(guesses[truth == i] == i).sum().item()}/{(truth == i).sum().item()} right")\n'
            "largest = max(val_set.targets.count(i) for i in range(len(val_set.classes)))\n"
            'print(f"always answering the largest class: {largest}/{n} = {100 * largest / n:.1f} %")',
        ),
        ("code", "!python predict_val.py {folder}"),
        (
            "md",
            "## The same folder with zoo\n\n"
            "`zoo train` trains on `train/`, all 245 pictures (the placeholder too). As the folder also has `val/`, "
            "zoo takes it as the test split: it reports top-1 on those 153 photos after every epoch but never lets "
            "them choose the weights, so the run keeps its last epoch. `resnet20` takes 32 x 32 inputs: zoo resizes "
            "every photo to the model's input size. Each accuracy comes with the photos it rests on and its 95 % "
            "interval, and a warning when it does not beat always answering the largest class. Three epochs here, "
            "for a quick look:",
        ),
        (
            "code",
            "!zoo train resnet20 --dataset imagefolder:{folder} --epochs {1 if QUICK else 3} --output scratch",
        ),
        (
            "md",
            "`zoo eval` measures the kept weights on `val/` again, per class and with a confusion matrix; "
            "`zoo predict` classifies single photos (a name with parentheses is quoted for the shell):",
        ),
        (
            "code",
            "!zoo eval resnet20 --checkpoint scratch --dataset imagefolder:{folder} --output scratch-eval",
        ),
        (
            "code",
            '!zoo predict resnet20 --checkpoint scratch "{folder}/val/ants/F.pergan.28(f).jpg" '
            "{folder}/val/bees/abeja.jpg",
        ),
        (
            "md",
            "Here `val/` only reports. To let part of `train/` choose the kept epoch instead, `--val-split 0.2` "
            "holds out a fifth of it, 49 photos: zoo warns when the run starts that so few cannot choose an epoch "
            "well, and at the end when the kept epoch's score does not beat chance:",
        ),
        (
            "code",
            "!zoo train resnet20 --dataset imagefolder:{folder} --val-split 0.2 --epochs 1 --output held-out",
        ),
        (
            "md",
            "## Fine-tuned from zoo's weights\n\n"
            "The weights bundled with zoo work without internet. Those for colour images were trained on CIFAR-10's "
            "32 x 32 pictures (a CIFAR stem), the input size `resnet20` uses here:",
        ),
        ("code", "!zoo list --pretrained '*.cifar10'"),
        (
            "md",
            "`--pretrained` starts from the architecture's default weights, `resnet20.cifar10`. Their classifier "
            "has 10 classes and the folder 2, so it is dropped and initialised afresh (the warning names its keys):",
        ),
        (
            "code",
            "!zoo train resnet20 --pretrained --dataset imagefolder:{folder} --epochs {1 if QUICK else 3} "
            "--output finetuned",
        ),
        (
            "md",
            "The usual way with a folder like this one is to fine-tune ImageNet weights at 224 x 224, which zoo "
            "downloads and verifies on first use; on a machine with internet: `zoo train resnet18 --pretrained "
            "--dataset imagefolder:data/hymenoptera`. These machines have none, so it is not run here.\n\n"
            "Next: Lab10-5, VGG on CIFAR-10 (`lab10-5.ipynb`).",
        ),
    ]


def lab10_5() -> list[tuple[str, str]]:
    return [
        (
            "md",
            "# Lab10-5: VGG on CIFAR-10\n\n"
            "The course's step: build a VGG network from a configuration list (numbers are 3 x 3 convolutions' "
            "channels, `M` a 2 x 2 max-pool), put a classifier on top for CIFAR-10's 32 x 32 images, and train it "
            "with SGD (learning rate 0.005, momentum 0.9, batch 512, the rate multiplied by 0.9 every 5 epochs) for "
            "50 epochs. First in plain PyTorch, then the same network from zoo's VGG builder; last, the VGG zoo "
            "ships trained for CIFAR-10 (`vgg11_bn.cifar10`).",
        ),
        ("code", SETUP),
        (
            "md",
            "## The course's step, in plain PyTorch\n\n"
            "The course's own list has 13 convolutions and 3 max-pools, so a 32 x 32 image leaves the trunk as 512 "
            "maps of 4 x 4. The head flattens them (8,192 values) into two 4096-wide layers with dropout and 10 "
            "outputs: 13 + 3 = 16 weight layers, a VGG-16 for CIFAR-10. `make_layers` turns the list into layers; the "
            "class adds the head and the course's initialisation.",
        ),
        (
            "code",
            "import torch.nn as nn\n\n"
            'cfg = [32, 32, "M", 64, 64, 128, 128, 128, "M", 256, 256, 256, 512, 512, 512, "M"]\n\n\n'
            "def make_layers(cfg):\n"
            "    layers, channels = [], 3\n"
            "    for v in cfg:\n"
            '        if v == "M":\n'
            "            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))\n"
            "        else:\n"
            "            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]\n"
            "            channels = v\n"
            "    return nn.Sequential(*layers)\n\n\n"
            "class VGG(nn.Module):\n"
            "    def __init__(self, features, num_classes=10):\n"
            "        super().__init__()\n"
            "        self.features = features\n"
            "        self.classifier = nn.Sequential(\n"
            "            nn.Linear(512 * 4 * 4, 4096), nn.ReLU(True), nn.Dropout(),\n"
            "            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),\n"
            "            nn.Linear(4096, num_classes),\n"
            "        )  # fmt: skip\n"
            "        for m in self.modules():\n"
            "            if isinstance(m, nn.Conv2d):\n"
            '                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")\n'
            "                nn.init.zeros_(m.bias)\n"
            "            elif isinstance(m, nn.Linear):\n"
            "                nn.init.normal_(m.weight, 0, 0.01)\n"
            "                nn.init.zeros_(m.bias)\n\n"
            "    def forward(self, x):\n"
            "        x = self.features(x)  # (N, 512, 4, 4) for 32 x 32 images\n"
            "        return self.classifier(x.view(x.size(0), -1))\n\n\n"
            "model = VGG(make_layers(cfg))\n"
            'print(f"{sum(p.numel() for p in model.parameters()):,} parameters")\n'
            "print(model(torch.randn(2, 3, 32, 32)).shape)",
        ),
        (
            "md",
            "## The same network from zoo's VGG builder\n\n"
            "zoo's builder reads the same kind of list: `make_features(cfg)` builds the trunk (numbered as "
            "torchvision numbers it) and `make_vgg(cfg)` a whole VGG around it. zoo's heads are torchvision's (the "
            "trunk pooled to 7 x 7, then 25,088 -> 4096 -> 4096) and a CIFAR one (pooled to 1 x 1, then 512 -> 512); "
            "neither flattens a 4 x 4 map as the course's does, so the course's head stays the class above, on zoo's "
            "trunk. Built both ways, the network is the same:",
        ),
        (
            "code",
            "from zoo.models.vgg import make_features, make_vgg\n\n\n"
            "def shapes(module):\n"
            "    return {k: tuple(v.shape) for k, v in module.state_dict().items()}\n\n\n"
            "vgg16 = VGG(make_features(cfg))\n"
            'print("same keys and shapes as the plain class:", shapes(vgg16) == shapes(model))\n'
            'print(f"{len(shapes(vgg16))} tensors, {sum(p.numel() for p in vgg16.parameters()):,} parameters")\n'
            'print("output:", tuple(vgg16(torch.randn(2, 3, 32, 32)).shape))\n'
            'for stem in ("imagenet", "cifar"):\n'
            "    whole = make_vgg(cfg, stem=stem, num_classes=10)\n"
            "    same = shapes(whole.features) == shapes(vgg16.features)\n"
            '    print(f"make_vgg(cfg, stem={stem!r}): same trunk {same}, head starts with {whole.classifier[0]}")',
        ),
        (
            "md",
            "## Training it: the course's loop\n\n"
            "The course normalises each channel with mean 0.5 and standard deviation 0.5 and has no augmentation. "
            "Here the loop runs one epoch on 1,024 training images (two steps of 512), to see it run: the course's "
            "50 epochs of 50,000 images are a job for a GPU. The lab's page records a longer run of this network "
            "and recipe, tested on all 10,000 test images (`python benchmarks/course_vgg.py`).",
        ),
        (
            "code",
            "from torch.utils.data import DataLoader, TensorDataset\n\n"
            "from zoo.data import create_datasets, subset\n"
            "from zoo.evaluation import score_text\n\n"
            'train_set, test_set, info = create_datasets("cifar10", DATA, download=True)\n'
            "small = subset(train_set, 256 if QUICK else 1024, 0)\n"
            "x_train = (small.images.float() / 255 - 0.5) / 0.5  # the course's Normalize((0.5,) * 3, (0.5,) * 3)\n"
            "loader = DataLoader(TensorDataset(x_train, small.targets), batch_size=512, shuffle=True)\n"
            "criterion = nn.CrossEntropyLoss()\n"
            "optimizer = torch.optim.SGD(vgg16.parameters(), lr=0.005, momentum=0.9)\n"
            "scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.9)\n"
            "for epoch in range(1):\n"
            "    vgg16.train()\n"
            "    for x, y in loader:\n"
            "        optimizer.zero_grad()\n"
            "        loss = criterion(vgg16(x), y)\n"
            "        loss.backward()\n"
            "        optimizer.step()\n"
            '        print(f"epoch {epoch + 1}: batch of {len(y)}, loss {loss.item():.4f}")\n'
            "    scheduler.step()",
        ),
        (
            "code",
            "evaluated = subset(test_set, 200 if QUICK else 1000, 0)\n"
            "x_test = (evaluated.images.float() / 255 - 0.5) / 0.5\n"
            "vgg16.eval()\n"
            "with torch.no_grad():\n"
            "    predicted = torch.cat([vgg16(x).argmax(1) for x in x_test.split(250)])\n"
            "correct = int((predicted == evaluated.targets).sum())\n"
            'print(f"test accuracy {score_text(100 * correct / len(predicted), len(predicted))} after one epoch "\n'
            '      f"of {len(loader)} steps (chance: 10 %)")',
        ),
        (
            "md",
            "zoo has this recipe as `seed-vgg-cifar`, for `zoo train --recipe seed-vgg-cifar` and `zoo.fit`: the "
            "same optimiser, batch and schedule as the loop above.",
        ),
        (
            "code",
            "from zoo.training import get_recipe\n\n"
            'recipe = get_recipe("seed-vgg-cifar", "cifar10")\n'
            'print(f"seed-vgg-cifar: opt {recipe.opt!r} (SGD) lr {recipe.lr} momentum {recipe.momentum}, "\n'
            '      f"batch {recipe.batch_size}, x{recipe.decay_rate} every {recipe.decay_epochs:g} epochs, "\n'
            '      f"{recipe.epochs} epochs")\n'
            "sgd = optimizer.defaults\n"
            "print(f\"the loop above: SGD lr {sgd['lr']} momentum {sgd['momentum']}, batch {loader.batch_size}, \"\n"
            '      f"x{scheduler.gamma} every {scheduler.step_size} epochs")',
        ),
        (
            "md",
            "## zoo's trained VGG: `vgg11_bn.cifar10`\n\n"
            "zoo ships one VGG trained on all 50,000 CIFAR-10 training images: configuration A of the VGG paper "
            "with batch normalisation and the CIFAR head. On the test set:",
        ),
        (
            "code",
            'pretrained = zoo.create_model("vgg11_bn.cifar10", pretrained=True)\n'
            "evaluated = subset(test_set, 1000, 0) if QUICK else test_set\n"
            "results = zoo.evaluate(pretrained, evaluated)\n"
            "print(f\"top-1 {score_text(results['acc1'], results['count'])}, top-5 {results['acc5']:.2f} % \"\n"
            "      f\"on {results['count']:,} test images\")\n"
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
            "The course's step: take the residual blocks of torchvision's `resnet.py` (`BasicBlock`, `Bottleneck`), "
            "stack them into a ResNet-50 made for 32 x 32 images (a 16-channel 3 x 3 stem, no max-pool, four stages "
            "of bottlenecks 16, 32, 64 and 128 wide), normalise the images with the mean and standard deviation of "
            "the training set, and train with SGD (0.1, momentum 0.9, weight decay 5e-4, batch 256, random crops, the "
            "rate halved every 10 epochs). Here the network is built in plain PyTorch from zoo's blocks, then shown "
            "to be zoo's own `resnet50` at a quarter of the width; then the ResNet paper's CIFAR networks, which zoo "
            "ships trained.",
        ),
        ("code", SETUP),
        (
            "md",
            "## The blocks: `zoo/models/resnet.py`\n\n"
            "zoo's `zoo.models.resnet` has torchvision's blocks, with the same layers and names:\n\n"
            "- `BasicBlock` (`expansion = 1`): two 3 x 3 convolutions, each followed by batch norm (`conv1`, `bn1`, "
            "`conv2`, `bn2`); the block returns `relu(branch(x) + shortcut(x))`.\n"
            "- `Bottleneck` (`expansion = 4`): a 1 x 1 convolution down to `planes` channels, a 3 x 3 one that "
            "carries the stride, and a 1 x 1 one up to `planes * 4` (`conv1`/`bn1` ... `conv3`/`bn3`).\n"
            "- `downsample`: where a block halves the side (stride 2) or changes the channel count, `x` cannot be "
            "added to the branch as it is. `ResNet._make_layer` gives the first block of such a stage a `downsample`, "
            "a strided 1 x 1 convolution (`conv1x1`) and a batch norm, which brings `x` to the branch's shape; the "
            "other blocks add `x` itself.\n\n"
            "A bottleneck that takes 64 channels to 32 inside and 128 out, halving the side:",
        ),
        (
            "code",
            "import torch.nn as nn\n\n"
            "from zoo.models.resnet import BasicBlock, Bottleneck, conv1x1\n\n"
            "down = nn.Sequential(conv1x1(64, 32 * Bottleneck.expansion, stride=2), nn.BatchNorm2d(128))\n"
            "block = Bottleneck(64, 32, stride=2, downsample=down)\n"
            "print(block)\n"
            'print("(1, 64, 32, 32) ->", tuple(block(torch.randn(1, 64, 32, 32)).shape))\n'
            "basic = BasicBlock(16, 16)\n"
            'print("BasicBlock(16, 16): (1, 16, 32, 32) ->", tuple(basic(torch.randn(1, 16, 32, 32)).shape))',
        ),
        (
            "md",
            "## The course's ResNet-50 for CIFAR-10, in plain PyTorch\n\n"
            "The course's class, on zoo's blocks: a 3 x 3 stem of 16 channels and no max-pool (a 32 x 32 image has "
            "no pixels to spare), four stages of `[3, 4, 6, 3]` bottlenecks whose first blocks have strides 1, 1, 2 "
            "and 2, a global average pool and one linear layer; the last batch norm of each block starts at zero, so "
            "each block starts as the identity. The widths and strides are arguments here, for the comparison below.",
        ),
        (
            "code",
            "class ResNet(nn.Module):\n"
            "    def __init__(self, block, layers, num_classes=10, widths=(16, 32, 64, 128), strides=(1, 1, 2, 2)):\n"
            "        super().__init__()\n"
            "        self.inplanes = widths[0]\n"
            "        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=1, padding=1, bias=False)\n"
            "        self.bn1 = nn.BatchNorm2d(widths[0])\n"
            "        self.relu = nn.ReLU(inplace=True)\n"
            "        self.layer1 = self._make_layer(block, widths[0], layers[0], strides[0])\n"
            "        self.layer2 = self._make_layer(block, widths[1], layers[1], strides[1])\n"
            "        self.layer3 = self._make_layer(block, widths[2], layers[2], strides[2])\n"
            "        self.layer4 = self._make_layer(block, widths[3], layers[3], strides[3])\n"
            "        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))\n"
            "        self.fc = nn.Linear(widths[3] * block.expansion, num_classes)\n"
            "        for m in self.modules():\n"
            "            if isinstance(m, nn.Conv2d):\n"
            '                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")\n'
            "            elif isinstance(m, Bottleneck):\n"
            "                nn.init.zeros_(m.bn3.weight)  # zero_init_residual=True in the course\n\n"
            "    def _make_layer(self, block, planes, blocks, stride):\n"
            "        downsample = None\n"
            "        if stride != 1 or self.inplanes != planes * block.expansion:\n"
            "            out = planes * block.expansion\n"
            "            downsample = nn.Sequential(conv1x1(self.inplanes, out, stride), nn.BatchNorm2d(out))\n"
            "        layers = [block(self.inplanes, planes, stride, downsample)]\n"
            "        self.inplanes = planes * block.expansion\n"
            "        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]\n"
            "        return nn.Sequential(*layers)\n\n"
            "    def forward(self, x):\n"
            "        x = self.relu(self.bn1(self.conv1(x)))\n"
            "        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))\n"
            "        return self.fc(torch.flatten(self.avgpool(x), 1))\n\n\n"
            "resnet50 = ResNet(Bottleneck, [3, 4, 6, 3])\n"
            'print(f"{sum(p.numel() for p in resnet50.parameters()):,} parameters")\n'
            "x = torch.randn(8, 3, 32, 32)\n"
            "h = resnet50.relu(resnet50.bn1(resnet50.conv1(x)))\n"
            'for name in ("layer1", "layer2", "layer3", "layer4"):\n'
            "    h = getattr(resnet50, name)(h)\n"
            '    print(f"{name}: {tuple(h.shape)}")\n'
            'print("output:", tuple(resnet50(x).shape))',
        ),
        (
            "md",
            "## The same thing in zoo\n\n"
            "With torchvision's widths (64, 128, 256, 512) and strides (1, 2, 2, 2), this class is zoo's `resnet50` "
            'with the CIFAR stem (`stem="cifar"`: a 3 x 3 stride-1 stem and no max-pool): the same `state_dict`, and '
            "with the same weights the same outputs. The course's network is that ResNet-50 at a quarter of the "
            "width, with its second stage kept at 32 x 32.",
        ),
        (
            "code",
            "def shapes(module):\n"
            "    return {k: tuple(v.shape) for k, v in module.state_dict().items()}\n\n\n"
            "wide = ResNet(Bottleneck, [3, 4, 6, 3], widths=(64, 128, 256, 512), strides=(1, 2, 2, 2))\n"
            "for m in wide.modules():  # each block's last batch norm at 1, so that every layer counts below\n"
            "    if isinstance(m, Bottleneck):\n"
            "        nn.init.ones_(m.bn3.weight)\n"
            'zoo50 = zoo.create_model("resnet50", stem="cifar", num_classes=10)\n'
            'print("same keys and shapes:", shapes(wide) == shapes(zoo50), f"({len(shapes(zoo50))} tensors)")\n'
            'print(f"parameters: {sum(p.numel() for p in wide.parameters()):,} (class), "\n'
            '      f"{sum(p.numel() for p in zoo50.parameters()):,} (zoo)")\n'
            "zoo50.load_state_dict(wide.state_dict())\n"
            "wide.eval()\n"
            "zoo50.eval()\n"
            "with torch.no_grad():\n"
            '    print("same outputs:", torch.equal(wide(x), zoo50(x)))\n'
            'print("the course\'s network has the same keys too:", shapes(resnet50).keys() == shapes(zoo50).keys())',
        ),
        (
            "md",
            "## Normalisation: the training set's mean and standard deviation\n\n"
            "The course computes, for each colour channel, the mean and standard deviation of every pixel of the "
            "50,000 training images (scaled to [0, 1]), and normalises with them. (The heading of the course's "
            "notebook quotes a standard deviation of (0.2023, 0.1994, 0.2010), a figure copied widely; the "
            "computation gives the numbers below.) zoo's CIFAR-10 constants are these numbers:",
        ),
        (
            "code",
            "from zoo.data import create_datasets, subset\n\n"
            'train_set, test_set, info = create_datasets("cifar10", DATA, download=True)\n'
            "pixels = train_set.images  # uint8, (50000, 3, 32, 32)\n"
            "mean = [pixels[:, c].float().div(255).mean().item() for c in range(3)]\n"
            "std = [pixels[:, c].float().div(255).std(correction=0).item() for c in range(3)]\n\n\n"
            "def show(values):\n"
            '    return ", ".join(f"{v:.4f}" for v in values)\n\n\n'
            'print(f"computed from {len(pixels)} training images: mean {show(mean)}, std {show(std)}")\n'
            'print(f"zoo\'s constants for CIFAR-10:             mean {show(info.mean)}, std {show(info.std)}")',
        ),
        (
            "md",
            "## The ResNet paper's CIFAR networks\n\n"
            "The ResNet paper's own CIFAR-10 networks are smaller: three stages of 16, 32 and 64 channels of basic "
            "blocks, 6n + 2 layers (`resnet20` ... `resnet110`). Beside them, the ImageNet ResNet-18 with the CIFAR "
            "stem and 10 classes:",
        ),
        (
            "code",
            'for name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):\n'
            "    model = zoo.create_model(name)\n"
            '    print(f"{name:<10} {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")\n'
            'lab = zoo.create_model("resnet18", stem="cifar", num_classes=10)\n'
            'print(f"resnet18, CIFAR stem, 10 classes: {sum(p.numel() for p in lab.parameters()) / 1e6:.2f} M")',
        ),
        (
            "md",
            "zoo has the course's recipe as `seed-resnet-cifar` (SGD 0.1, momentum 0.9, weight decay 5e-4, batch "
            "256, random crops, halved every 10 epochs). One epoch of `resnet20` on 5,000 training images:",
        ),
        (
            "code",
            "from zoo.training import get_recipe\n\n"
            'model = zoo.create_model("resnet20")\n'
            'recipe = get_recipe("seed-resnet-cifar", "cifar10").replace(epochs=1)\n'
            "result = zoo.fit(model, subset(train_set, 1000 if QUICK else 5000, 0), recipe=recipe,\n"
            "                 test_set=subset(test_set, 500 if QUICK else 2000, 0), progress=False)",
        ),
        (
            "md",
            "zoo's trained weights, each trained on all 50,000 training images, on the CIFAR-10 test set (the "
            "ResNet paper reports 91.25 % for ResNet-20 and 92.49 % for ResNet-32):",
        ),
        (
            "code",
            "from zoo.evaluation import score_text\n\n"
            "evaluated = subset(test_set, 1000, 0) if QUICK else test_set\n"
            'for name in ("resnet20.cifar10", "resnet32.cifar10"):\n'
            "    results = zoo.evaluate(zoo.create_model(name, pretrained=True), evaluated)\n"
            "    print(f\"{name}: top-1 {score_text(results['acc1'], results['count'])}, \"\n"
            "          f\"top-5 {results['acc5']:.2f} % on {results['count']:,} test images\")",
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
# A Python warning: "/path/zoo/x.py:30: UserWarning: message", then the source line that raised it, indented.
_WARNING = re.compile(r"^\S+\.py:\d+: (\w*Warning: .*)\n  \S.*$", re.M)


def tidy(text: str, paths: dict[str, str]) -> str:
    """Output text as a terminal shows it once a command is done: each line after its last carriage return, and
    no progress bars (zoo's clear themselves); a warning as its message alone, without the zoo file, line and
    source line it came from; this machine's folders (``paths``, longest first) written as the reader's."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if not _BAR.search(line)]
    text = _WARNING.sub(r"\1", "\n".join(line for i, line in enumerate(lines) if line or i == len(lines) - 1))
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
