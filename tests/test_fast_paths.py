"""The switch of the Trainer's speed patches (tunebench.fast_paths): one class per base, the base when off.

What the patches compute (the stock Trainer's losses, gradient norms and weights) is tested in test_bench.py.
"""

from __future__ import annotations

from transformers import Trainer

from tunebench.fast_paths import FastPathsMixin, trainer_class
from tunebench.train import FastPathTrainer, SequentialEvalTrainer


def test_off_is_the_base_class_itself():
    assert trainer_class(Trainer, fast_paths=False) is Trainer
    assert trainer_class(SequentialEvalTrainer, fast_paths=False) is SequentialEvalTrainer


def test_on_mixes_the_patches_in_first_once_per_base():
    fast = trainer_class(SequentialEvalTrainer, fast_paths=True)
    assert fast is FastPathTrainer is trainer_class(SequentialEvalTrainer, fast_paths=True)
    assert fast.__mro__[1:3] == (FastPathsMixin, SequentialEvalTrainer)     # the patches win over the base
    assert fast.__name__ == "FastPathSequentialEvalTrainer" and fast.__module__ == "tunebench.train"
    stock = trainer_class(Trainer, fast_paths=True)
    assert stock is not fast and issubclass(stock, FastPathsMixin) and not issubclass(stock, SequentialEvalTrainer)
    for name in ("floating_point_ops", "_clip_grad_norm", "train", "training_step"):
        assert getattr(fast, name) is getattr(FastPathsMixin, name), name
