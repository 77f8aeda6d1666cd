"""The HTTP server (waitress) running the API inside an alarmer process."""

from __future__ import annotations

import logging
import threading

from waitress import wasyncore
from waitress.server import create_server

from alarmer.runtime import Runtime
from api import app as app_mod

LOG = logging.getLogger(__name__)


class ApiServer:
    """Serve the API on ``[api] host``:``[api] port`` in a thread."""

    name = "api"

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None
        return int(self._server.effective_port)

    def start(self) -> None:
        """Bind the socket and start serving."""
        conf = self._rt.conf
        app = app_mod.create_app(self._rt)
        self._server = create_server(
            app,
            host=conf.api.host,
            port=conf.api.port,
            threads=conf.api.threads,
            ident="alarmer",
            clear_untrusted_proxy_headers=True,
        )
        self._thread = threading.Thread(
            target=self._server.run, name="api-server", daemon=True
        )
        self._thread.start()
        LOG.info(
            "API listening on http://%s:%s/",
            conf.api.host,
            self._server.effective_port,
        )

    def stop(self) -> None:
        """Stop accepting connections and end the server thread."""
        if self._server is None:
            return
        server = self._server
        server.task_dispatcher.shutdown()
        # Closes the listening socket, the trigger and any kept-alive
        # connection, which ends the loop of the server thread.
        wasyncore.close_all(server._map)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
