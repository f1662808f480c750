"""Multi-process runs on JAX's own runtime (``jax.distributed``): flags, start-up, and process 0's duties.

Every program (``tgo_train.main``, ``tgo_train.evaluate``, ``tgo_train.audit_main``, ``tgo_train.experiment``) calls
``initialize_from_flags()`` first. Without ``--distributed`` (or ``--coordinator_address``) it does
nothing and the program runs as one process. With it, ``jax.distributed.initialize`` joins the
processes: under SLURM and on Cloud TPU pod slices JAX reads the coordinator, the process count and
this process's id from the environment; elsewhere pass them as flags (or ``JAX_COORDINATOR_ADDRESS``).
Afterwards ``jax.devices()`` lists the devices of every process, and the programs shard each batch
over all of them (``tgo_jax.sharding``). Process 0 alone writes files and shows progress
(``is_primary``); orbax checkpoints are saved and restored by all processes together.
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from typing import Optional

import jax
import numpy as np
from absl import flags
from jax.experimental import multihost_utils


class CoordinatorUnreachableError(RuntimeError):
    """The coordinator of a multi-process run did not answer in time."""


def define_flags() -> None:
    """Defines --distributed and its settings (once; several programs share them)."""
    if "distributed" in flags.FLAGS:
        return
    flags.DEFINE_bool("distributed", False, "join a multi-process run with jax.distributed.initialize "
                      "(SLURM and TPU pod slices are detected; elsewhere set the three flags below)")
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies --distributed)")
    flags.DEFINE_integer("num_processes", None, "number of processes of the run")
    flags.DEFINE_integer("process_id", None, "this process's index in [0, num_processes)")
    flags.DEFINE_integer("distributed_timeout", 300, "seconds to wait for the other processes before giving up")


def initialize_from_flags() -> None:
    """``initialize`` with the values of the flags from ``define_flags`` (errors: ``ValueError``,
    ``CoordinatorUnreachableError``; ``tgo_train.cli`` prints them as one line)."""
    f = flags.FLAGS
    if f.distributed or f.coordinator_address:
        initialize(f.coordinator_address, f.num_processes, f.process_id, timeout_s=f.distributed_timeout)


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, timeout_s: int = 300) -> None:
    """Joins the run with ``jax.distributed.initialize``; must come before any other JAX call.

    Settings left None come from the environment (SLURM, Cloud TPU, ``JAX_COORDINATOR_ADDRESS``).
    A process other than 0 first waits up to ``timeout_s`` for the coordinator's port and raises
    ``CoordinatorUnreachableError`` if it never opens. Joining itself gets the same deadline: when the
    others do not join in time (on process 0), or the port is not a JAX coordinator's, JAX would abort the
    process (SIGABRT, a C++ stack trace) after its own timeout; instead, at the deadline, one ``error:``
    line is printed and the process exits with status 1 (nothing has been written by then).
    """
    if timeout_s < 1:
        raise ValueError(f"distributed_timeout must be >= 1 second, got {timeout_s}")
    if jax.distributed.is_initialized():
        return
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    explicit = [v is not None for v in (num_processes, process_id)]
    if any(explicit) and not (all(explicit) and address):
        raise ValueError("a multi-process run outside SLURM or a TPU pod needs all of coordinator_address, "
                         f"num_processes and process_id; got {address!r}, {num_processes!r}, {process_id!r}")
    if all(explicit) and not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be in [0, num_processes={num_processes}), got {process_id}")
    who = f"process {process_id} of {num_processes}" if all(explicit) else "this process"
    print(f"{who}: joining the run coordinated at {address or '(address from the cluster environment)'} "
          f"(waiting up to {timeout_s} s)", file=sys.stderr, flush=True)
    if address and process_id:
        wait_for_coordinator(address, timeout_s, who)
    elif address and process_id == 0:
        check_port_free(address, who)  # JAX would fail to serve it after a long wait
    with _exit_at(time.monotonic() + timeout_s, f"{who}: the run did not come together within {timeout_s} s at "
                            f"{address or 'the cluster coordinator'}: start every process (the same "
                            "--coordinator_address and --num_processes, each its own --process_id), or check that "
                            "the address is process 0's and the network between the hosts"):
        jax.distributed.initialize(address, num_processes, process_id,
                                   initialization_timeout=timeout_s + JAX_TIMEOUT_MARGIN_S)


JAX_TIMEOUT_MARGIN_S = 60  # JAX's own start-up timeout (which aborts the process) comes this much after ours


@contextlib.contextmanager
def _exit_at(deadline: float, message: str):
    """Runs the block; if it is still running at ``deadline`` (``time.monotonic``), prints ``error: message``
    and ends the process with status 1 (``os._exit``: the block is stuck in C++, which nothing else ends)."""
    done = threading.Event()

    def give_up():
        if not done.wait(max(0.0, deadline - time.monotonic())):
            print(f"error: {message}", file=sys.stderr, flush=True)
            os._exit(1)

    threading.Thread(target=give_up, name="distributed start-up deadline", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def host_and_port(address: str) -> tuple[str, int]:
    """``("host", port)`` of ``host:port`` (``[::1]:1234`` too); ValueError for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"coordinator_address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)  # IPv6 literals are written [::1]:1234


def check_port_free(address: str, who: str = "this process") -> None:
    """Process 0 serves ``address``'s port: ValueError naming it when another program already listens there."""
    _, port = host_and_port(address)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a recently closed port is free
        try:
            s.bind(("", port))
        except OSError as e:
            raise ValueError(f"{who}: the coordinator port {port} of {address} cannot be served on this host "
                             f"({e.strerror}): another program uses it; choose a free port") from None


def wait_for_coordinator(address: str, timeout_s: float, who: str = "this process") -> None:
    """Returns once ``host:port`` accepts a TCP connection; ``CoordinatorUnreachableError`` after ``timeout_s``."""
    host, port = host_and_port(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5.0, timeout_s)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise CoordinatorUnreachableError(
                    f"{who}: the coordinator {address} did not answer within {timeout_s:g} s ({e}); start "
                    "process 0 there, or check --coordinator_address and the network") from None
        time.sleep(0.5)


def is_primary() -> bool:
    """True on process 0 (and in a one-process run): the process that writes files and shows progress."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process gets here (a no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is true on some process (every process must call it; no sync with one process)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.bool_))))


def host_array(x: jax.Array) -> np.ndarray:
    """The whole of a (possibly sharded) array as numpy on this process: gathered from every process
    when some of its shards live elsewhere."""
    if x.is_fully_addressable:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
