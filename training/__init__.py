"""Offline retraining of the perception networks on recorded sessions.

Entry points: ``truckpilot train`` (training.cli), ``truckpilot evaluate``
(training.evaluate_cli), ``truckpilot export`` (training.export). See
training/README.md for the run directory and the choices made, training/RESULTS.md for measured figures.
"""
