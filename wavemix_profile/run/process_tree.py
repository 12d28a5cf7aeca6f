"""Ending a measuring child together with everything its model started.

A model may start processes of its own (data-loader workers, `subprocess.Popen`, `os.fork`). They
inherit the child's process group and session (the child leads a session of its own: isolation.py),
so SIGKILL to the group plus each member of the session found in /proc ends them all, stopped ones
too (SIGKILL ends a stopped process). Only a process that left the session (setsid) is out of reach.

Group and session are named by the child's pid, which stays the child's until it is reaped: end_tree
runs before the child is reaped, never after, or a reused pid could name someone else's group.
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from typing import Optional

_PASSES = 3       # a member forking while the session is swept: look again
_EXIT_POLL_S = 0.02


def end_tree(leader: int) -> None:
    """SIGKILL every process in the group and the session `leader` leads, whether or not the leader
    itself has exited (its pid must not have been reaped yet)."""
    _kill_group(leader)
    for _ in range(_PASSES):
        members = [pid for pid in _session_members(leader) if pid != os.getpid()]
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def end_own_tree() -> None:
    """From inside a leader whose parent is gone: SIGKILL the other members of its session, then its
    group, itself included."""
    me = os.getpid()
    for pid in _session_members(os.getsid(0)):
        if pid != me:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    _kill_group(os.getpgid(0))


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session `sid`, from /proc; none where there is no /proc."""
    members = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()  # state, ppid, pgrp, session, ...
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == sid:
            members.append(int(name))
    return members


def signal_on_parent_death(sig: int) -> None:
    """Have the kernel send this process `sig` when its parent (the thread that forked it) dies: a
    stopped process cannot notice its parent is gone, but SIGCONT wakes it and SIGKILL ends it.
    Linux only; elsewhere nothing happens."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Spawned:
    """A measuring child started as a fresh interpreter (no fork server): Popen, with an exit check
    that does not reap it, so that its group is ended while its pid is still its own."""

    def __init__(self, popen: subprocess.Popen):
        self.popen, self.pid = popen, popen.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.returncode

    def exited(self) -> bool:
        if self.popen.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait_exit(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for the child to exit, without reaping it; True if it has."""
        if self.exited():
            return True
        try:
            fd = os.pidfd_open(self.pid)  # readable once the process has exited; reaps nothing
        except (AttributeError, OSError):  # before Linux 5.3: look every few milliseconds
            deadline = time.monotonic() + timeout_s
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(_EXIT_POLL_S)
            return self.exited()
        try:
            select.select([fd], [], [], timeout_s)
        finally:
            os.close(fd)
        return self.exited()

    def end(self) -> Optional[int]:
        """End the child's whole tree, then reap it; its exit status."""
        if self.popen.returncode is None:
            end_tree(self.pid)
        return self.popen.wait()
