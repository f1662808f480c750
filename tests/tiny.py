"""The tests' training config: a seconds-long run (a 4/8-channel net, T = 2, 256 training images, 2 epochs).

A config file like those of ``tgo_train/configs`` (``--config tests/tiny.py``), kept out of the package:
it is no experiment. ``tests.conftest`` names it (``TINY_CONFIG``, ``tiny_config``)."""
from tgo_train.configs.base import get_base_config


def get_config():
    c = get_base_config()
    c.dataset = "fashion_mnist"
    c.model.arch = "small"
    c.model.num_steps = 2
    c.model_kwargs.channels = (4, 8)
    c.model_kwargs.hidden = 16
    c.train_subset = 256
    c.eval_subset = 128
    c.batch_size = 32
    c.epochs = 2
    c.optim.lr = 0.05
    c.checkpoint_every_steps = 4
    c.eval_batch_size = 128
    c.progress = False
    return c
