"""The `glassgate` command line: one typer app, its commands in modules by concern."""

# Importing the modules registers their commands, in the order `glassgate --help` lists them.
from integrations.cli import decisions, service, agent  # noqa: F401, I001
from integrations.cli import audit  # noqa: F401, E402  (audit init)
from integrations.cli import ingest  # noqa: F401, I001  (vendor logs: import, connector)
from integrations.cli import reexplain  # noqa: F401  (glassgate reexplain)
from integrations.cli import llm  # noqa: F401, E402 - i15: `glassgate llm serve`, `glassgate doctor`
from integrations.cli.base import app

__all__ = ["app"]
