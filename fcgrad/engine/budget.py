"""Will a run fit? The memory a check or an audit needs, and the size of its ``--save`` file, before any work.

The model, for P parameters of ``itemsize`` bytes (B = P·itemsize per step), S steps, and chunks of
c steps (the comparison holds c steps per side at once, ``chunk_bytes // B``):
- working set per chunk: both sides' recorded parameters (2·c·B), the JAX side's device copy (c·B),
  and the float64 differences of the comparison (3·c·P·8 bytes);
- data and activations: N samples through every width, on both sides, a few arrays each;
- with ``--save``: both sides' whole histories (2·(S+1)·B, and as much again for each optimizer moment kept
  beside the parameters), held twice while the chunks are joined;
- the file: both histories, both loss curves, the data.
It is an estimate within a small factor, meant to refuse runs that cannot fit, not to size exact ones. A refusal
names the options that drive the parts that make it up (``require_fit``'s ``knobs``): the widths drive the
comparison, N the samples through the layers, the steps and ``--save`` the histories.
"""

import os
import shutil
from dataclasses import dataclass

import numpy as np

from fcgrad.manual.errors import FcgradError

LARGE_SAVE_BYTES = 100 * 10**6  # a --save file above this size is announced on stderr before the run
DEFAULT_CHUNK_BYTES = 32 * 2**20  # the comparison's chunk (fcgrad.engine.trajectory.CHUNK_BYTES, where it is measured)
# A part of the estimate that holds at least this share of it is one of its causes, and a refusal names the options
# that drive it. Of the three parts the largest holds at least a third, so it is always named; a part of a quarter
# or more changes the total by as much as the memory a run misses by is often short of.
DRIVER_SHARE = 0.25
# the options that drive each part, when the caller names none of its own
KNOBS = {"comparison": "smaller widths", "samples": "fewer samples", "histories": "fewer steps or no --save"}


@dataclass(frozen=True)
class Estimate:
    comparison_bytes: int  # the steps compared at once, both sides and their differences: grows with the widths
    samples_bytes: int  # N samples through every width, on both sides: grows with N (and the widths)
    history_bytes: int  # kept for --save (0 without it): grows with the steps and the widths
    save_bytes: int  # size of the --save file (0 without it)

    @property
    def working_bytes(self) -> int:
        """Held at once while comparing, without the kept histories."""
        return self.comparison_bytes + self.samples_bytes

    @property
    def memory_bytes(self) -> int:
        return self.working_bytes + self.history_bytes

    def parts(self) -> dict[str, int]:
        """The estimate's parts, by the name ``KNOBS`` gives each."""
        return {"comparison": self.comparison_bytes, "samples": self.samples_bytes, "histories": self.history_bytes}


def human(n: float) -> str:
    """Bytes as ``812 B``, ``3.4 MB``, ``74.0 GB`` (powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def estimate(p, *, keep_history: bool, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Estimate:
    """The memory and ``--save`` size of comparing ``p.steps`` steps of ``p`` (see the module's model).

    ``p`` is a run description (``fcgrad.engine.description``: no array is built yet, so a run that cannot
    fit is refused before it takes any memory) or a ``Problem``.
    """
    if hasattr(p, "n_params"):  # a description: counted from its widths
        n_params, samples = p.n_params, p.samples
    else:
        n_params, samples = sum(v.size for layer in p.params for v in layer.values()), p.batch
    itemsize = np.dtype(p.dtype).itemsize
    per_step = n_params * itemsize
    chunk = min(max(p.steps, 1), max(1, chunk_bytes // per_step))
    comparison = chunk * (3 * per_step + 3 * n_params * 8)
    through = 2 * 4 * samples * sum(p.sizes) * itemsize  # x, z, y and a residual per layer, per side
    if not keep_history:
        return Estimate(comparison, through, 0, 0)
    histories = 2 * (p.steps + 1) * per_step * (1 + moment_trees(p))
    data = ((p.sizes[0] + p.sizes[-1]) * samples + n_params) * itemsize
    save = histories + 2 * p.steps * itemsize + data
    return Estimate(comparison, through, 2 * histories, save)


def moment_trees(p) -> int:
    """The optimizer's moments kept beside the parameters at every step: Adam 2, momentum and RMSProp 1, SGD 0."""
    optimizer = getattr(p, "optimizer", None)
    if optimizer is None:  # a Problem: full-batch SGD
        return 0
    from fcgrad.manual.optimizers import init_state

    return sum(1 for name in init_state(optimizer, []) if name != "count")


def available_memory() -> int | None:
    """Bytes the system can give without swapping: MemAvailable from /proc/meminfo, else sysconf; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(folder: str) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def require_fit(
    est: Estimate, *, save_path: str | None, memory: int | None, disk: int | None, knobs: dict[str, str] | None = None
) -> None:
    """Refuse (``FcgradError``) a run whose estimate exceeds the memory available, or a file the disk cannot hold.

    ``knobs``: what to ask for to shrink each part (``KNOBS``' names), in the caller's options; the refusal asks for
    those of the parts that hold at least ``DRIVER_SHARE`` of the estimate, largest first.
    """
    if memory is not None and est.memory_bytes > memory:
        knobs = {**KNOBS, **(knobs or {})}
        parts = [f"comparison {human(est.comparison_bytes)}", f"samples through the layers {human(est.samples_bytes)}"]
        if est.history_bytes:
            parts.append(f"--save histories {human(est.history_bytes)}")
        causes = sorted((n for n, b in est.parts().items() if b >= DRIVER_SHARE * est.memory_bytes),
                        key=lambda n: -est.parts()[n])  # fmt: skip
        raise FcgradError(
            f"memory: this run needs about {human(est.memory_bytes)} ({', '.join(parts)}), "
            f"but {human(memory)} is available; expected {', or '.join(knobs[n] for n in causes)}"
        )
    if save_path is not None and disk is not None and est.save_bytes > disk:
        raise FcgradError(
            f"--save: the file will take about {human(est.save_bytes)}, but the disk holding {save_path!r} "
            f"has {human(disk)} free; expected fewer --steps or another directory"
        )


def save_note(est: Estimate, save_path: str) -> str | None:
    """A line for stderr when the ``--save`` file will be large, else None."""
    if est.save_bytes > LARGE_SAVE_BYTES:
        return f"note: --save {save_path} will take about {human(est.save_bytes)}"
    return None
