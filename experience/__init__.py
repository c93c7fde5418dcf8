"""The Experience Plane: HTTP and WebSocket, authentication, intents out."""
