"""A reproduction run's record (``<run dir>/reproduce.json``, and each entry of the report's ``runs``), typed.

One ``RunRecord`` per (model, seed) of the grid: how it was trained (config, commit, CPU, seconds), its
test-accuracy curve, its measures, its gradient-masking audit and its result cells. A cell is one (noise
setting, ε label, column) of the grid with its accuracy, its per-example correctness and the settings it
was evaluated with (``Cell``). On disk a record keeps the layout the project has always written: three
parallel nested dicts keyed [noise][ε][column] (``accuracy``, ``per_example``, ``cell_spec``), read and
written only here (``from_json`` / ``to_json``).

A run retrained on a later machine is compared with its committed record (``agreement``, a ``Check``).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from typing import Iterator, Optional, Sequence

import numpy as np

Key = tuple  # (noise setting "on" / "off", ε label, column name)


def run_dir(workdir: str, size_name: str, model: str, seed: int) -> str:
    """Where the reproduction keeps one (model, seed) run."""
    return os.path.join(workdir, size_name, model, f"seed{seed}")


@dataclasses.dataclass
class Cell:
    """One column at one ε and noise setting. ``spec``: what its number depends on besides the model
    (``grid.cell_spec``); None for a cell evaluated with the record's ``size_spec``."""

    accuracy: Optional[float] = None  # percent
    per_example: Optional[list] = None  # per test image: the share of noise draws classified right
    spec: Optional[dict] = None


@dataclasses.dataclass
class Check:
    """A retrained run against its committed record (``agreement``): whether the test-accuracy curves are
    equal, how many shared cells are equal, each differing one as "noise ε column: old -> new", and the
    largest change in points."""

    same_test_curve: bool
    cells_equal: int
    cells_differ: list
    max_change: float
    committed_train_commit: Optional[str] = None

    @property
    def differs(self) -> bool:
        return not self.same_test_curve or bool(self.cells_differ)

    @classmethod
    def from_json(cls, d: dict) -> "Check":
        return cls(**d)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# Fields kept as they are, in the order a record is written.
_HEAD = ("model", "seed", "size", "size_spec", "config", "train_commit", "train_cpu_model", "train_wall_s",
         "train_cpu_s")
_TAIL = ("metrics", "step", "eval_wall_s", "eval_cpu_s", "eval_commit")


@dataclasses.dataclass
class RunRecord:
    """One (model, seed) run of the reproduction; see the module docstring."""

    model: str
    seed: int
    size: str = ""
    size_spec: dict = dataclasses.field(default_factory=dict)  # the grid.Size it was first evaluated at, as a dict
    config: dict = dataclasses.field(default_factory=dict)  # its training config (plain JSON values)
    train_commit: Optional[str] = None
    train_cpu_model: Optional[str] = None
    train_wall_s: Optional[float] = None
    train_cpu_s: Optional[float] = None
    cells: dict = dataclasses.field(default_factory=dict)  # Key -> Cell, in the order evaluated
    analysis: dict = dataclasses.field(default_factory=dict)  # noise -> {measure: value}
    metrics: list = dataclasses.field(default_factory=list)  # metrics.jsonl: one record per epoch
    step: Optional[int] = None  # the checkpoint evaluated
    eval_wall_s: dict = dataclasses.field(default_factory=dict)  # "noise ε" -> seconds spent on its cells
    eval_cpu_s: dict = dataclasses.field(default_factory=dict)
    eval_commit: Optional[str] = None
    audit: dict = dataclasses.field(default_factory=dict)  # ε label -> the audit's kept result (reproduce.py)
    committed_check: Optional[Check] = None

    # -------------------------------------------------------------------------------------------- reading

    @property
    def name(self) -> str:
        return f"{self.model}/seed{self.seed}"

    @property
    def noisy(self) -> bool:
        """A Noisy-LIF model (evaluated with its noise on and off)."""
        return self.config.get("neuron", {}).get("kind") == "noisy"

    def noises(self) -> list:
        """The noise settings with at least one accuracy cell, in order."""
        return list(dict.fromkeys(k[0] for k, c in self.cells.items() if c.accuracy is not None))

    def eps_labels(self, noise: str) -> list:
        return list(dict.fromkeys(k[1] for k, c in self.cells.items() if k[0] == noise and c.accuracy is not None))

    def columns(self, noise: str, eps: str) -> dict:
        """{column: accuracy} at (noise, ε), in order."""
        return {k[2]: c.accuracy for k, c in self.cells.items()
                if k[0] == noise and k[1] == eps and c.accuracy is not None}

    def accuracy(self, noise: str, eps: str, column: str) -> Optional[float]:
        cell = self.cells.get((noise, eps, column))
        return cell.accuracy if cell else None

    def hits(self, noise: str, eps: str) -> dict:
        """{column: per-example correctness} at (noise, ε)."""
        return {k[2]: c.per_example for k, c in self.cells.items()
                if k[0] == noise and k[1] == eps and c.per_example is not None}

    def accuracy_cells(self) -> Iterator[tuple]:
        """(key, accuracy) of every cell that has one."""
        return ((k, c.accuracy) for k, c in self.cells.items() if c.accuracy is not None)

    @property
    def n_cells(self) -> int:
        """How many (noise, ε, column) accuracy cells the record has."""
        return sum(1 for _ in self.accuracy_cells())

    def test_curve(self) -> list:
        """Test accuracy after each finished epoch."""
        return [m.get("test_accuracy") for m in self.metrics if not m.get("partial")]

    def is_complete(self, columns: Sequence[str], eps_labels: Sequence[str]) -> bool:
        """Every (noise setting, ε, column) cell and every measure of the run is there."""
        return all(noise in self.analysis and all(self.accuracy(noise, e, a) is not None
                                                  for e in eps_labels for a in columns)
                   for noise in (("on", "off") if self.noisy else ("on",)))

    def seconds(self) -> tuple:
        """(wall, CPU) seconds of its training and of its attacks."""
        return (self.train_wall_s or 0, self.train_cpu_s or 0, sum(self.eval_wall_s.values()),
                sum(self.eval_cpu_s.values()))

    # -------------------------------------------------------------------------------------------- changing

    def set_cell(self, key: Key, accuracy: float, per_example=None, spec: Optional[dict] = None) -> None:
        self.cells[key] = Cell(accuracy, per_example, spec)

    def drop_cell(self, key: Key) -> None:
        self.cells.pop(key, None)

    def with_cells(self, extra: dict) -> "RunRecord":
        """A copy with more accuracy cells ({key: accuracy}), e.g. the report's worst-case columns."""
        out = copy.deepcopy(self)
        for key, value in extra.items():
            out.cells[key] = Cell(accuracy=value)
        return out

    # -------------------------------------------------------------------------------------------- JSON

    @classmethod
    def from_json(cls, d: dict) -> "RunRecord":
        """A record as stored (``to_json``); every record the project has written reads."""
        known = set(_HEAD + _TAIL) | {"accuracy", "per_example", "cell_spec", "analysis", "audit", "committed_check"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"record {d.get('model')}/seed{d.get('seed')}: unknown fields {unknown}")
        cells = {}
        for field, attr in (("accuracy", "accuracy"), ("per_example", "per_example"), ("cell_spec", "spec")):
            for noise, by_eps in d.get(field, {}).items():
                for eps, values in by_eps.items():
                    for name, value in values.items():
                        setattr(cells.setdefault((noise, eps, name), Cell()), attr, value)
        kept = {k: d[k] for k in _HEAD + _TAIL if k in d}
        check = d.get("committed_check")
        return cls(**kept, cells=cells, analysis=dict(d.get("analysis", {})), audit=dict(d.get("audit", {})),
                   committed_check=Check.from_json(check) if check else None)

    def to_json(self, per_example: bool = True) -> dict:
        """The stored form (``per_example=False`` leaves the per-example correctness out: the report keeps it
        in a file of its own)."""
        out = {k: getattr(self, k) for k in _HEAD if getattr(self, k) not in (None,)}
        out["accuracy"], specs, hits = {}, {}, {}
        for (noise, eps, name), c in self.cells.items():
            for target, value in ((out["accuracy"], c.accuracy), (specs, c.spec), (hits, c.per_example)):
                if value is not None:
                    target.setdefault(noise, {}).setdefault(eps, {})[name] = value
        out["analysis"] = self.analysis
        out.update({k: getattr(self, k) for k in _TAIL if getattr(self, k) not in (None, [], {})})
        if specs:
            out["cell_spec"] = specs
        if hits and per_example:
            out["per_example"] = hits
        if self.audit:
            out["audit"] = self.audit
        if self.committed_check is not None:
            out["committed_check"] = self.committed_check.to_json()
        return out


# ----------------------------------------------------------------------------- two trainings of one run

def same_training(a: RunRecord, b: RunRecord) -> bool:
    """Whether two records are of one training: the same config trained by the same code to the same
    test-accuracy curve (training is deterministic for a given code, JAX and machine)."""
    key = lambda r: (r.config, r.train_commit, r.test_curve())
    return key(a) == key(b)


def agreement(new: RunRecord, old: RunRecord) -> Check:
    """How a retrained run compares with the committed record of the same (model, seed, config): on the
    machine it was trained on its test accuracy after each epoch and its accuracy cells are equal; a
    difference (another machine: XLA compiles for the CPU it runs on) is reported, not hidden: each
    differing cell old -> new, and the largest change in points. The report's worst-case columns are
    left out (they are computed from the others)."""
    same, differ, largest = 0, [], 0.0
    for (noise, eps, name), value in old.accuracy_cells():
        now = new.accuracy(noise, eps, name)
        if name.startswith("Worst") or now is None:
            continue
        if abs(now - value) < 1e-9:
            same += 1
        else:
            differ.append(f"{noise} {eps} {name}: {value:.2f} -> {now:.2f}")
            largest = max(largest, abs(now - value))
    return Check(same_test_curve=new.test_curve() == old.test_curve(), cells_equal=same, cells_differ=differ,
                 max_change=round(largest, 2), committed_train_commit=old.train_commit)


# ----------------------------------------------------------------------------- per-example hits on disk

def encode_per_example(record: RunRecord) -> dict:
    """Each column's per-example correctness (shares k/d of d noise draws, d ≤ 9) as one string
    ``"d:kkk…"``, keyed [noise][ε][column]: 200 examples take 202 characters instead of a list of floats, so
    every run's hits fit in the committed ``results/per_example.json`` (the worst case over columns needs
    them)."""
    out = {}
    for (noise, eps, name), c in record.cells.items():
        if c.per_example is not None:
            out.setdefault(noise, {}).setdefault(eps, {})[name] = _encode(c.per_example)
    return out


def _encode(values: Sequence[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    for d in range(1, 10):
        k = np.round(v * d)
        if np.all(np.abs(v * d - k) < 1e-2) and np.all((k >= 0) & (k <= d)):
            return f"{d}:" + "".join(str(int(x)) for x in k)
    raise ValueError("per-example values are not shares of at most 9 draws")


def decode_per_example(encoded: dict) -> dict:
    """Inverse of ``encode_per_example``: {noise: {ε: {column: shares as floats}}}."""
    def decode(s: str) -> list:
        d, digits = s.split(":")
        return [int(c) / int(d) for c in digits]
    return {noise: {eps: {name: decode(s) for name, s in cells.items()} for eps, cells in by_eps.items()}
            for noise, by_eps in encoded.items()}
