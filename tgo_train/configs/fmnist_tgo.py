"""Fashion-MNIST, small spiking net, TGO = TET + membrane margin penalty (dynamic λ) + Noisy-LIF."""
from tgo_train.configs import fmnist_vanilla
from tgo_train.configs.base import apply_tgo


def get_config():
    return apply_tgo(fmnist_vanilla.get_config(), lambda_max=0.6, eval_noise_draws=3)
