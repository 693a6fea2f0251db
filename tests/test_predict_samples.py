"""`zoo predict` without arguments (`make demo`) fails when the bundled weights score below their promise."""

from __future__ import annotations

import torch

import zoo.predict
from zoo.cli import main as cli
from zoo.predict import below_promise


def test_the_promise_is_the_binomial_spread_of_the_test_accuracy():
    # MNIST's weights promise 99.29 %: on 10 images P(9 or fewer right) = 1 - 0.9929^10 = 6.9 %, plausible;
    # P(8 or fewer) = 1 - 0.9929^10 - 10 * 0.9929^9 * 0.0071 = 0.22 %, below the 1 % line.
    assert not below_promise(10, 10, 99.29) and not below_promise(9, 10, 99.29)
    assert below_promise(8, 10, 99.29)
    # 94.46 % (Fashion-MNIST): P(7 or fewer of 10) = 1.5 %, P(6 or fewer) = 0.15 %.
    assert not below_promise(7, 10, 94.46) and below_promise(6, 10, 94.46)
    assert not below_promise(0, 10, None) and not below_promise(0, 0, 99.0)  # no promise, nothing to hold


def test_weights_that_got_worse_make_the_demo_fail(monkeypatch, capsys):
    real = zoo.predict.create_for_prediction

    def always_the_first_class(name, checkpoint):
        model = real(name, checkpoint)
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.copy_(torch.arange(len(head.bias), 0, -1, dtype=head.bias.dtype))  # class 0 wins
        return model

    monkeypatch.setattr(zoo.predict, "create_for_prediction", always_the_first_class)
    assert cli(["predict"]) == 1
    out = capsys.readouterr().out
    failed = [line.split()[1] for line in out.splitlines() if line.startswith("FAIL ")]
    assert failed == ["mnist_cnn.mnist:", "resnet20.fashion_mnist:", "resnet20.cifar10:"]  # every model, named
    assert all("1/10" in line for line in out.splitlines() if line.startswith("FAIL "))
    assert out.count("  1/10 ") == 3 and "3/30 " in out  # each set's score, and the total
