"""The ``truckpilot`` commands: cli (the dispatcher), drive, record, label, sessions, eval
(scorecard), demo, doctor and bench. The only part of agent that imports training's engine."""
