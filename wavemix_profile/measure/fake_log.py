"""torch's traceback log of an op that fails on fake tensors, kept out of our output.

FakeTensorMode logs the whole traceback of a failing op (about 19 lines, "failed while attempting to
run meta for aten.set_.source_Storage") and then raises the same exception. The estimators expect
some such failures and fall back (a model instance copied under fake mode, an initialiser that reads
values: memory.CpuEstimator, flops._fake_tallies); any other becomes the result's error, one line.
Either way the log only repeats an exception that our code handles, so while we run on fakes it is
dropped, and nothing else is: the logger's other records, our own warnings and every exception pass.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

FAKE_TENSOR_LOGGER = "torch._subclasses.fake_tensor"   # torch's `log` in torch/_subclasses/fake_tensor.py


class _DropReRaised(logging.Filter):
    """Drops the records logged with a traceback (log.exception): the exception is raised to us next."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


@contextlib.contextmanager
def quiet_fake_errors() -> Iterator[None]:
    """While inside, the fake-tensor logger drops its tracebacks of exceptions it re-raises; restored after."""
    logger = logging.getLogger(FAKE_TENSOR_LOGGER)
    dropped = _DropReRaised()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)
