"""Where a check's time goes: wall time per phase, and how much of it JAX spent compiling.

``Timings`` is filled by ``fcgrad.engine.run.check`` and ``fcgrad.engine.trajectory``; ``fcgrad check -v`` prints it.
The compile time comes from JAX's own monitoring events (tracing, lowering and the backend's compile),
summed while the check runs, and also counted to the innermost phase open when it happened
(``compile_in``), so that a phase's time can be read with and without JAX's compiling.

JAX compiling in another thread (the trajectory compiles JAX's step while manual's first chunk runs) is
counted in the whole but to no phase: it took none of their wall time.

A phase opened inside another is that phase's time only: the outer one's clock stops while it runs. The
trajectory runs manual's next chunk and the comparisons of the last one while JAX computes, inside JAX's
phase; its phases still add up to its wall time, each second counted once.
"""

import contextlib
import threading
import time
from collections import defaultdict

import jax.monitoring

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
# the phases in the order a check runs them, with the words -v prints
PHASES = {
    "gradients": "gradients at the initial parameters (both sides)",
    "finite_differences": "finite differences (manual, float64)",
    "manual_run": "trajectory: manual training",
    "jax_run": "trajectory: JAX (a compiled loop, or one step from each of manual's)",
    "comparisons": "trajectory: the comparisons",
    "final": "final loss and outputs",
}


class Timings:
    """Seconds per phase (``phase``, inner phases taken off outer ones), and JAX's compile seconds within the whole."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.compile_s = 0.0
        self.compile_by_phase: dict[str, float] = defaultdict(float)  # JAX compiling inside each phase
        self._open: list[str] = []  # the phases running now, innermost last
        self._inner: list[float] = []  # per open phase, the seconds of the phases run inside it
        self.compile_aside_s = 0.0  # JAX compiling in another thread, while the phases ran on
        self._thread = threading.get_ident()  # the thread whose phases these are

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        self._open.append(name)
        self._inner.append(0.0)
        try:
            yield
        finally:
            self._open.pop()
            elapsed = time.perf_counter() - start
            self.seconds[name] += elapsed - self._inner.pop()
            if self._inner:
                self._inner[-1] += elapsed

    def compile_in(self, *phases: str) -> float:
        """Seconds of JAX compiling counted to these phases (within ``compiling``)."""
        return sum(self.compile_by_phase.get(name, 0.0) for name in phases)

    @contextlib.contextmanager
    def compiling(self):
        """Sum JAX's compile events while the block runs."""

        def listen(event: str, duration: float, **_):
            if event in COMPILE_EVENTS:
                self.compile_s += duration
                if threading.get_ident() != self._thread:
                    self.compile_aside_s += duration
                elif self._open:
                    self.compile_by_phase[self._open[-1]] += duration

        jax.monitoring.register_event_duration_secs_listener(listen)
        try:
            yield
        finally:
            jax.monitoring.unregister_event_duration_listener(listen)

    def as_dict(self) -> dict:
        return {**{k: self.seconds[k] for k in PHASES if k in self.seconds}, "jax_compile": self.compile_s}

    def text(self) -> str:
        total = sum(self.seconds.values())
        lines = [f"time: {total:.2f} s in all"]
        for key, words in PHASES.items():
            if key in self.seconds:
                compiling = self.compile_by_phase.get(key, 0.0)
                note = f" ({compiling:.3f} s of it JAX compiling)" if compiling >= 0.0005 else ""
                lines.append(f"  {self.seconds[key]:>7.3f} s  {words}{note}")
        aside = f" ({self.compile_aside_s:.3f} s of it ahead, while manual ran)" if self.compile_aside_s else ""
        lines.append(f"  of which JAX compiling: {self.compile_s:.3f} s{aside}")
        return "\n".join(lines)
