"""How a run executes, as opposed to what it computes (:mod:`bloodcli.pipeline.plan`).

Nothing here changes a feature value: the cache, worker processes, a Dask scheduler, where CNNs
run, the progress callback and whether unreadable images stop the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bloodcli.pipeline.parallel import resolve_jobs

if TYPE_CHECKING:  # the cache (NumPy) loads when a run opens it, not with the options (CLI help)
    from bloodcli.pipeline.cache import FeatureCache

ProgressCallback = Callable[[int, int], None]  # (samples just finished, total steps)


@dataclass(frozen=True)
class ExecutionOptions:
    """Execution settings shared by every workflow that computes features or fits models.

    Parameters
    ----------
    cache_dir : Path, optional
        Feature cache folder (default ``$BLOODCLI_CACHE_DIR`` or ``~/.cache/bloodcli``).
    use_cache : bool
        Read and write the feature cache.
    jobs : int, optional
        Cores for per-image work (this process and ``jobs - 1`` workers) and parallel folds; None: every core.
    skip_errors : bool
        Skip unreadable images and list them instead of stopping.
    batch_size : int
        Images per CNN batch.
    progress : callable, optional
        ``progress(advance, total)``.
    device : {"auto", "cpu", "gpu"}
        Where deep extractors run.
    scheduler : str, optional
        Dask scheduler address or ``"local"`` (default ``$DASK_SCHEDULER_ADDRESS``).
    """

    cache_dir: Path | None = None
    use_cache: bool = True
    jobs: int | None = None
    skip_errors: bool = False
    batch_size: int = 32
    progress: ProgressCallback | None = None
    device: str = "auto"
    scheduler: str | None = None

    @property
    def workers(self) -> int:
        """Cores used: ``jobs``, or every available core."""
        return resolve_jobs(self.jobs)

    def cache(self) -> FeatureCache:
        from bloodcli.pipeline.cache import FeatureCache, default_cache_dir

        return FeatureCache.checked((self.cache_dir or default_cache_dir()) if self.use_cache else None)
