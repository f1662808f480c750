"""Fashion-MNIST, small spiking net, TGO = TET + membrane margin penalty (dynamic λ) + Noisy-LIF."""
from tgo_train.configs import fmnist_vanilla


def get_config():
    c = fmnist_vanilla.get_config()
    c.margin.enabled = True
    c.margin.lambda_max = 0.6
    c.neuron.kind = "noisy"
    c.eval_noise_draws = 3
    return c
