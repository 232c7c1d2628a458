"""A JSON Schema for OCSF 1.x Authentication (class 3002) with the security_control profile, checked on input
and on the OCSF glassgate writes out.

Written from the OCSF schema repository (``events/iam/authentication.json``, its ``iam`` category,
``profiles/security_control.json`` and the dictionary's enums); no maintained OCSF model package is installable
offline here (``ocsf-lib`` compiles the schema from a checkout or fetches it from schema.ocsf.io). Only what
the class requires and what glassgate reads is constrained; other attributes pass, as OCSF allows extensions.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

_INT = {"type": "integer"}
_STR = {"type": "string"}

AUTHENTICATION_3002: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "OCSF 1.x Authentication (3002), security_control profile",
    "type": "object",
    # ``user`` is checked by the mapper (user, or actor.user as the OCSF project's own 1.5 examples send it).
    "required": ["activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"],
    "properties": {
        "class_uid": {"const": 3002},
        "category_uid": {"const": 3},
        "activity_id": {"enum": [0, 1, 2, 3, 4, 5, 99]},
        "type_uid": {"enum": [300200, 300201, 300202, 300203, 300204, 300205, 300299]},
        "time": _INT,
        "time_dt": _STR,
        "severity_id": {"enum": [0, 1, 2, 3, 4, 5, 6, 99]},
        "status_id": {"enum": [0, 1, 2, 99]},
        "action_id": {"enum": [0, 1, 2, 3, 4, 99]},
        "disposition_id": {"type": "integer", "anyOf": [{"minimum": 0, "maximum": 27}, {"const": 99}]},
        "risk_level_id": {"enum": [0, 1, 2, 3, 4, 99]},
        "risk_details": _STR,
        "is_mfa": {"type": "boolean"},
        "metadata": {"type": "object", "required": ["product", "version"], "properties": {
            "uid": _STR, "version": _STR, "product": {"type": "object"}}},
        "user": {"type": "object", "properties": {"name": _STR, "uid": _STR, "email_addr": _STR}},
        "actor": {"type": "object", "properties": {"user": {"type": "object", "properties": {
            "name": _STR, "uid": _STR, "email_addr": _STR}}}},
        "policy": {"type": "object", "properties": {"name": _STR, "uid": _STR, "desc": _STR}},
        "session": {"type": "object", "properties": {"uid": _STR}},
        "src_endpoint": {"type": "object", "properties": {
            "ip": _STR,
            "location": {"type": "object", "properties": {"country": _STR, "lat": {"type": "number"},
                                                          "long": {"type": "number"}}},
            "autonomous_system": {"type": "object", "properties": {"number": _INT}}}},
        "device": {"type": "object", "properties": {"uid": _STR, "is_managed": {"type": "boolean"},
                                                    "is_compliant": {"type": "boolean"}}},
        "auth_factors": {"type": "array", "items": {"type": "object"}},
        "service": {"type": "object", "properties": {"name": _STR, "uid": _STR}},
    },
    "allOf": [{"if": {"properties": {"activity_id": {"const": 1}}, "required": ["activity_id"]},
               "then": {"properties": {"type_uid": {"const": 300201}}}}],
}

_VALIDATOR = Draft202012Validator(AUTHENTICATION_3002)


def schema_problems(event: Any) -> list[tuple[str, str]]:
    """(attribute path, message) for every way ``event`` breaks the 3002 schema; empty when it conforms."""
    out = []
    for err in sorted(_VALIDATOR.iter_errors(event), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "required":
            missing = next((k for k in err.validator_value if k not in err.instance), "")
            path = f"{path}.{missing}" if path else missing
            out.append((path, "required attribute is missing"))
        else:
            out.append((path or "(record)", err.message[:200]))
    return out
