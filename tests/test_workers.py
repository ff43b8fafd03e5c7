"""Fold worker pool: results in order, failures raised here, and a fresh pool after one."""

import operator
import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from prcrs import workers


def test_results_come_back_in_job_order():
    jobs = [(i, i) for i in range(7)]
    assert list(workers.map_ordered(operator.mul, jobs, 3)) == [i * i for i in range(7)]
    assert list(workers.map_ordered(operator.mul, jobs, 1)) == [i * i for i in range(7)]


def test_jobs_run_in_other_processes():
    assert os.getpid() not in set(workers.map_ordered(os.getpid, [()] * 4, 2))


def test_a_failing_job_raises_here_and_the_next_map_gets_working_workers():
    with pytest.raises(ZeroDivisionError):
        list(workers.map_ordered(operator.truediv, [(1, 1), (1, 0), (2, 1)], 2))
    assert list(workers.map_ordered(operator.truediv, [(4, 2)] * 3, 2)) == [2.0] * 3


def test_a_killed_worker_is_reported_and_replaced():
    with pytest.raises(BrokenProcessPool):
        list(workers.map_ordered(os._exit, [(1,)], 2))
    assert list(workers.map_ordered(operator.add, [(1, 2)], 2)) == [3]
