"""The HTTP API (FastAPI). ``create_app(runtime)`` builds it; routers stay thin and call tools or the engine."""

from integrations.api.app import create_app

__all__ = ["create_app"]
