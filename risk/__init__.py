"""The decision core: events, features, model, policy, explanations, stores."""
