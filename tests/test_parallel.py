"""Local parallelism: ``--jobs N`` is this process and N - 1 worker processes, results in input order."""

import os

import pytest

from bloodcli.pipeline.parallel import map_chunks


def pid_of_each(chunk: list, offset: int = 0) -> list[tuple[int, int]]:
    return [(item + offset, os.getpid()) for item in chunk]


def fail_on_seven(chunk: list) -> list:
    if 7 in chunk:
        raise ValueError("seven")
    return chunk


CHUNKS = [[i, i + 1] for i in range(0, 40, 2)]


def test_two_jobs_are_this_process_and_one_worker_with_results_in_order():
    results = [pair for chunk in map_chunks(pid_of_each, CHUNKS, 2, 100) for pair in chunk]
    assert [item for item, _ in results] == list(range(100, 140))
    processes = {pid for _, pid in results}
    assert os.getpid() in processes and len(processes) == 2  # the caller worked too, beside exactly one worker


def test_one_job_runs_everything_here():
    assert {pid for chunk in map_chunks(pid_of_each, CHUNKS, 1) for _, pid in chunk} == {os.getpid()}


def test_an_error_in_a_chunk_stops_the_run_and_the_pool_serves_the_next_call():
    with pytest.raises(ValueError, match="seven"):
        list(map_chunks(fail_on_seven, CHUNKS, 2))
    assert [item for chunk in map_chunks(fail_on_seven, CHUNKS[:3], 2) for item in chunk] == list(range(6))
