"""The stateless runtime: executes intents against the State Surface (JetStream KV)."""
