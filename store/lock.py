"""Exclusive ownership of a node directory, in this process and across processes.

plyvel silently drops LevelDB's own lock when one process opens the same path twice, and
two writers then lose data; so the store keeps a process-wide registry of open directories
and also holds `flock` on a lock file of its own, which another process cannot take.
"""

from __future__ import annotations

import fcntl
import os
import threading

from store.errors import StoreError, StoreLocked

LOCK_FILE = "coreledger.lock"

_registry_guard = threading.Lock()
_open_paths: set[str] = set()


class DirectoryLock:
    __slots__ = ("fd", "held", "path")

    def __init__(
        self, directory: str, *, create_file: bool = True, inherited_fd: int | None = None
    ) -> None:
        """Take the directory. With `create_file=False` (a reader) a missing lock file is
        not created: then only LevelDB's own lock guards against other processes.

        `inherited_fd`: the lock file's descriptor, already locked by the parent process
        that passed it (the store writer process of a pipelined executor): `flock` is held
        by the open file, shared by both, so the directory stays taken while either lives.
        """
        path = os.path.realpath(directory)
        with _registry_guard:
            if path in _open_paths:
                raise StoreLocked(f"{directory}: already open in this process")
            flags = os.O_RDWR | (os.O_CREAT if create_file else 0)
            try:
                if inherited_fd is not None:
                    fd = inherited_fd
                else:
                    fd = os.open(os.path.join(path, LOCK_FILE), flags, 0o644)
            except FileNotFoundError:
                if create_file:
                    raise StoreError(f"{directory}: cannot create lock file") from None
                fd = -1
            except OSError as exc:
                raise StoreError(f"{directory}: cannot create lock file ({exc.strerror})") from None
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise StoreLocked(f"{directory}: in use by another process") from None
            _open_paths.add(path)
        self.path = path
        self.fd = fd
        self.held = True

    def release(self) -> None:
        with _registry_guard:
            if not self.held:
                return
            if self.fd >= 0:
                os.close(self.fd)  # closing drops the flock
            self.fd = -1
            self.held = False
            _open_paths.discard(self.path)
