"""A TCP proxy in front of the test database that a test can cut, as a network would.

``cut()`` closes every connection and refuses new ones (a database that went away, or a
firewall answering with RST); ``blackhole(detect_after)`` keeps the connections open but
forwards nothing either way and leaves new connections unanswered (a pulled cable, a
dropped route: statements hang), and resets each connection once it has been mute for
``detect_after`` seconds, which is what the scheduler's TCP keepalives and
``tcp_user_timeout`` do on a real network (through a proxy on this host the kernel
acknowledges everything, so they cannot notice by themselves); ``restore()`` forwards
again (new connections only: a cut-off connection stays dead, as it would)."""

from __future__ import annotations

import socket
import threading
import time

from django.db import connection


class CuttableProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.holed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.muted: dict[socket.socket, float] = {}  # connection -> mute since (monotonic)
        self.detect_after = 6.0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._reap, daemon=True).start()

    @classmethod
    def for_test_database(cls) -> CuttableProxy:
        s = connection.settings_dict
        return cls((s.get("HOST") or "127.0.0.1", int(s.get("PORT") or 5432)))

    def database_url(self) -> str:
        """The test database's URL through this proxy (PostgreSQL only)."""
        s = connection.settings_dict
        return f"postgres://{s.get('USER') or 'postgres'}@127.0.0.1:{self.port}/{s['NAME']}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            if self.holed.is_set():
                with self._lock:
                    self.sockets.append(client)  # never answered
                    self.muted[client] = time.monotonic()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.holed.is_set():
                    # Swallowed, and this connection stays mute for good: what was
                    # in flight when the cable was pulled never arrives.
                    while src.recv(65536):
                        pass
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _reset(s: socket.socket) -> None:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self.sockets = self.sockets, []
            self.muted.clear()
        for s in sockets:
            self._reset(s)

    def _reap(self) -> None:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                due = [s for s, since in self.muted.items() if now - since >= self.detect_after]
                for s in due:
                    del self.muted[s]
                    if s in self.sockets:
                        self.sockets.remove(s)
            for s in due:
                self._reset(s)

    def cut(self) -> None:
        self.cut_off.set()
        self._drop_all()

    def blackhole(self, detect_after: float = 6.0) -> None:
        with self._lock:
            self.detect_after = detect_after
            now = time.monotonic()
            self.muted = {s: now for s in self.sockets}
            self.holed.set()

    def restore(self) -> None:
        if self.holed.is_set():
            self.holed.clear()
            self._drop_all()  # the mute connections are dead; clients reconnect
        self.cut_off.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()
