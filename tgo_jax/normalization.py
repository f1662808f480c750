"""Per-channel pixel statistics of each dataset: the models' input normalisation (docs/FORMULAS.md §2).

A leaf module (no imports) so that both ``tgo_jax.data`` (which describes datasets) and ``tgo_jax.models``
(which normalise inside the network) read the same numbers without depending on each other.
Means and standard deviations are of [0, 1] pixels over each training set.
"""

FMNIST_MEAN, FMNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
# Event frames (two polarity channels) are fed as they are: no shift, no scaling.
EVENTS_MEAN, EVENTS_STD = (0.0, 0.0), (1.0, 1.0)
