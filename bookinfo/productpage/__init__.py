"""productpage: the web page of the Bookinfo shop, and a small JSON API.

It calls details and reviews to build the page (reviews in turn calls ratings). The deliberate
flaws of Istio's productpage are kept, because Istio's tasks teach with them: hard-coded 3 s
timeouts, a loop that tries reviews twice, no connection reuse. See backends.py.
"""

from __future__ import annotations

from flask import Flask

from .. import metrics
from ..config import Settings
from . import views
from .sessions import TolerantSessionInterface


def create_app(settings: Settings | None = None) -> Flask:
    app = Flask(__name__)
    settings = settings or Settings.from_environ()
    app.config["SETTINGS"] = settings
    # The signed session cookie holds the logged-in user. Every worker and replica shares the key
    # (see config.py), so a login survives whichever pod serves the next request.
    app.config["SECRET_KEY"] = settings.secret_key
    app.config["SESSION_COOKIE_NAME"] = "session"
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.session_interface = TolerantSessionInterface()
    metrics.init_app(app)
    app.register_blueprint(views.bp)
    return app
