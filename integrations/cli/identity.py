"""Who the CLI acts as: the principal whose token it is given, or an explicit local operator.

A name alone (``--as bob``) proves nothing, so it is never recorded as bob. The CLI acts as:

* the principal whose bearer token it is given (``GLASSGATE_TOKEN``, or ``--token-file`` holding it), the
  same tokens the API accepts; a ``--as`` naming someone else is refused; or
* with ``--local-operator --as bob``: someone at this machine's shell (who can read the state files
  anyway) acting for bob, which is recorded as such in the audit entry (``attestation``: the operating
  system user and that it was not authenticated by a token).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

from agent.approval import Principal
from integrations.principals import ConfigError, load_principals, principal_for_token
from integrations.runtime import Runtime


class IdentityError(ValueError):
    """The CLI could not establish who it acts as; the message says what to give."""


@dataclass(frozen=True)
class CliIdentity:
    principal: Principal
    attestation: str | None  # None: authenticated by a token


def resolve(rt: Runtime, *, as_: str | None, token_file: Path | None, local_operator: bool) -> CliIdentity:
    """The principal the CLI acts as (see the module docstring).

    Raises:
        IdentityError: no token and no explicit local operator, an unknown token, a ``--as`` that
            contradicts the token, or an unknown principal.
    """
    token = None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise IdentityError(f"--token-file {token_file}: cannot read: {exc.strerror}") from None
    elif rt.settings.token:
        token = rt.settings.token.strip()
    if token:
        try:
            entries = load_principals(rt.settings.principals_path)
        except ConfigError as exc:
            raise IdentityError(str(exc)) from None
        entry = principal_for_token(entries.values(), token)
        if entry is None:
            raise IdentityError(f"the token ({'--token-file' if token_file else 'GLASSGATE_TOKEN'}) is not a valid "
                                f"token of any principal in {rt.settings.principals_path}")
        if as_ is not None and as_ != entry.id:
            raise IdentityError(f"--as {as_} contradicts the token, which is {entry.id}'s")
        return CliIdentity(principal=Principal(id=entry.id, roles=frozenset(entry.roles)), attestation=None)
    if not local_operator or as_ is None:
        raise IdentityError("who are you? give your token (GLASSGATE_TOKEN or --token-file), or act explicitly as "
                            "a local operator with --local-operator --as <principal> (recorded as such)")
    p = rt.principals.get(as_)
    if p is None:
        raise IdentityError(f"{as_!r} is not a principal in {rt.settings.principals_path}; known: "
                            f"{', '.join(sorted(rt.principals))}")
    return CliIdentity(principal=p, attestation=f"local-operator:{getpass.getuser()} (no token) acting as {as_}")
