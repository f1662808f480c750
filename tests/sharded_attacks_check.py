"""Attacks with the batch sharded over 8 fake CPU devices against one device; run by tests/test_sharding.py.

``python tests/sharded_attacks_check.py OUT.npz``: each attack of ``tgo_jax.attacks`` (FGSM, RFGSM, PGD,
APGD, MTPGD, PGD with EoT on a Noisy-LIF net, the surrogate ensemble) is jitted once here, at the edge,
and called twice: inputs on one device, then images and labels sharded with a NamedSharding over an
8-device mesh and the variables replicated. Saves both adversarial batches and correctness vectors.
Small steps and a 16-image batch keep compilation short.
"""
import functools
import sys
import types

import sharding_check  # noqa: F401  (sets JAX_PLATFORMS and the 8-device XLA_FLAGS before jax starts)
import jax  # noqa: E402
import numpy as np  # noqa: E402

from tgo_jax import attacks, models, sharding  # noqa: E402
from tgo_train import evaluation  # noqa: E402

EPS, ALPHA = 8 / 255, 2 / 255


def attack_table():
    """name -> (noisy model?, attack partial)."""
    return {
        "fgsm": (False, functools.partial(attacks.fgsm, eps=EPS)),
        "rfgsm": (False, functools.partial(attacks.rfgsm, eps=EPS)),
        "pgd": (False, functools.partial(attacks.pgd, eps=EPS, alpha=ALPHA, steps=3)),
        "apgd": (False, functools.partial(attacks.apgd, eps=EPS, steps=4)),
        "mtpgd": (False, functools.partial(attacks.mtpgd, eps=EPS, alpha=ALPHA, steps=2, num_targets=2)),
        "pgd_eot": (True, functools.partial(attacks.pgd, eps=EPS, alpha=ALPHA, steps=2, eot=2)),
    }


def main(out_path):
    assert jax.device_count() == sharding_check.NUM_DEVICES, jax.devices()
    mesh = sharding.make_mesh()
    x, y = sharding_check.batches(1)[0]
    nets = {noisy: sharding_check.make_model() if not noisy else
            models.create("small", channels=(4, 8), hidden=16, num_steps=2, kind="noisy") for noisy in (False, True)}
    # BatchNorm scales of 4 make the untrained net spike (with 1 its logits and gradients are all 0).
    variables = jax.tree_util.tree_map_with_path(
        lambda path, leaf: 4 * leaf if "scale" in jax.tree_util.keystr(path) else leaf,
        sharding_check.init_variables(nets[False], x))
    one = jax.devices()[0]
    placed = {"single": (jax.device_put(variables, one), jax.device_put(x, one), jax.device_put(y, one)),
              "sharded": (sharding.replicate(variables, mesh), *sharding.shard_batch((x, y), mesh))}
    key = jax.random.PRNGKey(3)
    out = {}
    for name, (noisy, attack) in attack_table().items():
        logits_fn = attacks.model_logits_fn(nets[noisy])

        @jax.jit
        def run(v, xs, ys, k, attack=attack, logits_fn=logits_fn, draws=2 if noisy else 1):
            k_attack, k_eval = jax.random.split(k)
            x_adv = attack(logits_fn, v, xs, ys, k_attack)
            return x_adv, attacks.correct(logits_fn, v, x_adv, ys, k_eval, draws=draws)

        for where, (v, xs, ys) in placed.items():
            x_adv, hits = run(v, xs, ys, key)
            out[f"{where}_{name}_x"], out[f"{where}_{name}_correct"] = np.asarray(x_adv), np.asarray(hits)
            out[f"{where}_{name}_devices"] = len(x_adv.sharding.device_set)
    ensemble = jax.jit(functools.partial(
        attacks.ensemble_robust_accuracy, nets[False], rules=(("triangle", None), ("sigmoid", None)),
        attack=functools.partial(attacks.pgd, eps=EPS, alpha=ALPHA, steps=2)))
    for where, (v, xs, ys) in placed.items():
        result = ensemble(v, xs, ys, key)
        out[f"{where}_ensemble"] = np.asarray([result.accuracy, *result.per_rule.values()])
    # The evaluation loop (tgo_train.evaluation): 20 images in batches of 16 (the last one padded), the Noisy-LIF
    # net with 2 noise draws, clean and PGD with EoT, over the 8 devices and over one: the same keys per batch.
    images, labels = (np.concatenate(a)[:20] for a in zip(*sharding_check.batches(2)))
    run = types.SimpleNamespace(model=nets[True], splits={"test": (images, labels)})
    suite = [("Clean", None), ("PGD", attack_table()["pgd_eot"][1])]
    for where, mesh_ in (("single", sharding.make_mesh(1)), ("sharded", mesh)):
        _, hits = evaluation.evaluate_suite(run, sharding.replicate(variables, mesh_), suite, batch_size=16, draws=2,
                                            seed=5, progress=False, per_example=True, mesh=mesh_)
        out.update({f"{where}_suite_{name}": h for name, h in hits.items()})
    out["clean_x"] = x
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1])
