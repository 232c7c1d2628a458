"""The one registry of tools. The agent, the CLI, HTTP and Slack all call tools through it.

A tool is a typed function ``tool(ctx, args: InputModel) -> OutputModel``; its
docstring is its description for a language model, and the JSON schema of its
input model is its parameter spec.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ValidationError

from tools.context import ToolContext
from tools.decisions import find_decisions, get_decision, session_timeline
from tools.entities import known_entities
from tools.errors import BadField, InputProblem, ToolError, ToolInputError, ToolNotFound, ToolUnavailable, UnknownTool
from tools.policies import get_policy_section, search_policies
from tools.proposals import propose_action
from tools.similar import similar_decisions
from tools.tuning import replay_threshold, verdict_stats
from tools.vendor import find_vendor_decisions, vendor_rule_stats
from tools.whatif import what_if

ToolFn = Callable[[ToolContext, Any], BaseModel]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    function: ToolFn

    @classmethod
    def from_function(cls, fn: ToolFn) -> Tool:
        """Read the name, description and models off a typed tool function."""
        hints = get_type_hints(fn)
        params = list(inspect.signature(fn).parameters)
        if len(params) != 2 or hints.get(params[0]) is not ToolContext:
            raise TypeError(f"{fn.__name__}: a tool takes (ctx: ToolContext, args: InputModel)")
        inp, out = hints[params[1]], hints.get("return")
        if not (isinstance(inp, type) and issubclass(inp, BaseModel) and isinstance(out, type)
                and issubclass(out, BaseModel)):
            raise TypeError(f"{fn.__name__}: input and return types must be pydantic models")
        doc = inspect.getdoc(fn) or ""
        if not doc.strip():
            raise TypeError(f"{fn.__name__}: the docstring is the tool's description and must not be empty")
        return cls(name=fn.__name__, description=" ".join(doc.split()), input_model=inp, output_model=out, function=fn)

    def parse(self, args: Mapping[str, Any]) -> BaseModel:
        """Validate raw arguments.

        Raises:
            ToolInputError: naming every bad or unknown field.
        """
        try:
            return self.input_model.model_validate(dict(args))
        except ValidationError as exc:
            raise ToolInputError.from_validation(self.name, exc) from None

    def spec(self) -> dict[str, Any]:
        """An OpenAI-style function spec for a language model."""
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": schema}}


TOOLS: tuple[ToolFn, ...] = (find_decisions, get_decision, session_timeline, what_if, replay_threshold,
                             similar_decisions, verdict_stats, search_policies, get_policy_section, known_entities,
                             propose_action, find_vendor_decisions, vendor_rule_stats)
REGISTRY: dict[str, Tool] = {t.name: t for t in map(Tool.from_function, TOOLS)}


def get_tool(name: str) -> Tool:
    """The tool called ``name``; :class:`UnknownTool` if there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownTool(name, sorted(REGISTRY)) from None


def call_tool(ctx: ToolContext, name: str, args: Mapping[str, Any]) -> Any:
    """Validate ``args`` against the tool's input model and run it.

    Raises:
        UnknownTool: no such tool.
        ToolInputError: the arguments are invalid (each bad field named).
        ToolNotFound: a record the arguments point at does not exist.
        ToolUnavailable: the context lacks what the tool needs.
    """
    tool = get_tool(name)
    return tool.function(ctx, tool.parse(args))


def tool_specs() -> list[dict[str, Any]]:
    """Function specs for every tool, in registry order."""
    return [t.spec() for t in REGISTRY.values()]


# Tools that change something (they draft a proposal a human approves); every other tool only reads. Only
# read-only tools are ever bound to a language model.
ACTION_TOOLS = frozenset({"propose_action"})


def is_read_only(name: str) -> bool:
    return name in REGISTRY and name not in ACTION_TOOLS


def read_only_specs() -> list[dict[str, Any]]:
    """Function specs of the read-only tools, in registry order (what a model may call)."""
    return [t.spec() for t in REGISTRY.values() if is_read_only(t.name)]


__all__ = ["ACTION_TOOLS", "REGISTRY", "BadField", "InputProblem", "Tool", "ToolContext", "ToolError", "ToolInputError", "ToolNotFound",
           "ToolUnavailable", "UnknownTool", "call_tool", "get_tool", "is_read_only", "read_only_specs", "tool_specs"]
