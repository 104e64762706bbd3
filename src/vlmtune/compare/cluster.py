"""Ray, optional: import it with an install hint, and start or join a cluster for one command.

Why: Ray is the engine that spreads a grid or a sweep over the GPUs of one or several
machines, but most users run one machine and should not need it installed. ``require_ray``
turns a missing Ray into one line that says how to install it (exit status 2), and
``ray_session`` gives a command the Ray it asked for: the cluster at ``address`` (started
beforehand with ``ray start --head`` / ``ray start --address``), or a local instance that
starts and stops with the command. An already initialised Ray (a test module's, a
notebook's) is used as it is and left running.

Example:
    >>> with ray_session(None) as ray:  # doctest: +SKIP
    ...     ray.cluster_resources()["CPU"]
    2.0
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

from vlmtune.errors import VlmtuneError

INSTALL_HINT = "needs Ray: pip install 'vlmtune[ray]' (or pip install 'ray[tune]>=2.9')"


def require_ray(what: str = "--ray") -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.tune  # noqa: F401 - the sweep needs it; the extra installs both
    except ImportError:
        raise VlmtuneError(f"{what} {INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Join the cluster at ``address``, or start a local Ray for the duration of the block.

    Workers' output is not forwarded to this terminal (each task writes its own log file);
    ``num_cpus`` caps a local instance (default: every core Ray detects).
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(address="local", num_cpus=num_cpus, **options)
    try:
        yield ray
    finally:
        ray.shutdown()


def variant_resources(ray: Any, cpus: float, gpus: float | None) -> dict[str, float]:
    """What one variant's task asks for; ``gpus=None``: one GPU when the cluster has any."""
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"num_cpus": float(cpus), "num_gpus": float(gpus)}
