"""Local parallelism: ``--jobs N`` is this process and N - 1 worker processes, results in input order."""

import os
import sys
import time
import types
from concurrent.futures import Future

import pytest

from bloodcli.pipeline import parallel
from bloodcli.pipeline.parallel import map_chunks


def pid_of_each(chunk: list, offset: int = 0, seconds: float = 0.0) -> list[tuple[int, int]]:
    time.sleep(seconds)
    return [(item + offset, os.getpid()) for item in chunk]


def fail_in_a_worker(chunk: list, caller: int) -> list:
    time.sleep(0.05)
    if os.getpid() != caller:
        raise ValueError(f"failed in worker {os.getpid()}")
    return chunk


CHUNKS = [[i, i + 1] for i in range(0, 40, 2)]


@pytest.mark.parametrize("forked", [True, False], ids=["forked worker", "fresh interpreter"])
def test_two_jobs_are_this_process_and_one_worker_with_results_in_order(forked, monkeypatch):
    monkeypatch.setattr(parallel, "_can_fork", lambda: forked)
    results = [pair for chunk in map_chunks(pid_of_each, CHUNKS, 2, 100, 0.05) for pair in chunk]  # 1 s of work
    assert [item for item, _ in results] == list(range(100, 140))
    processes = {pid for _, pid in results}
    assert os.getpid() in processes and len(processes) == 2  # the caller worked too, beside exactly one worker


@pytest.mark.parametrize("jobs", [1, 2])
def test_one_job_or_work_too_short_to_be_worth_a_worker_runs_everything_here(jobs):
    """A re-run served by the cache takes milliseconds a chunk: starting a worker would cost more than all of it."""
    assert {pid for chunk in map_chunks(pid_of_each, CHUNKS, jobs) for _, pid in chunk} == {os.getpid()}


def test_an_error_in_a_worker_stops_the_run_and_the_pool_serves_the_next_call():
    with pytest.raises(ValueError, match="failed in worker"):
        list(map_chunks(fail_in_a_worker, CHUNKS, 2, os.getpid()))
    results = [item for chunk in map_chunks(pid_of_each, CHUNKS, 2, 0, 0.05) for item, _ in chunk]
    assert results == list(range(40))


def test_workers_are_forked_on_linux_unless_tensorflow_is_loaded(monkeypatch):
    """TensorFlow's thread pools do not survive a fork: a process that loaded it starts fresh interpreters."""
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # loaded by an earlier test
    assert parallel._can_fork() == sys.platform.startswith("linux")
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    assert not parallel._can_fork()


@pytest.mark.parametrize("n, size, cores", [(3200, 16, 2), (3200, 16, 8), (45, 5, 2), (1, 16, 2), (0, 16, 1)])
def test_chunks_ramp_up_from_one_item_and_shrink_with_the_work_left(n, size, cores):
    chunks = parallel.ramped_chunks(range(n), size, cores)
    assert [item for chunk in chunks for item in chunk] == list(range(n)) and all(chunks)
    sizes = [len(chunk) for chunk in chunks]
    assert sizes[:1] == [1][:n] and all(b <= 2 * a for a, b in zip(sizes, sizes[1:])) and max(sizes, default=0) <= size
    starts = [n - sum(sizes[i:]) for i in range(len(sizes))]
    # no core waits at the end for more than an eighth of its share of what was left when the chunk was cut
    assert all(s <= max(1, -(-(n - start) // (8 * cores))) for s, start in zip(sizes, starts))
    if n >= 1000:  # full chunks carry most of the work, one image ends it
        assert sizes.count(size) * size > n / 2 and sizes[-1] == 1


class InstantPool:
    """A pool whose worker finishes every chunk the moment it is sent."""

    def submit(self, function, *args):
        future = Future()
        future.set_result(function(*args))
        return future

    def shutdown(self, **_):
        pass


def test_the_last_chunk_stays_in_this_process_however_fast_the_worker(monkeypatch):
    """Chunks queued ahead in a worker (three each) used to be the last ones: this process then waited for them idle."""
    monkeypatch.setattr(parallel, "_can_fork", lambda: True)
    monkeypatch.setattr(parallel, "_forked_pool", lambda workers: InstantPool())
    monkeypatch.setattr(parallel, "_workers_pay", lambda *_: True)  # workers from the first chunk
    monkeypatch.setattr(parallel, "in_worker", lambda task, chunk, *args: [("worker", item) for _, item in task(chunk, *args)])
    results = [pair for chunk in map_chunks(lambda chunk: [("here", item) for item in chunk], [[i] for i in range(8)], 2)
               for pair in chunk]  # fmt: skip
    assert [item for _, item in results] == list(range(8))
    assert [who for who, _ in results] == ["worker"] * 7 + ["here"]


@pytest.mark.parametrize(
    "chunk, left, held, workers, send",
    [(16, 3200, 48, 1, True), (1, 3, 3, 1, False), (1, 4, 2, 1, True), (1, 1, 0, 1, False), (1, 2, 0, 1, True),
     (2, 10, 12, 3, True), (2, 6, 12, 3, False)],
)  # fmt: skip
def test_a_chunk_is_sent_out_only_while_this_process_keeps_at_least_what_each_worker_holds(chunk, left, held, workers, send):
    assert parallel._worth_sending(chunk, left, held, workers) is send
