"""Adapters that carry out approved actions in the IAM a customer already runs (Okta, Microsoft Entra,
Keycloak): network clients behind :class:`agent.iam_types.IamAdapter`, chosen by GLASSGATE_IAM
(:mod:`integrations.iam.factory`)."""
