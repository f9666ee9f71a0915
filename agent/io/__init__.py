"""What touches the outside world: window lookup, screen capture, key injection and the
safety guard process. Imports only ``agent.types`` from the rest of agent."""
