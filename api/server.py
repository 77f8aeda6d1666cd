"""The HTTP server (waitress) running the API inside an alarmer process.

Either it binds ``[api] host``:``[api] port`` itself, or it serves a
listening socket it is given: ``alarmer serve`` binds once and its API
worker processes all accept on that socket.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any

from waitress import wasyncore
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from alarmer import logformat
from alarmer.runtime import Runtime
from api import app as app_mod

LOG = logging.getLogger(__name__)


class ApiServer:
    """Serve the API on ``[api] host``:``[api] port`` in a thread.

    :param sockets: listening sockets to serve instead (already bound;
        several processes may serve the same socket).
    """

    name = "api"

    def __init__(
        self, rt: Runtime, sockets: Sequence[socket.socket] = ()
    ) -> None:
        self._rt = rt
        self._given = list(sockets)
        self._server: BaseWSGIServer | MultiSocketServer | None = None
        #: The server's socket map (closing its sockets ends its loop).
        self._sockets: dict[int, Any] = {}
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        return self._port

    def start(self) -> None:
        """Bind the socket and start serving."""
        conf = self._rt.conf
        logformat.quiet_floods()
        app = app_mod.create_app(self._rt)
        where: dict[str, Any]
        if self._given:
            where = {"sockets": self._given}
        else:
            where = {"host": conf.api.host, "port": conf.api.port}
        self._server = create_server(
            app,
            map=self._sockets,
            threads=conf.api.threads,
            ident="alarmer",
            clear_untrusted_proxy_headers=True,
            **where,
        )
        # Set by waitress when it binds; its stubs do not declare it.
        self._port = int(self._server.effective_port)  # type: ignore[union-attr]
        self._thread = threading.Thread(
            target=self._server.run, name="api-server", daemon=True
        )
        self._thread.start()
        if self._given:
            LOG.debug("API serving the inherited socket (port %s)", self._port)
        else:
            LOG.info(
                "API listening on http://%s:%s/",
                conf.api.host,
                self._port,
            )

    def stop(self) -> None:
        """Stop accepting connections and end the server thread."""
        if self._server is None:
            return
        server = self._server
        server.task_dispatcher.shutdown()
        # Closes the listening socket, the trigger and any kept-alive
        # connection, which ends the loop of the server thread.
        wasyncore.close_all(self._sockets)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
