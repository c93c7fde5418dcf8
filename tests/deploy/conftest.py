"""Deployment tier: compose.yaml validated by Compose v2, its routes proven through real Traefik."""

from tests.stack import make_stack, stack

__all__ = ["make_stack", "stack"]
