"""A MetaSchedule builder whose worker processes outlive a batch.

MetaSchedule's ``LocalBuilder`` starts a fresh process pool for every batch (TVM does it to bound
a memory leak in long-lived workers). Each fresh worker imports TVM and ``tvm.s_tir.tensor_intrin``
before its first build, which costs 20–50 s per batch on a loaded 2-core machine: more than the
builds themselves. This builder keeps its workers across batches and recycles each one after
``recycle_after`` builds, which bounds the same leak. A build that hangs is still killed after
``timeout_sec`` (the pool restarts that worker), and the workers die with the tuner, whose pipe
they read.
"""

from __future__ import annotations

from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.builder import local_builder
from tvm.ir.utils import derived_object
from tvm.support.popen_pool import PopenPoolExecutor, StatusKind


def _warm_up() -> None:
    # what default_build imports on its first call, paid once per worker instead of per batch
    import tvm.s_tir.tensor_intrin  # noqa: F401
    from tvm.s_tir.meta_schedule.builder import local_builder  # noqa: F401


def _nothing() -> None:
    pass


def _build_one(args):
    return local_builder._worker_func(*args)


@derived_object
class PooledBuilder(PyBuilder):
    def __init__(self, max_workers: int = 1, timeout_sec: float = 300.0, recycle_after: int = 256):
        super().__init__()
        self.max_workers = max_workers
        self.timeout_sec = timeout_sec
        self.recycle_after = recycle_after
        self._pool = None

    def _executor(self) -> PopenPoolExecutor:
        if self._pool is None:
            self._pool = PopenPoolExecutor(max_workers=self.max_workers, timeout=self.timeout_sec,
                                           initializer=_warm_up, maximum_process_uses=self.recycle_after)
        return self._pool

    def start(self) -> None:
        """Start the workers now, so that their imports overlap the tuner's own set-up."""
        pool = self._executor()
        for _ in range(self.max_workers):
            pool.submit(_nothing)

    def build(self, build_inputs):
        jobs = [(None, None, b.mod, b.target, local_builder._serialize_params(b.params)) for b in build_inputs]
        results = []
        for outcome in self._executor().map_with_error_catching(_build_one, jobs):
            if outcome.status == StatusKind.COMPLETE:
                results.append(BuilderResult(outcome.value, None))
            elif outcome.status == StatusKind.TIMEOUT:
                results.append(BuilderResult(None, f"build timed out after {self.timeout_sec} s"))
            else:
                results.append(BuilderResult(None, f"build failed\n{outcome.value}"))
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
