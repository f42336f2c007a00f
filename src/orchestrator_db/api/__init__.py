"""The HTTP service: REST for every record, aggregates, live events and the dashboard (design §6).

    from orchestrator_db.api import create_app
    app = create_app("sqlite:///data/orchestrator.db")   # then serve it with any ASGI server
"""

from .app import ApiConfigError, create_app, is_loopback

__all__ = ["ApiConfigError", "create_app", "is_loopback"]
