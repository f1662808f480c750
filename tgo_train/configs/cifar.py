"""CIFAR-10/100 experiments of the paper (GPU-sized): one config per (dataset, arch, strategy, method).

Select with a config argument, e.g.::

    python -m tgo_train.main --config tgo_train/configs/cifar.py:cifar10,wrn16_4,rat,tgo --workdir runs/c10_wrn_rat_tgo

dataset ∈ {cifar10, cifar100}, arch ∈ {vgg11, wrn16_4}, strategy ∈ {tet, at, rat} (tet = the paper's vanilla
BPTT/TET), method ∈ {vanilla, tgo}. Paper settings: SGD lr 0.1, momentum 0.9, cosine, 300 epochs, T = 4,
λ_max 0.6 (VGG-11) / 0.4 (WRN-16), AT ε = 2/255 with 2 PGD steps, RAT β = 0.002 with weight decay off.
"""
from tgo_jax.losses import STRATEGIES as ALL_STRATEGIES
from tgo_train.configs.base import apply_tgo, get_base_config

DATASETS = {"cifar10": 10, "cifar100": 100}
ARCHS = ("vgg11", "wrn16_4")
STRATEGIES = tuple(s for s in ALL_STRATEGIES if s != "ce")  # the paper's CIFAR tables: TET, AT, RAT
METHODS = ("vanilla", "tgo")
LAMBDA_MAX = {"vgg11": 0.6, "wrn16_4": 0.4}


def parse(arg: str):
    parts = [p.strip() for p in (arg or "cifar10,wrn16_4,tet,vanilla").split(",")]
    if len(parts) != 4:
        raise ValueError(f"cifar config argument must be 'dataset,arch,strategy,method', got {arg!r}")
    dataset, arch, strategy, method = parts
    for name, value, allowed in (("dataset", dataset, tuple(DATASETS)), ("arch", arch, ARCHS),
                                 ("strategy", strategy, STRATEGIES), ("method", method, METHODS)):
        if value not in allowed:
            raise ValueError(f"cifar config: {name} must be one of {allowed}, got {value!r}")
    return dataset, arch, strategy, method


def get_config(arg: str = "cifar10,wrn16_4,tet,vanilla"):
    dataset, arch, strategy, method = parse(arg)
    c = get_base_config()
    c.dataset = dataset
    c.augment = True
    c.model.arch = arch
    c.model.num_steps = 4
    c.model.num_classes = DATASETS[dataset]
    c.strategy = strategy
    c.epochs = 300
    c.batch_size = 128
    c.optim.lr = 0.1
    c.optim.weight_decay = 0.0 if strategy == "rat" else 5e-4
    c.checkpoint_every_steps = 1000
    return apply_tgo(c, LAMBDA_MAX[arch], eval_noise_draws=5) if method == "tgo" else c
