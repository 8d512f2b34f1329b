"""Where per-image work runs."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence

from bloodcli.errors import ResourceUnavailableError


def resolve_jobs(jobs: int | None) -> int:
    """Number of worker processes: None, 0 or negative means every available core."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return available if not jobs or jobs < 0 else jobs


def in_order(submit, items, ahead: int):
    """Yield ``submit(item)`` handles in order while keeping ``ahead`` items submitted.

    Bounded look-ahead keeps memory to a few tasks' results however large the dataset.
    """
    pending: deque = deque()
    remaining = iter(items)
    for item in itertools.islice(remaining, ahead):
        pending.append(submit(item))
    while pending:
        current = pending.popleft()
        following = next(remaining, None)
        if following is not None:
            pending.append(submit(following))
        yield current


#: BLAS pools (NumPy's OpenBLAS and the one OpenCV bundles): read once, when the library loads.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
#: Thread pools of numerical libraries, capped to one thread in each worker process.
THREAD_VARIABLES = ("OMP_NUM_THREADS", *BLAS_THREAD_VARIABLES, "NUMEXPR_NUM_THREADS")


def one_blas_thread() -> None:
    """BLAS on one thread in this process, unless its environment says otherwise; before NumPy is imported.

    For processes bloodcli owns (the command line): they parallelise over images and folds (``--jobs``),
    and their matrices are small. A BLAS pool costs more than it gives there: it starts a thread per core
    when NumPy and OpenCV load, about 0.1-0.25 s of CPU on every command that touches pixels, and logistic
    regression on 3,200 x 192 features trained 1.2-1.9x faster without it (2-core machine).
    """
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def one_thread_per_worker() -> None:
    """Run this worker process on one thread: one worker per core, and no library oversubscribing it.

    OpenCV's pool is capped directly (it would otherwise start a thread per core in every worker);
    the variables reach OpenMP/BLAS pools started after this call. Freed image buffers are kept for
    the next image (:func:`keep_freed_memory`).
    """
    import cv2

    keep_freed_memory()
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)


#: Freed memory a process bloodcli owns keeps for reuse. glibc's defaults hand every freed image-sized buffer back
#: to the OS and map it again for the next image, a page fault per 4 KiB: 8 % of classical extraction's time.
KEPT_FREE_MEMORY = 128 * 1024 * 1024
#: Allocations below this size come from the heap (reused), not from a fresh mapping each time.
HEAP_ALLOCATIONS_UP_TO = 32 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> None:
    """Let glibc keep freed buffers for the next image instead of unmapping them (Linux; elsewhere a no-op).

    For processes bloodcli owns (the command line and its workers): a Python caller's process is left as it is.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    with contextlib.suppress(OSError, AttributeError):  # another C library (musl) has no mallopt
        libc = ctypes.CDLL(None)
        libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_MEMORY)
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_ALLOCATIONS_UP_TO)


def in_directory(directory: str, function, *args):
    """``function(*args)`` run in ``directory`` (a local pool's worker task).

    Worker processes outlive a call and keep the working directory they started in, where the
    caller's relative paths would resolve elsewhere (a library caller may change directory between calls).
    """
    if os.getcwd() != directory:
        os.chdir(directory)
    return function(*args)


@contextlib.contextmanager
def one_opencv_thread() -> Iterator[None]:
    """OpenCV on one thread while active (``--jobs 1`` in the calling process uses one core), then as before."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def die_with_parent() -> None:
    """Make this worker process exit when the process that started it dies (Linux ``PR_SET_PDEATHSIG``).

    Without it a worker of a killed ``bloodcli`` (kill -9, a crashed shell) lives on, holding its
    memory, until its pool's idle timeout. Elsewhere a no-op: the pool's own shutdown remains.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def worker_pool(n_jobs: int, **options):
    """A ``joblib.Parallel`` whose local worker processes die with this one (:func:`die_with_parent`).

    Under another active joblib backend (Dask via :func:`compute_backend`) that backend is used as is.
    """
    import joblib
    from joblib.parallel import LokyBackend, get_active_backend

    if type(get_active_backend()[0]) is LokyBackend:
        options["backend"] = LokyBackend(initializer=die_with_parent)
    return joblib.Parallel(n_jobs=n_jobs, **options)


#: Work left, in seconds of this process, above which starting workers pays: about the time a fresh-interpreter
#: worker takes to start (Python, NumPy, OpenCV, bloodcli) before its first image; a forked one (:func:`_can_fork`)
#: starts sooner, so there it errs on the side of this process finishing alone.
WORKER_START_SECONDS = 0.5
#: This process's work, in seconds, that its pace is judged on (a cold cache or file read makes a first chunk slow).
PACE_SAMPLE_SECONDS = 0.025


#: Chunks sent ahead to each worker: more queued for it than the one chunk this process computes between refills.
#: With two, a worker waited 0.17-0.22 s per 3,200 crops for its next chunk (3 % of a ``-j 2`` run); with three,
#: 0.10-0.11 s, about its own time to hand a chunk's results back and take the next (four: no better, and one more
#: chunk to wait for at the end).
CHUNKS_AHEAD_PER_WORKER = 3


def map_chunks(task, chunks: Sequence[list], jobs: int, *args) -> Iterator[list]:
    """``task(chunk, *args)`` of every chunk, in chunk order, on ``jobs`` cores: this process and ``jobs - 1`` workers.

    This process works rather than waits. It computes the first chunks alone, and starts the workers
    only once the work left exceeds :data:`WORKER_START_SECONDS` at its pace (a re-run served by the
    cache starts none); then, whenever the oldest chunk sent out is not back, it computes the next
    one itself. ``task`` and ``args`` must pickle. Under another active joblib backend (Dask via
    :func:`compute_backend`) every chunk goes to that backend.
    """
    if jobs <= 1:
        return _here_then_with_workers(task, chunks, 0, args)
    if _other_joblib_backend():
        import joblib

        parallel = worker_pool(jobs, return_as="generator")
        return parallel(joblib.delayed(in_directory)(os.getcwd(), in_worker, task, chunk, *args) for chunk in chunks)
    return _here_then_with_workers(task, chunks, jobs - 1, args)


def ramped_chunks(items: Sequence, size: int, cores: int) -> list[list]:
    """``items`` in chunks of at most ``size`` for :func:`map_chunks` on ``cores``: small at the start and the end.

    The first chunks double from one item, so this process judges its pace, and starts the workers, sooner. Near
    the end a chunk is an eighth of each core's share of what is left (guided self-scheduling), so no core waits
    long for another's last chunk: with ``-j 2`` and chunks of 16 crops that wait was 40 ms on average.
    """
    chunks, start, ramp = [], 0, 1
    while start < len(items):
        count = max(1, min(ramp, size, -(-(len(items) - start) // (8 * cores))))
        chunks.append(list(items[start : start + count]))
        start, ramp = start + count, 2 * ramp
    return chunks


def start_workers(jobs: int) -> None:
    """Start the ``jobs - 1`` workers of :func:`map_chunks` now, with bloodcli's extractors imported in them.

    Nothing to do where workers are forked when needed (:func:`_can_fork`): they start in milliseconds.
    """
    if jobs > 1 and not _other_joblib_backend() and not _can_fork():
        executor = _joblib_pool(jobs - 1)
        for future in [executor.submit(_import_extractors) for _ in range(jobs - 1)]:
            future.result()


def _import_extractors() -> None:
    from bloodcli.features import extractor_kind

    extractor_kind("glcm")


def _other_joblib_backend() -> bool:
    """Whether a joblib backend other than its local processes is active (without importing joblib, 0.1 s)."""
    if "joblib" not in sys.modules:  # no backend can have been set
        return False
    from joblib.parallel import LokyBackend, get_active_backend

    return type(get_active_backend()[0]) is not LokyBackend


def _here_then_with_workers(task, chunks: Sequence[list], workers: int, args) -> Iterator[list]:
    with one_opencv_thread():  # for the whole run: setting OpenCV's threads per chunk costs milliseconds
        started = time.perf_counter()
        for done, chunk in enumerate(chunks):
            if workers and _workers_pay(time.perf_counter() - started, done, len(chunks) - done):
                yield from _with_workers(task, chunks[done:], workers, args)
                return
            yield task(chunk, *args)


def _workers_pay(elapsed: float, done: int, left: int) -> bool:
    """Whether ``left`` chunks, at the pace of ``done`` in ``elapsed`` seconds, outlast a worker's start-up.

    The pace is judged on :data:`PACE_SAMPLE_SECONDS` at least: one slow first chunk would mislead.
    """
    return done > 0 and elapsed >= PACE_SAMPLE_SECONDS and elapsed / done * left > WORKER_START_SECONDS


def _with_workers(task, chunks: Sequence[list], workers: int, args) -> Iterator[list]:
    from concurrent.futures import wait

    forked = _can_fork()
    executor = _forked_pool(workers) if forked else _joblib_pool(workers)
    left, left_items = deque(chunks), sum(map(len, chunks))  # not started yet
    pending: deque = deque()  # per chunk, in order: its future, or its results when computed here
    sent_out: dict = {}  # the futures in ``pending``, and their chunks' numbers of items

    def take() -> list:
        nonlocal left_items
        left_items -= len(left[0])
        return left.popleft()

    try:
        while True:
            while (left and len(sent_out) < CHUNKS_AHEAD_PER_WORKER * workers
                   and _worth_sending(len(left[0]), left_items, sum(sent_out.values()), workers)):  # fmt: skip
                chunk = take()
                future = executor.submit(in_directory, os.getcwd(), in_worker, task, chunk, *args)
                pending.append(future)
                sent_out[future] = len(chunk)
            if not pending and not left:
                return
            head = pending[0] if pending else None
            if isinstance(head, list) or (head is not None and head.done()):
                pending.popleft()
                if not isinstance(head, list):
                    del sent_out[head]
                    head = head.result()
                yield head
            elif left:
                pending.append(task(take(), *args))
            else:
                wait([head])
    finally:  # stopped early (an error, a closed generator): chunks not started are not run
        for future in sent_out:
            future.cancel()
        if forked:  # joblib's pool is kept for the next call; a forked one holds this moment's memory
            executor.shutdown(wait=False, cancel_futures=True)


def _worth_sending(chunk_items: int, left_items: int, held_items: int, workers: int) -> bool:
    """Whether to send the next chunk (``chunk_items`` of the ``left_items`` not started) to the workers.

    Only while this process keeps at least as many items as each worker then holds: at the end it computes the
    rest itself while the workers finish theirs, instead of waiting for chunks queued ahead in them
    (:data:`CHUNKS_AHEAD_PER_WORKER`). The last chunk always stays here.
    """
    return (left_items - chunk_items) * workers >= held_items + chunk_items


def _can_fork() -> bool:
    """Whether workers may be forked from this process: on Linux, unless TensorFlow is loaded.

    A forked worker starts in milliseconds with NumPy, OpenCV and bloodcli already imported (a fresh
    interpreter takes about 0.4 s, a core's work lost per worker and run). Its work is NumPy and
    OpenCV on one thread, safe after a fork (OpenBLAS restarts its threads); TensorFlow's thread
    pools are not, so a process that loaded it starts fresh interpreters.
    """
    return sys.platform.startswith("linux") and "tensorflow" not in sys.modules


def _forked_pool(workers: int):
    import multiprocessing
    import warnings
    from concurrent.futures import ProcessPoolExecutor

    with warnings.catch_warnings():  # Python >= 3.12 warns of any fork of a threaded process: see _can_fork
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=die_with_parent)
        pool.submit(os.getpid)  # forks every worker now, inside the warning filter
    return pool


def _joblib_pool(workers: int):
    """joblib's reusable pool of fresh interpreters (the one :func:`start_workers` starts)."""
    from joblib.executor import get_memmapping_executor

    return get_memmapping_executor(workers, initializer=die_with_parent)


def in_worker(task, chunk: list, *args) -> list:
    """``task(chunk, *args)`` in a worker process, on one thread (:func:`one_thread_per_worker`)."""
    one_thread_per_worker()
    return task(chunk, *args)


SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


#: Dask sets MALLOC_TRIM_THRESHOLD_=64 KiB in workers, so glibc hands back every image-sized buffer and
#: maps it again for the next image: extraction ran at half speed. Local workers get a larger threshold.
WORKER_ENVIRONMENT = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": KEPT_FREE_MEMORY}


def resolve_scheduler(address: str | None) -> str | None:
    """The scheduler to use: the option, else ``$DASK_SCHEDULER_ADDRESS``, else None (no Dask)."""
    return address or os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def dask_client(address: str, n_workers: int | None = None) -> Iterator:
    """A connected :class:`distributed.Client`; ``"local"`` starts (and later stops) a LocalCluster."""
    import dask
    from distributed import Client, LocalCluster

    if address == "local":
        workers = n_workers or len(os.sched_getaffinity(0))
        with dask.config.set(WORKER_ENVIRONMENT):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ResourceUnavailableError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    with client:
        yield client


@contextlib.contextmanager
def compute_backend(address: str | None, n_workers: int | None = None) -> Iterator:
    """Route joblib parallelism to Dask while active; a no-op (yields None) without a scheduler."""
    address = resolve_scheduler(address)
    if address is None:
        yield None
        return
    import joblib

    with dask_client(address, n_workers) as client, joblib.parallel_config(backend="dask"):
        yield client
