"""Child-process entry point: measure a list of Settings (one model), reporting on a private pipe.

`python -m wavemix_profile.worker CHANNEL_FD LIFELINE_FD`, with the requests as a JSON list on
stdin. Every message goes to CHANNEL_FD (see protocol.py); stdout and stderr belong to the model.
Any exception, or a SystemExit from model code, becomes the request's error Result, so the parent
gets a record for every request unless the process itself dies (a signal, the OOM killer, os._exit),
which the parent turns into one.

LIFELINE_FD is the read end of a pipe whose write end only the parent holds: when it reads
end-of-file the parent is gone (SIGKILL included), and the child kills its own process group, so no
measurement outlives the run that asked for it.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback

from .protocol import Finished, Message, Started, encode


def _die_with_parent(lifeline_fd: int) -> None:
    def watch() -> None:
        while os.read(lifeline_fd, 1024):  # the parent never writes; b"" means its end closed
            pass
        os.killpg(os.getpgid(0), signal.SIGKILL)  # this child and anything it started

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def main(argv: list[str]) -> int:
    channel_fd, lifeline_fd = (int(a) for a in argv)
    _die_with_parent(lifeline_fd)
    channel = os.fdopen(channel_fd, "wb")
    from .results import settings_from_dict
    requests = [settings_from_dict(item) for item in json.load(sys.stdin)]
    from .measure import describe_failure, error_result, measure

    for index, settings in enumerate(requests):
        def send(message: Message, index: int = index) -> None:
            channel.write(encode(index, message))
            channel.flush()

        send(Started())
        began = time.perf_counter()
        try:
            result = measure(settings, on_event=send)
        except (Exception, SystemExit) as exc:  # every failure of a model becomes its row's error
            traceback.print_exc(file=sys.stderr)
            result = error_result(settings, describe_failure(exc), time.perf_counter() - began)
        send(Finished(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
