"""The application-service layer: typed use cases that every channel calls.

Channels (HTTP routes, CLI commands, Slack listeners, the job worker, the dashboard, vendor
connectors) authenticate, parse, call one function of a module here and render its typed
result. The functions are keyword-only, take a :class:`~integrations.services.deps.ServiceDeps`,
own their transactions and locks, and never read the environment themselves.

One module per use-case family (decisions and ingest, verdicts, proposals and approvals,
tickets, audit, vendor ingest, the dashboard's reads, ...).
"""
