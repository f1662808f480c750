"""Installing the package: console scripts, configs by name, and a wheel that trains outside a checkout."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib

import pytest

from tgo_train import configs
from tests.conftest import TINY_CONFIG, parse_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {"tgo-train": "tgo_train.main", "tgo-evaluate": "tgo_train.evaluate", "tgo-audit": "tgo_train.audit_main",
           "tgo-experiment": "tgo_train.experiment", "tgo-bench": "tgo_train.bench",
           "tgo-reproduce": "tgo_train.reproduce"}


def test_config_names_are_the_packaged_modules():
    names = configs.names()
    assert {"fmnist_tgo", "fmnist_vanilla", "cifar", "dvs"} <= set(names)
    assert "base" not in names  # defines get_base_config only
    assert not [n for n in names if "test" in n or "tiny" in n]  # the tests' config is not shipped
    path = configs.config_path("fmnist_tgo")
    assert os.path.isfile(path) and path == os.path.join(configs.CONFIG_DIR, "fmnist_tgo.py")
    assert configs.config_path("cifar:cifar10,wrn16_4,rat,tgo") == \
        os.path.join(configs.CONFIG_DIR, "cifar.py") + ":cifar10,wrn16_4,rat,tgo"
    as_path = os.path.join("tgo_train", "configs", "cifar.py") + ":cifar10,wrn16_4,rat,tgo"
    assert configs.config_path(as_path) == as_path  # a path (from the repository root) is kept
    with pytest.raises(ValueError, match="'fmnist_tog'.*fmnist_tgo"):
        configs.config_path("fmnist_tog")


def test_resolve_config_flag_forms():
    path = configs.config_path("fmnist_vanilla")
    argv = ["prog", "--config", "fmnist_vanilla", "--config.epochs=3", "--workdir", "w"]
    assert configs.resolve_config_flag(argv) == ["prog", "--config", path, "--config.epochs=3", "--workdir", "w"]
    assert configs.resolve_config_flag(["prog", "--config=fmnist_vanilla"]) == ["prog", f"--config={path}"]
    assert configs.resolve_config_flag(["prog", "--config", TINY_CONFIG]) == ["prog", "--config", TINY_CONFIG]


def test_console_scripts_point_at_each_program():
    with open(ROOT / "pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts == {name: f"{module}:entry" for name, module in SCRIPTS.items()}
    for module in SCRIPTS.values():  # one process each: the programs define flags of the same names
        check = f"import {module} as m; assert callable(m.entry)"
        out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]


def test_unknown_config_name_is_a_one_line_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tgo_train.main", "--config", "nosuch", "--workdir",
                          str(tmp_path / "w")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        f"error: --config: 'nosuch' is neither a config file nor a config name; names: "
        f"{', '.join(configs.names())} (with an argument after ':' for cifar)"]
    assert not (tmp_path / "w").exists()


def _build_wheel(tmp: pathlib.Path) -> pathlib.Path:
    """The project's wheel, built offline from a copy of the sources (the checkout stays clean)."""
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("tgo_jax", "tgo_train"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("tgo_jax-*.whl")
    return wheel


@pytest.mark.slow
@pytest.mark.usefixtures("fashion_mnist")
def test_wheel_trains_from_an_empty_directory(tmp_path):
    """A fresh venv with only the wheel installed (its dependencies come from this interpreter's
    site-packages through a .pth file, so no network is needed) runs tgo-train from an empty folder."""
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Plain path lines: this interpreter's packages, but not its editable install of the project.
    dependencies = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if os.path.isdir(p)]
    pathlib.Path(purelib, "dependencies.pth").write_text("\n".join(dict.fromkeys(dependencies)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import tgo_train; print(tgo_train.__file__)"], cwd=empty, env=env,
                           check=True, capture_output=True, text=True).stdout
    assert where.startswith(purelib), where  # the installed copy, not the checkout
    out = subprocess.run([str(venv / "bin" / "tgo-train"), "--config", "fmnist_tgo", "--workdir", "W",
                          "--config.max_steps=2", "--config.eval_subset=128"], cwd=empty, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(empty / "W" / "config.json") as f:
        saved = json.load(f)
    assert saved["max_steps"] == 2 and saved["neuron"]["kind"] == "noisy" and saved["margin"]["enabled"]
    assert (empty / "W" / "checkpoints").is_dir()
    assert any(p.name.startswith("events.out.tfevents.") for p in (empty / "W").iterdir())
    assert sorted(p.name for p in empty.iterdir()) == ["W"]  # nothing written beside the workdir


HELP_FLAG = {"tgo-train": "--workdir", "tgo-evaluate": "--attacks", "tgo-audit": "--transfer_from",
             "tgo-experiment": "--num_examples", "tgo-bench": "--arch", "tgo-reproduce": "--seeds"}


def test_every_console_script_help_lists_its_flags():
    """Each entry as its console script calls it (``__main__`` is then a wrapper without flags or docstring)."""
    runs = {}
    for name, module in SCRIPTS.items():  # one process each (the programs share flag names), side by side
        flag = "-h" if name == "tgo-bench" else "--help"  # -h too, which absl alone does not know
        call = f"import sys; sys.argv = [{name!r}, {flag!r}]; from {module} import entry; entry()"
        runs[name] = subprocess.Popen([sys.executable, "-c", call], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
    for name, proc in runs.items():
        out, _ = proc.communicate(timeout=120)
        description = out.splitlines()[0]
        assert len(description) > 20 and "USAGE" not in description, out[:500]
        assert f"  {HELP_FLAG[name]}" in out and "  --[no]verbose" in out, out[-2000:]
        if name == "tgo-train":  # the config's fields and their defaults
            assert "model.num_classes=None" in out and "  --[no]distributed" in out, out[:3000]


def test_optional_config_fields_are_settable():
    from tgo_jax import data as tgo_data
    from tgo_train import config_check
    config = parse_config(TINY_CONFIG, "--config.neuron.surrogate_param=2.0", "--config.model.num_classes=12")
    assert config.neuron.surrogate_param == 2.0 and config.model.num_classes == 12
    config_check.check(config)
    _, kwargs = config_check.model_arguments(config, tgo_data.dataset_info("fashion_mnist"))
    assert kwargs["num_classes"] == 12
    default = parse_config(TINY_CONFIG)
    assert default.model.num_classes is None and default.neuron.surrogate_param is None
    _, kwargs = config_check.model_arguments(default, tgo_data.dataset_info("fashion_mnist"))
    assert kwargs["num_classes"] == 10 and "surrogate_param" not in kwargs  # unset: the dataset's


@pytest.mark.parametrize("override", ["--config.dvs.frames=6", "--config.model.num_steps=6"])
def test_dvs_frames_and_steps_are_one_value(override):
    config = parse_config("dvs:vgg11,at,vanilla", override)
    assert config.dvs.frames == config.model.num_steps == 6


def test_import_tgo_jax_exposes_its_subpackages():
    """In a fresh interpreter: ``tgo_jax.attacks`` works without importing it first, and only when used."""
    check = ("import sys, tgo_jax; assert 'tgo_jax.attacks' not in sys.modules; "
             "assert callable(tgo_jax.attacks.pgd) and callable(tgo_jax.data.load); "
             "assert set(tgo_jax.SUBMODULES) <= set(dir(tgo_jax)); "
             "import pkgutil; assert set(tgo_jax.SUBMODULES) == {m.name for m in pkgutil.iter_modules(tgo_jax.__path__)}")
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import tgo_jax
    with pytest.raises(AttributeError, match="nosuch"):
        tgo_jax.nosuch
