"""The one session store: recorder, labeller and training all read and write sessions through it.

See ``records.py`` for the on-disk layout. Public API::

    from training.sessions import SessionWriter, Session, FrameRecord, SessionManifest, list_sessions
    from training.sessions import Intervention, interventions, session_interventions  # a person's takeovers
    from training.sessions import FrameTelemetry, is_paused  # per-frame speed, continuous controls, pause
"""
from .interventions import Intervention, interventions, session_interventions
from .records import (
    LABEL_SOURCES,
    FrameRecord,
    SessionDiskFullError,
    SessionError,
    SessionManifest,
)
from .store import Session, list_sessions
from .telemetry import FrameTelemetry, is_paused
from .writer import SessionWriter

__all__ = [
    "LABEL_SOURCES",
    "FrameRecord",
    "FrameTelemetry",
    "Intervention",
    "Session",
    "SessionDiskFullError",
    "SessionError",
    "SessionManifest",
    "SessionWriter",
    "interventions",
    "is_paused",
    "list_sessions",
    "session_interventions",
]
