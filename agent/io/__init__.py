"""What touches the outside world: window lookup, screen capture, key injection, analog
axes (``agent.io.axes``), the game's telemetry and the safety guard process. Imports only
``agent.types`` from the rest of agent."""
