"""Defaults shared by every experiment config; each experiment file overrides what it changes.

Optional values are ``ml_collections`` placeholders (``None`` until set, typed, so ``--config.X=V`` sets them);
values that must agree are one ``FieldReference`` (``tie``).
"""
import ml_collections
from ml_collections.config_dict import placeholder


def get_base_config() -> ml_collections.ConfigDict:
    """The full set of options with their defaults (docs/FORMULAS.md §3 for the training ones)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # Data (tgo_jax/data).
    c.dataset = "fashion_mnist"  # fashion_mnist | cifar10 | cifar100 | dvs_cifar10
    c.data_dir = ""  # "" = the dataset's default location (Debian package / tfds data_dir)
    c.augment = False  # random crop (4-pixel padding) + horizontal flip (CIFAR)
    # Event data (dataset dvs_cifar10, tgo_jax/data/dvs.py): T frames of size × size, counts or binary frames,
    # the integrated-frame cache folder ("" = ~/.cache/tgo_jax), and the roll augmentation (pixels, with augment).
    c.dvs = ml_collections.ConfigDict(dict(frames=10, size=48, mode="counts", count_cap=8, cache_dir="", roll=0))
    c.train_subset = 0  # use only the first N training images (0 = all)
    c.eval_subset = 0  # evaluate on the first N test images (0 = all)
    # Model (tgo_jax/models): arch + keyword arguments of the model class.
    # num_classes: None = the dataset's.
    c.model = ml_collections.ConfigDict(dict(arch="small", num_steps=4, num_classes=placeholder(int)))
    # Extra keyword arguments of the model class (channels, hidden, merge, ...); the speed options every
    # model takes are declared so that --config.model_kwargs.<name> overrides them.
    c.model_kwargs = ml_collections.ConfigDict(dict(
        remat_blocks=False,  # recompute each block in the backward pass (models/layers.py SpikingNet.block)
        conv_impl="auto"))  # tgo_jax.fastconv.IMPLS: auto | xla | im2col | xla_flip
    c.dtype = "float32"  # compute dtype: float32 | bfloat16 (params and optimiser state stay float32)
    # Neurons (tgo_jax.neurons.NeuronConfig); kind="noisy" is TGO's Noisy-LIF part.
    c.neuron = ml_collections.ConfigDict(dict(
        kind="lif", decay=0.5, threshold=1.0, surrogate="triangle", surrogate_param=placeholder(float),
        reset="hard",
        detach_reset=False, sigma=0.4, sigma_is_variance=False, expected=False, backward="surrogate",
        fused=True, remat=False, unroll=True))
    # Objective: strategy tet (the paper's "vanilla"), at or rat; plus the TGO margin penalty.
    c.strategy = "tet"  # tet | ce | at | rat
    c.tet_lambda = 1e-3
    c.margin = ml_collections.ConfigDict(dict(
        enabled=False, delta=0.5, p=2, lambda_max=0.6, schedule="cosine"))  # schedule: cosine|linear|constant
    c.at = ml_collections.ConfigDict(dict(eps=2 / 255, alpha=1 / 255, steps=2))  # docs/FORMULAS.md §3 AT
    c.rat = ml_collections.ConfigDict(dict(beta=2e-3, form="retraction"))  # form: retraction | loss
    c.sr = ml_collections.ConfigDict(dict(enabled=False, weight=0.01, h=0.01))  # SR term [choice: weight]
    # Optimiser: SGD, lr 0.1, momentum 0.9, cosine annealing (paper).
    c.optim = ml_collections.ConfigDict(dict(
        name="sgd", lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4, schedule="cosine"))
    c.batch_size = 128
    c.epochs = 300
    c.max_steps = 0  # stop after this many steps (0 = epochs × steps per epoch); the schedules still span epochs
    # Bookkeeping.
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 2
    c.eval_batch_size = 512  # global; like batch_size a multiple of the device count (512: up to 512 devices)
    c.eval_every_epochs = 1
    c.eval_noise_draws = 1  # clean accuracy of a noisy model: mean over this many noise draws
    c.num_devices = 0  # data parallelism over this many devices (0 = every device of every process)
    c.progress = True  # a progress bar on a terminal (the per-epoch lines are printed either way)
    c.log_every_steps = 50  # TensorBoard train scalars every N steps (0 = none; epoch records always)
    return c


def tie_frames_to_steps(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Event data feed one frame per step: ``model.num_steps`` becomes a reference to ``dvs.frames``, so
    setting either (``--config.dvs.frames=5``) sets both."""
    c.model.num_steps = c.dvs.get_ref("frames")
    return c


def tgo_overrides(lambda_max: float, margin: bool = True, noise: bool = True) -> dict:
    """TGO's two parts as flattened overrides: the margin penalty with a rising λ up to ``lambda_max``
    (eq. 12-14) and Noisy-LIF neurons (eq. 15); ``margin`` / ``noise`` keep one part (the ablation's rows)."""
    out = {"margin.enabled": True, "margin.lambda_max": lambda_max} if margin else {}
    return dict(out, **{"neuron.kind": "noisy"}) if noise else out


def apply_tgo(c: ml_collections.ConfigDict, lambda_max: float, eval_noise_draws: int) -> ml_collections.ConfigDict:
    """TGO on top of any strategy (``tgo_overrides``), evaluated with ``eval_noise_draws`` fresh noise draws
    (docs/FORMULAS.md §3)."""
    c.update_from_flattened_dict(tgo_overrides(lambda_max))
    c.eval_noise_draws = eval_noise_draws
    return c
