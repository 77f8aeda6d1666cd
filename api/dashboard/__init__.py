"""The operator's dashboard: ``/dashboard``, served by alarmer itself.

Server-side templates (Jinja, under ``templates/``) and a little plain
JavaScript (``static/dashboard.js``): no build step.  Plots are drawn by
uPlot, shipped unmodified under ``static/vendor/uplot`` with its
licence.  The pages use the identity and roles of the API
(:mod:`api.context`); see :mod:`api.dashboard.views`.
"""

from __future__ import annotations

import flask

from api.dashboard import browse, login, views

#: Modules adding routes to :data:`api.dashboard.views.bp`.
ROUTES = (views, browse, login)


def register(app: flask.Flask) -> None:
    """Add the dashboard's pages and static files to *app*."""
    app.register_blueprint(views.bp)
