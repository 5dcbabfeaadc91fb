"""The signed session cookie that remembers who signed in.

Flask signs the cookie, so nobody can change it without the key. The default key is public (see
config.py), though, so a cookie may still hold anything: a session that is not an object, or a
user that is not a name, counts as nobody signed in rather than an error.
"""

from __future__ import annotations

from flask import Flask, Request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class TolerantSessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        try:
            return super().open_session(app, request)
        except (TypeError, ValueError):
            return self.session_class()


def current_user() -> str:
    """The signed-in user name, or "" for nobody."""
    user = session.get("user")
    return user if isinstance(user, str) else ""
