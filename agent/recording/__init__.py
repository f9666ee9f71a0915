"""Recording sessions (simulator autopilot, a person at the keys, a game window) and the
labelling tool. Writes through the session store in ``training.sessions``."""
