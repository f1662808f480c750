"""Bad input to the programs: one line on stderr naming the field, a non-zero exit, nothing written.

The training program runs in this process through ``tgo_train.cli.run`` (the same path as ``python -m
tgo_train.main``), so each case costs milliseconds: the config is checked before data or JAX work.
"""
from __future__ import annotations

import os
import subprocess
import sys

import ml_collections
import pytest
from absl import flags

from tgo_train import cli, config_check, main
from tgo_train.configs import base, cifar, fmnist_tgo, fmnist_vanilla
from tests.conftest import TINY_CONFIG, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``python -m tgo_train.main ARGS`` in this process: (exit code, stdout, stderr)."""
    argv = ["tgo_train.main", *args]
    monkeypatch.setattr(sys, "argv", argv)  # ml_collections reads --config.KEY overrides from sys.argv
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:  # defined per parse by ml_collections
        delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main.main, argv)
    out = capsys.readouterr()
    return exit_info.value.code or 0, out.out, out.err


@pytest.mark.parametrize("overrides, expected", [
    (["--config.nonexistent=1"], ["unknown config field 'nonexistent'", "nearest known:"]),
    (["--config.model_kwargs.hiden=32"], ["'model_kwargs.hiden'", "nearest known: model_kwargs.hidden"]),
    (["--config.max_steps=-5"], ["config.max_steps must be an int >= 0, got -5"]),
    (["--config.epochs=-1", "--config.optim.schedule=constant"], ["config.epochs must be an int >= 1, got -1"]),
    (["--config.epochs=-1"], ["config.epochs must be an int >= 1, got -1"]),
    (["--config.keep_checkpoints=0"], ["config.keep_checkpoints must be an int >= 1, got 0"]),
    (["--config.dtype=float16"], ["config.dtype must be one of ('float32', 'bfloat16'), got 'float16'"]),
    (["--config.eval_every_epochs=0"], ["config.eval_every_epochs must be an int >= 1, got 0"]),
    (["--config.eval_batch_size=0"], ["config.eval_batch_size must be an int >= 1, got 0"]),
    (["--config.neuron.threshold=inf"], ["config.neuron.threshold must be a finite number > 0, got inf"]),
    (["--config.optim.momentum=1.5"], ["config.optim.momentum must be a number in [0.0, 1.0], got 1.5"]),
])
def test_bad_config_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, overrides, expected):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    workdir = tmp_path / "w"
    code, _, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", str(workdir), *overrides)
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for text in expected:
        assert text in err, err
    assert not workdir.exists()


def test_traceback_on_request(tmp_path, monkeypatch, capsys):
    args = ("--config", TINY_CONFIG, "--workdir", str(tmp_path / "w"), "--config.eval_every_epochs=0")
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(config_check.ConfigError, match="eval_every_epochs"):
        run_main(monkeypatch, capsys, *args)
    monkeypatch.delenv(cli.DEBUG_ENV)
    with pytest.raises(config_check.ConfigError, match="eval_every_epochs"):
        run_main(monkeypatch, capsys, *args, "--verbose")
    with pytest.raises(AttributeError):  # ml_collections' own error for an unknown key
        run_main(monkeypatch, capsys, *args[:4], "--config.nonexistent=1", "--verbose")
    assert not (tmp_path / "w").exists()


def test_schema_covers_every_base_field_and_accepts_the_shipped_configs_and_the_tests_one():
    fields = {path for path, _ in config_check.flatten(base.get_base_config())}
    assert fields <= set(config_check.SCHEMA), sorted(fields - set(config_check.SCHEMA))
    for config in (base.get_base_config(), tiny_config(), fmnist_tgo.get_config(),
                   fmnist_vanilla.get_config(), cifar.get_config("cifar100,wrn16_4,rat,tgo")):
        config_check.check(config)


@pytest.mark.parametrize("field, value, expected", [
    ("seed", -1, "config.seed must be an int >= 0, got -1"),
    ("batch_size", 16.0, "config.batch_size must be an int >= 1, got 16.0"),
    ("augment", 1, "config.augment must be True or False, got 1"),
    ("margin.schedule", "cos", "config.margin.schedule must be one of ('cosine', 'linear', 'constant')"),
    ("neuron.kind", "izhikevich", "config.neuron.kind must be one of ('lif', 'noisy')"),
])
def test_check_names_field_value_and_what_is_allowed(field, value, expected):
    config = ml_collections.ConfigDict(tiny_config().to_dict(), type_safe=False)  # as from JSON
    section, _, key = field.rpartition(".")
    (config[section] if section else config)[key] = value
    with pytest.raises(config_check.ConfigError) as info:
        config_check.check(config)
    assert str(info.value).startswith(expected), str(info.value)


def test_unknown_model_keyword_is_named_before_training():
    config = tiny_config()
    config.model_kwargs.unlock()
    config.model_kwargs.widht = 3
    with pytest.raises(config_check.ConfigError, match="model_kwargs.*widht"):
        config_check.check(config)


def test_programs_print_one_line_in_a_real_process(tmp_path):
    """The same in a fresh interpreter, for the training and the evaluation program."""
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop(cli.DEBUG_ENV, None)
    for args, expected in (
            (["tgo_train.main", "--config", TINY_CONFIG, "--workdir", str(tmp_path / "w"),
              "--config.eval_batch_size=0"], "config.eval_batch_size must be an int >= 1, got 0"),
            (["tgo_train.evaluate", "--workdir", str(tmp_path / "missing")], "no checkpoints in")):
        out = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode != 0
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr[-2000:]
        assert expected in out.stderr
    assert not (tmp_path / "w").exists()


def test_missing_config_file_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    missing = str(tmp_path / "nope.py")
    code, _, err = run_main(monkeypatch, capsys, "--config", missing, "--workdir", str(tmp_path / "w"))
    assert code != 0 and err == f"error: config file {missing!r} does not exist (--config {missing})\n"
