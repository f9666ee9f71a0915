"""The driving loop and its parts: the tick, the controller, pacing of key pulses, the HUD,
and the scorecard's drivers. Built on ``agent.io``; knows nothing of training."""
