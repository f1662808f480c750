"""DVS-CIFAR10 experiments of the paper's Appendix A (GPU-sized): one config per (arch, strategy, method).

Select with a config argument, e.g.::

    python -m tgo_train.main --config tgo_train/configs/dvs.py:wrn16_4,at,tgo --workdir runs/dvs_wrn_at_tgo \
        --config.data_dir=/data/cifar10_dvs

arch ∈ {vgg11, wrn16_4}, strategy ∈ {tet, at} (tet = the paper's vanilla BPTT/TET), method ∈ {vanilla, tgo}.
Event frames: T = 10 frames of 48 × 48 × 2 (counts, one event = 1/8 of the range), fed step by step, so the
model runs T = 10 steps (``model.num_steps`` is tied to ``dvs.frames``: set either). Augmentation: 4-pixel crop, flip and a roll of up to 5 pixels, per recording. The
paper gives no DVS-specific training settings; the CIFAR ones are kept (SGD lr 0.1, momentum 0.9, cosine,
λ_max 0.6 / 0.4, AT ε = 2/255 with 2 PGD steps, in frame units), with 200 epochs and batch 64.
"""
from tgo_jax.losses import STRATEGIES as ALL_STRATEGIES
from tgo_train.configs.base import apply_tgo, get_base_config, tie_frames_to_steps
from tgo_train.configs.cifar import ARCHS, LAMBDA_MAX, METHODS

STRATEGIES = tuple(s for s in ALL_STRATEGIES if s in ("tet", "at"))  # the paper's Appendix A: TET and AT


def parse(arg: str):
    parts = [p.strip() for p in (arg or "wrn16_4,at,vanilla").split(",")]
    if len(parts) != 3:
        raise ValueError(f"dvs config argument must be 'arch,strategy,method', got {arg!r}")
    arch, strategy, method = parts
    for name, value, allowed in (("arch", arch, ARCHS), ("strategy", strategy, STRATEGIES),
                                 ("method", method, METHODS)):
        if value not in allowed:
            raise ValueError(f"dvs config: {name} must be one of {allowed}, got {value!r}")
    return arch, strategy, method


def get_config(arg: str = "wrn16_4,at,vanilla"):
    arch, strategy, method = parse(arg)
    c = get_base_config()
    c.dataset = "dvs_cifar10"
    c.dvs.frames = 10
    c.dvs.size = 48
    c.dvs.roll = 5
    c.augment = True
    c.model.arch = arch
    tie_frames_to_steps(c)  # one step per frame
    c.model.num_classes = 10
    c.strategy = strategy
    c.epochs = 200
    c.batch_size = 64
    c.eval_batch_size = 100
    c.optim.lr = 0.1
    c.optim.weight_decay = 5e-4
    c.checkpoint_every_steps = 1000
    return apply_tgo(c, LAMBDA_MAX[arch], eval_noise_draws=5) if method == "tgo" else c
