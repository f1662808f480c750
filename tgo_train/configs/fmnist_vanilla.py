"""Fashion-MNIST, small spiking net, vanilla (TET) training: the default experiment's baseline.

Sized for 2 CPU cores: ~1.2 M multiply-adds per image per step, T = 4.
"""
from tgo_train.configs.base import get_base_config


def get_config():
    c = get_base_config()
    c.dataset = "fashion_mnist"
    c.model.arch = "small"
    c.model.num_steps = 4
    c.epochs = 2
    c.batch_size = 64
    c.optim.lr = 0.05
    c.optim.weight_decay = 1e-4
    c.checkpoint_every_steps = 200
    c.eval_batch_size = 1000
    return c
