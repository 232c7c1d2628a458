"""Typed tool errors: callers branch on the class and read the fields, never the message text.

:mod:`tools.registry` re-exports these; they live here so that tool modules can raise them
without importing the registry that imports them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


class InputProblem(BaseModel):
    """One bad input field: ``field`` is a dotted path (``changes.mfa_strenght``), ``message`` says why."""

    field: str
    message: str


class BadField(ValueError):
    """Raised inside input-model validators so that the problem keeps its exact field path.

    Pydantic keeps the raised exception in the error's context; :meth:`ToolInputError.from_validation`
    reads the path from it instead of from pydantic's location.
    """

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(message)


class ToolError(Exception):
    """Base of every error a tool raises on purpose."""

    def as_json(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": str(self)}


class ToolInputError(ToolError, ValueError):
    """The arguments were invalid; ``problems`` names each bad field."""

    def __init__(self, tool: str, problems: list[InputProblem]):
        self.tool, self.problems = tool, problems
        super().__init__(f"{tool}: " + "; ".join(f"{p.field or '(input)'}: {p.message}" for p in problems))

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]

    @classmethod
    def one(cls, tool: str, field: str, message: str) -> ToolInputError:
        return cls(tool, [InputProblem(field=field, message=message)])

    @classmethod
    def from_validation(cls, tool: str, exc: ValidationError) -> ToolInputError:
        problems = []
        for err in exc.errors():
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, BadField):
                problems.append(InputProblem(field=cause.field, message=cause.message))
                continue
            path = ".".join(str(p) for p in err["loc"] if p != "[key]")
            problems.append(InputProblem(field=path, message=err["msg"]))
        return cls(tool, problems)

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "tool": self.tool, "problems": [p.model_dump() for p in self.problems]}


class ToolNotFound(ToolError, LookupError):
    """A record the arguments point at does not exist (``kind``: decision, session, ...)."""

    def __init__(self, kind: str, key: str):
        self.kind, self.key = kind, key
        super().__init__(f"no {kind} {key!r}")

    def as_json(self) -> dict[str, Any]:
        return {**super().as_json(), "kind": self.kind, "key": self.key}


class UnknownTool(ToolError, LookupError):
    """No tool has this name."""

    def __init__(self, name: str, known: list[str]):
        self.name, self.known = name, known
        super().__init__(f"no tool {name!r}; known: {', '.join(known)}")


class ToolUnavailable(ToolError, RuntimeError):
    """The tool needs something the context does not have (for example a loaded model)."""
