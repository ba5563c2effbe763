"""NumPy's BLAS held to the host's share of the cores while JAX computes beside it.

Manual's products on every core's BLAS thread while XLA's threads run JAX's chunk leave each side's
threads waiting on the other's: measured on a 2-core machine, manual's chunks then ran 2 to 3 times
slower than alone and the overlapped trajectory took longer than the two sides one after the other.
With manual's BLAS on half the cores (one thread there) while JAX computes, the overlapped trajectory
was the fastest of the three, at every load seen. threadpoolctl, where it is installed, sets the limit;
where it is not, the trajectory runs manual's chunks apart from JAX's (``can_limit``). The comparisons,
made while JAX computes too, run on one BLAS thread (``one_thread``).
"""

import contextlib
import os

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # an optional package: without it manual does not run beside JAX
    ThreadpoolController = None

_controller = None
_cap = None  # the thread limit ``at_most`` holds in force, None outside one


def can_limit() -> bool:
    return ThreadpoolController is not None


def host_share(cores: int | None = None) -> int:
    """BLAS threads for manual beside JAX: half the cores (XLA keeps the rest busy), at least one."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    return max(1, cores // 2)


def beside_jax():
    """NumPy's BLAS on at most ``host_share()`` threads inside the block (as it was after); nothing without
    threadpoolctl."""
    return at_most(host_share())


def one_thread():
    """NumPy's BLAS on one thread inside the block, as for the trajectory's comparisons: a dot over one step's
    row is memory-bound and gains nothing from threads that other work may be holding up."""
    return at_most(1)


@contextlib.contextmanager
def at_most(threads: int):
    """NumPy's BLAS on at most ``threads`` threads inside the block (as it was after); nothing without
    threadpoolctl."""
    global _controller, _cap
    if ThreadpoolController is None:
        yield
        return
    if _controller is None:  # finding the loaded libraries takes a while: once per process
        _controller = ThreadpoolController()
    now = [lib["num_threads"] for lib in _controller.select(user_api="blas").info()]
    limit = min([threads, *now])  # never more than it had
    with _controller.limit(limits=limit, user_api="blas"):
        before, _cap = _cap, limit
        try:
            yield
        finally:
            _cap = before


def single_threaded() -> bool:
    """Whether NumPy's BLAS is held to one thread here (inside ``one_thread``; never without threadpoolctl)."""
    return _cap == 1
