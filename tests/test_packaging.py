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

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

from tgo_jax import data
from tgo_train import configs

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {"tgo-train": "tgo_train.main", "tgo-evaluate": "tgo_train.evaluate",
           "tgo-experiment": "tgo_train.experiment", "tgo-bench": "tgo_train.bench",
           "tgo-reproduce": "tgo_train.reproduce"}


def test_config_names_are_the_packaged_modules():
    names = configs.names()
    assert {"fmnist_tgo", "fmnist_vanilla", "cifar", "test_tiny"} <= set(names)
    assert "base" not in names  # defines get_base_config only
    path = configs.config_path("fmnist_tgo")
    assert os.path.isfile(path) and path == os.path.join(configs.CONFIG_DIR, "fmnist_tgo.py")
    assert configs.config_path("cifar:cifar10,wrn16_4,rat,tgo") == \
        os.path.join(configs.CONFIG_DIR, "cifar.py") + ":cifar10,wrn16_4,rat,tgo"
    as_path = os.path.join("tgo_train", "configs", "cifar.py") + ":cifar10,wrn16_4,rat,tgo"
    assert configs.config_path(as_path) == as_path  # a path (from the repository root) is kept
    with pytest.raises(ValueError, match="'fmnist_tog'.*fmnist_tgo"):
        configs.config_path("fmnist_tog")


def test_resolve_config_flag_forms():
    path = configs.config_path("test_tiny")
    argv = ["prog", "--config", "test_tiny", "--config.epochs=3", "--workdir", "w"]
    assert configs.resolve_config_flag(argv) == ["prog", "--config", path, "--config.epochs=3", "--workdir", "w"]
    assert configs.resolve_config_flag(["prog", "--config=test_tiny"]) == ["prog", f"--config={path}"]


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11")
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
def test_wheel_trains_from_an_empty_directory(tmp_path):
    """A fresh venv with only the wheel installed (its dependencies come from this interpreter's
    site-packages through a .pth file, so no network is needed) runs tgo-train from an empty folder."""
    try:
        data.load("fashion_mnist")
    except data.DataUnavailableError as e:
        pytest.skip(f"Fashion-MNIST is not available: {e}")
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
