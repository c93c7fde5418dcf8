"""What the system tells its operators: Prometheus metrics, OpenTelemetry traces.

Below every other package but ``bus`` in the layering: ``intents``, the runtime and the
Experience Plane record into it; it imports none of them.
"""
