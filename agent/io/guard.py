"""Safety guard: no driving key stays down when something goes wrong.

Two halves:

* ``SafetyGuard`` (in the driving process) wraps a key backend. Each tick the
  loop calls ``guard.apply(keys, capture_health)``: the guard checks the
  e-stop hotkey (End / Pause), a person's takeover (a driving key down on the
  X server that the agent did not press), stale capture and news from the
  guard process; if all is well and it is engaged, it applies the keys,
  otherwise it releases every key; then it sends a heartbeat. ``engage``
  needs fresh frames; after any disengagement the agent stays off until
  engaged again.

* The guard process (``python -m agent.io.guard``), started by SafetyGuard for
  backends that another process can release (X11 XTest, Windows SendInput).
  It reads heartbeats with the keys held from its stdin pipe. When they stop
  for more than ``stall_periods`` periods (the loop hangs or is SIGSTOPped) it
  releases, through its own connection, every key the last heartbeat said was
  held, and tells the parent (``Released(STALL)``); when the pipe closes (the
  parent exited or was killed, even by kill -9) it does the same and exits.
  Each tick the parent announces the keys it is about to press *before*
  pressing them, so a stall between the two cannot hide a key from the guard.
  Only the agent's keys are released: a person who took over keeps theirs. uinput needs no
  guard process on death (the kernel destroys the device and its keys).

Analog axes (``axes``: an ``agent.io.axes.AxisOutput``, e.g. the SCS SDK input plugin's block)
follow the keys: ``apply(keys, health, axes)`` holds them while engaged; every disengagement
(stall, e-stop, takeover, lost focus, stale capture) and ``close`` centres the wheel and releases
the pedals. An output that another process can open (``guard_spec()``, as the SCS controls block)
is opened by the guard process too, which centres it on a stall, kill -9 or SIGSTOP of the agent,
as it releases the keys; one only its maker can move (a uinput gamepad) is made and held by the
guard process (``host_axes``, ``SetAxes`` on the pipe), as uinput keys are.

A driving loop puts the pieces together like this::

    with open_capture("Euro Truck Simulator 2", fps=20) as capture, \
            SafetyGuard(probe_key_backend()[0], period_s=1 / 20) as guard:
        guard.install_signal_handlers()
        controller = Controller()
        frame = capture.grab()
        guard.engage(frame_is_fresh(frame.timestamp, time.monotonic(), guard.config.period_s))
        while True:
            frame = capture.grab()                      # paced; CaptureLost ends the drive
            action = controller.update(perceiver(frame.image), frame.timestamp,
                                       (frame.image.shape[1], frame.image.shape[0]))
            guard.apply(controller.keys_for(action, time.monotonic()), capture.health())
            if not guard.engaged:
                controller.reset()                      # re-engage on the user's request

Long pauses (loading a model, the first CUDA call) must not fall between
``apply`` calls while keys are held, or the guard process releases them and
the agent disengages: do them before engaging, or call ``guard.heartbeat``.

uinput keys belong to the process that owns the device, so no other process
can release them: for uinput (or with ``GuardConfig.host_keys``) the guard
process *hosts* the backend, the agent sends it each key state and waits for
the acknowledgement; a stall or a death of the agent then releases them just
the same, and if the guard process itself dies the kernel does.

The pipe carries typed, versioned messages (``agent.io.guard_protocol``): parent ->
guard ``Heartbeat(keys)``, ``Quit``, and in hosted mode ``SetKeys(keys, seq)`` (apply
this key state; also a heartbeat) and ``Unlock`` (after a stall release, sent by
``engage``); guard -> parent ``Ready``, ``Released(reason, took_ms)``, hosted:
``Ack(seq, locked)`` (locked: presses refused after a stall release until ``Unlock``).
Why the guard disengaged is a ``Disengagement`` (``SafetyGuard.disengagement``) whose
``DisengageReason`` callers switch on; its text is for people.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import json
import logging
import os
import queue
import threading
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from agent.io.guard_protocol import (
    TO_GUARD,
    TO_PARENT,
    Ack,
    DisengageReason,
    Disengagement,
    Heartbeat,
    Message,
    ProtocolError,
    Quit,
    Ready,
    ReleaseReason,
    Released,
    SetAxes,
    SetKeys,
    ToParent,
    Unlock,
    decode,
    encode,
)
from agent.io.keys.base import KeyBackend, KeyMap, keys_down
from agent.types import DRIVING_KEYS, KeysHeld

log = logging.getLogger(__name__)

#: ``LogRecord`` attribute carrying the DisengageReason of a "disengaged" / "not engaging" log line.
LOG_REASON_ATTR = "disengage_reason"


@dataclass(frozen=True)
class GuardConfig:
    """Safety guard settings."""

    period_s: float = 0.05
    """the driving loop's period in seconds (heartbeats come once per period)"""
    stall_periods: float = 3.0
    """heartbeat silence, in periods, after which the guard process releases every key"""
    estop_keys: tuple[str, ...] = ("End", "Pause")
    """X keysym names of the emergency-stop hotkeys (polled from the X server keymap)"""
    detect_takeover: bool = True
    """disengage when a person holds a driving key (arrows or WASD) the agent did not press"""
    frozen_while_driving_frames: int = 15
    """identical captured frames while the agent holds a key before the capture counts as
    stale (a key press must change the picture; a static scene while standing still is fine)"""
    guard_process: bool = True
    """start the separate guard process when the backend supports it"""
    host_keys: bool | None = None
    """run the key backend itself inside the guard process (the parent sends key states over
    the pipe); None: only when the guard cannot release the backend's keys from outside (uinput)"""
    host_axes: bool | None = None
    """run the analog output inside the guard process (the parent sends each axes state over the
    pipe); None: only when no other process can open it to centre it (a uinput gamepad belongs to
    the process that made it) but the guard process can make it (``recipe()``)"""
    ready_timeout_s: float = 10.0
    """how long to wait for the guard process to start"""


def mask_of(keys: KeysHeld) -> str:
    """The keys as 0/1 characters in DRIVING_KEYS order, for log lines."""
    return "".join("1" if getattr(keys, k) else "0" for k in DRIVING_KEYS)


def backend_from_spec(spec: dict) -> KeyBackend:
    """Rebuild a key backend in the guard process from ``KeyBackend.guard_spec()``."""
    kind = spec.get("kind")
    keymap = KeyMap(**spec["keymap"]) if "keymap" in spec else None
    if kind == "x11":
        from agent.io.keys.x11 import X11Keys

        return X11Keys(keymap, display_name=spec.get("display"))
    if kind == "windows":
        from agent.io.keys.windows import WindowsSendInputKeys

        return WindowsSendInputKeys(keymap)
    if kind == "uinput":
        from agent.io.keys.uinput import UinputKeys

        return UinputKeys(keymap, device_name=spec.get("device_name", "truckpilot-keys"))
    if kind == "sim":
        from agent.io.keys.sim import SimKeys

        return SimKeys(keymap)
    raise ValueError(f"guard process cannot release keys of backend kind {kind!r}")


def axes_from_spec(spec: dict):
    """Open, in the guard process, the analog output an ``AxisOutput.guard_spec()`` describes."""
    kind = spec.get("kind")
    if kind == "scs-controls":
        from agent.io.axes.scs_controls import ScsControlsOutput

        return ScsControlsOutput.open(spec["path"], version=spec.get("version"))
    if kind == "uinput-gamepad":
        from agent.io.axes.uinput_gamepad import UinputGamepadOutput

        return UinputGamepadOutput(**{k: v for k, v in spec.items() if k != "kind"})
    raise ValueError(f"guard process cannot open axes of output kind {kind!r}")


def frame_is_fresh(frame_timestamp: float, now: float, period_s: float, max_periods: float = 3.0) -> bool:
    """Whether a frame captured at ``frame_timestamp`` (monotonic s) is recent
    enough at ``now`` to engage on: at most ``max_periods`` loop periods old."""
    return 0.0 <= now - frame_timestamp <= max_periods * period_s


class GuardProcessError(RuntimeError):
    """The guard process did not start or died."""


class HostedKeys(KeyBackend):
    """Stand-in for a key backend that lives in the guard process (``host_keys``).

    Every change is sent as the full key state (``SetKeys``) and waits for
    the guard process's acknowledgement, so the keys are really down or up when
    ``apply`` returns, exactly as with an in-process backend.
    """

    kind = "hosted"

    def __init__(self, guard: "SafetyGuard", keymap: KeyMap, inner_kind: str) -> None:
        super().__init__(keymap)
        self.inner_kind = inner_kind
        self._guard = guard

    def _send(self, key: str, down: bool) -> None:
        pass  # the whole state goes out in _flush

    def _flush(self) -> None:
        self._guard._host_apply(self.held())


class HostedAxes:
    """Stand-in for an analog output that lives in the guard process (``host_axes``): every send
    goes over the pipe (``SetAxes``) and waits for the acknowledgement, like ``HostedKeys``."""

    def __init__(self, guard: "SafetyGuard", inner_kind: str) -> None:
        from agent.io.axes import NEUTRAL

        self._guard = guard
        self.inner_kind = inner_kind
        self.last = NEUTRAL

    def send(self, axes) -> None:
        self._guard._host_axes(axes)
        self.last = axes

    def neutral(self) -> None:
        from agent.io.axes import NEUTRAL

        self.send(NEUTRAL)

    def close(self) -> None:
        self.neutral()  # the guard process closes the device itself when it exits


class SafetyGuard:
    """Wraps a KeyBackend so keys are only held while it is safe.

    backend: the key backend to drive (the guard releases through it and,
        out of process, through a twin built from ``backend.guard_spec()``).
    keyboard: something with ``down(names) -> set[str]`` reading the physical
        keyboard state (agent.io.keys.x11.X11KeymapReader,
        agent.io.keys.windows.Win32KeyboardReader); default: one of those for the
        X11 / Windows backends, None for others (then no e-stop hotkey or
        takeover detection; said in the log).
    focus_check: optional callable -> bool, True while the game window has
        the keyboard focus (agent.io.window.FocusCheck); when it turns False the
        agent disengages, so keys never land in another window. Not closed here.
    axes: an analog output (``agent.io.axes.AxisOutput``) driven beside the keys, or None; it is
        centred on every disengagement and closed by ``close``. With a ``guard_spec()`` it is also
        centred by the guard process (stall, kill -9, SIGSTOP); one that only its maker can move
        but the guard process can make (``recipe()``: a uinput gamepad) is hosted there
        (``host_axes``: ``guard.axes`` is then a ``HostedAxes``); otherwise it is centred only in
        process, said in the log.

    With ``host_keys`` (automatic for uinput) the given backend is closed and
    rebuilt inside the guard process; ``guard.backend`` is then a HostedKeys
    stand-in: always press keys through ``guard.backend`` / ``guard.apply``.
    """

    def __init__(self, backend: KeyBackend, period_s: float | None = None, *,
                 config: GuardConfig | None = None, keyboard=None, focus_check=None, axes=None) -> None:
        from agent.io.axes import NEUTRAL

        config = config or GuardConfig()
        if period_s is not None:
            config = dataclasses.replace(config, period_s=float(period_s))
        if config.period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {config.period_s}")
        self.config = config
        self.backend = backend
        self.focus_check = focus_check
        self.axes = axes
        self.axes_held = NEUTRAL
        """the analog axes held now (NEUTRAL while disengaged or without an analog output)"""
        self._engaged = False
        self.disengagement: Disengagement | None = Disengagement(DisengageReason.NOT_ENGAGED)
        """why the guard is not driving (None while engaged); switch on its ``reason``"""
        self.events: list[str] = []
        """engagement changes for people ("engaged", "disengaged: <text>")"""
        self._owns_keyboard = False
        if keyboard is None and backend.kind == "x11":
            from agent.io.keys.x11 import X11KeymapReader

            keyboard = X11KeymapReader(getattr(backend, "display_name", None))
            self._owns_keyboard = True
        elif keyboard is None and backend.kind == "windows" and sys.platform == "win32":
            from agent.io.keys.windows import Win32KeyboardReader

            keyboard = Win32KeyboardReader()
            self._owns_keyboard = True
        self.keyboard = keyboard
        if keyboard is None:
            log.warning("no keyboard reader for backend %r: no e-stop hotkey or takeover detection",
                        backend.kind)
        self._watch_keys = ()
        if keyboard is not None:
            maps = (backend.keymap, KeyMap.arrows(), KeyMap.wasd())
            self._watch_keys = tuple(sorted({p for km in maps for _, p in km.items()}))
        self._proc: subprocess.Popen | None = None
        self._news: queue.Queue[ToParent | ProtocolError] = queue.Queue()
        self._stash: list[ToParent | ProtocolError] = []
        self._seq = 0
        self._host_failed: Disengagement | None = None
        host = config.host_keys
        if host is None:
            host = backend.guard_spec() is None and backend.recipe() is not None
        self.hosted = bool(host and config.guard_process)
        if self.hosted:
            spec = backend.recipe()
            if spec is None:
                raise ValueError(f"backend {backend.kind!r} cannot be hosted in the guard process")
        else:
            spec = backend.guard_spec() if config.guard_process else None
        axes_spec, self.axes_hosted = None, False
        if axes is not None:
            outside = axes.guard_spec() if hasattr(axes, "guard_spec") else None
            recipe = axes.recipe() if hasattr(axes, "recipe") else None
            host_axes = config.host_axes if config.host_axes is not None else (outside is None and recipe is not None)
            if host_axes and recipe is None:
                raise ValueError(f"the analog output {type(axes).__name__} cannot be hosted in the guard process")
            self.axes_hosted = bool(host_axes and spec is not None)
            axes_spec = recipe if self.axes_hosted else outside
            if axes_spec is None or spec is None:
                log.warning("the analog output %s cannot be centred from outside this process: a kill -9 or "
                            "SIGSTOP of the agent leaves its axes where they are", type(axes).__name__)
        if spec is not None:
            try:
                if self.hosted:
                    backend.close()  # frees the device / connection; the guard process makes its own
                    self.backend = HostedKeys(self, backend.keymap, spec["kind"])
                if self.axes_hosted:
                    axes.close()  # the guard process makes its own device and holds the axes
                    self.axes = HostedAxes(self, axes_spec["kind"])
                self._start_process(spec, axes_spec)
            except Exception:
                if self._owns_keyboard:
                    self.keyboard.close()
                raise
        self._closed = False
        atexit.register(self.close)

    # ---- the guard process -------------------------------------------------
    def _start_process(self, spec: dict, axes_spec: dict | None = None) -> None:
        cmd = [sys.executable, "-m", "agent.io.guard", "--spec", json.dumps(spec),
               "--period", repr(self.config.period_s), "--stall-periods", repr(self.config.stall_periods)]
        if self.hosted:
            cmd.append("--hosted")
        if axes_spec is not None:
            cmd += ["--axes-spec", json.dumps(axes_spec)]
            if self.axes_hosted:
                cmd.append("--hosted-axes")
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        # a thread reads the guard's news (portable: Windows cannot select() on pipes)
        threading.Thread(target=self._pump_news, args=(self._proc.stdout,), daemon=True,
                         name="guard-news").start()
        try:
            first = self._news.get(timeout=self.config.ready_timeout_s)
        except queue.Empty:
            first = None
        if not isinstance(first, Ready):
            self._proc.kill()
            self._proc.wait()
            why = f": {first}" if isinstance(first, ProtocolError) else ""
            raise GuardProcessError(f"guard process did not start (exit code {self._proc.poll()}){why}; "
                                    f"run `{sys.executable} -m agent.io.guard --help` to see why")
        log.info("guard process %d %s %s keys%s, stall after %.0f ms", self._proc.pid,
                 "hosting" if self.hosted else "watching", spec["kind"],
                 f", {'hosting' if self.axes_hosted else 'centring'} {axes_spec['kind']} axes" if axes_spec else "",
                 1e3 * self.config.period_s * self.config.stall_periods)

    @property
    def guard_pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _pump_news(self, stream) -> None:
        """Decode the guard process's lines; a line out of protocol is queued as its ProtocolError."""
        for raw in iter(stream.readline, b""):
            try:
                self._news.put(decode(raw, TO_PARENT))
            except ProtocolError as exc:
                self._news.put(exc)

    def _read_news(self) -> list[ToParent | ProtocolError]:
        news, self._stash = self._stash, []
        while True:
            try:
                news.append(self._news.get_nowait())
            except queue.Empty:
                return news

    def _host_apply(self, keys: KeysHeld) -> None:
        """Hosted mode: send the key state, wait for the guard process to apply it."""
        self._host_roundtrip(lambda seq: SetKeys(keys, seq), f"key state {mask_of(keys)}", any(keys.as_array()))

    def _host_axes(self, axes) -> None:
        """Hosted axes: send the axes, wait for the guard process to hold them."""
        from agent.io.axes import NEUTRAL

        self._host_roundtrip(lambda seq: SetAxes(axes.steer, axes.throttle, axes.brake, seq),
                             f"axes {axes.steer:.2f}/{axes.throttle:.2f}/{axes.brake:.2f}", axes != NEUTRAL)

    def _host_roundtrip(self, message_for, what: str, active: bool) -> None:
        """Send ``message_for(seq)`` to the hosting guard process and wait for its ``Ack(seq)``;
        ``active``: it presses or deflects something (a locked Ack then counts as a stall release)."""
        if self._host_failed is not None:
            return
        self._seq += 1
        if not self._send(message_for(self._seq)):
            self._host_failed = Disengagement(DisengageReason.GUARD_DIED)
            return
        deadline = time.monotonic() + self.config.period_s * self.config.stall_periods
        while True:
            try:
                news = self._news.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                # as stalled as a stalled loop: hang up, so it releases as soon as it runs
                self._host_failed = Disengagement(DisengageReason.GUARD_UNRESPONSIVE)
                log.error("guard process did not acknowledge %s: hanging up", what)
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
                return
            if isinstance(news, Ack) and news.seq == self._seq:
                if news.locked and active:
                    self._stash.append(Released(ReleaseReason.STALL_LOCKED, 0.0))
                return
            self._stash.append(news)  # a release, an error, or a late Ack: for check()

    def _send(self, message: Message) -> bool:
        """Write one message to the guard process; False when its pipe is gone."""
        if self._proc is None:
            return True
        try:
            self._proc.stdin.write(encode(message))
            self._proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    # ---- state -------------------------------------------------------------
    @property
    def engaged(self) -> bool:
        return self._engaged

    @property
    def disengage_reason(self) -> str | None:
        """``disengagement`` as a line for people (None while engaged); decide on ``disengagement.reason``."""
        return None if self.disengagement is None else str(self.disengagement)

    def engage(self, frame_fresh: bool) -> bool:
        """Start driving if safe: needs a fresh frame, no e-stop or person on the
        keys, a live guard process. Returns whether it is engaged."""
        refusal = None
        broken = [news for news in self._read_news() if isinstance(news, ProtocolError)]  # the rest is stale
        if not frame_fresh:
            refusal = Disengagement(DisengageReason.NO_FRESH_FRAMES)
        elif broken:
            refusal = Disengagement(DisengageReason.GUARD_PROTOCOL_ERROR, str(broken[0]))
        elif self._host_failed is not None:
            refusal = self._host_failed
        elif self._proc is not None and self._proc.poll() is not None:
            refusal = Disengagement(DisengageReason.GUARD_DIED)
        elif self.focus_check is not None and not self.focus_check():
            refusal = Disengagement(DisengageReason.FOCUS_LOST)
        else:
            physical = self._physical_down()
            if physical & set(self.config.estop_keys):
                refusal = Disengagement(DisengageReason.ESTOP,
                                        ", ".join(sorted(physical & set(self.config.estop_keys))))
            elif physical & set(self._watch_keys):
                refusal = Disengagement(DisengageReason.TAKEOVER, ", ".join(sorted(physical & set(self._watch_keys))))
        if refusal is not None:
            log.warning("not engaging: %s", refusal, extra={LOG_REASON_ATTR: refusal.reason})
            self.disengagement = refusal
            return False
        if self.hosted or self.axes_hosted:
            self._send(Unlock())  # the guard process accepts key presses (and axes) again
        self._engaged = True
        self.disengagement = None
        self.events.append("engaged")
        log.info("engaged")
        return True

    def disengage(self, why: Disengagement) -> None:
        """Stop driving: release every key the agent holds (only those: a person
        who took over keeps the keys they hold)."""
        if self._engaged:
            log.warning("disengaged: %s", why, extra={LOG_REASON_ATTR: why.reason})
            self.events.append(f"disengaged: {why}")
        self._engaged = False
        self.disengagement = why
        self.backend.release_all()
        self.centre_axes()
        self.heartbeat(self.backend.held())

    def centre_axes(self) -> None:
        """Centre the wheel and release the pedals of the analog output (if any)."""
        from agent.io.axes import NEUTRAL

        if self.axes is not None:
            self.axes.neutral()
        self.axes_held = NEUTRAL

    def _axes_deflected(self) -> bool:
        from agent.io.axes import NEUTRAL

        return self.axes_held != NEUTRAL

    def heartbeat(self, keys_held: KeysHeld) -> None:
        """Tell the guard process we are alive and what we hold."""
        if not self._send(Heartbeat(keys_held)) and self._engaged:
            self._engaged = False
            self.disengagement = Disengagement(DisengageReason.GUARD_DIED)
            self.backend.release_all()
            log.error("guard process died: disengaged")

    def _physical_down(self) -> set[str]:
        if self.keyboard is None:
            return set()
        return self.keyboard.down(self._watch_keys + tuple(self.config.estop_keys))

    def check(self, capture_health=None) -> Disengagement | None:
        """Look for a reason to stop; disengage and return it, or None."""
        if not self._engaged:
            return None
        why = None
        for news in self._read_news():
            if isinstance(news, ProtocolError):
                log.error("guard process broke the pipe protocol: %s", news)
                why = why or Disengagement(DisengageReason.GUARD_PROTOCOL_ERROR, str(news))
            elif isinstance(news, Released):
                why = why or Disengagement(DisengageReason.GUARD_RELEASED, release=news.reason)
            # Ready / a late Ack: nothing to do
        if why is None and self._proc is not None and self._proc.poll() is not None:
            why = Disengagement(DisengageReason.GUARD_DIED)
        if why is None and self._host_failed is not None:
            why = self._host_failed
        if why is None and capture_health is not None:
            geometry = getattr(capture_health, "geometry", None)
            if getattr(capture_health, "hidden", False):
                why = Disengagement(DisengageReason.WINDOW_HIDDEN)
            elif getattr(capture_health, "resized", False):
                why = Disengagement(DisengageReason.WINDOW_RESIZED,
                                    f"{geometry.width}x{geometry.height}" if geometry is not None else "")
            elif not capture_health.ok:
                why = Disengagement(DisengageReason.CAPTURE_STALE,
                                    ", ".join(capture_health.problems() or ["no frames"]))
            elif (capture_health.identical_frames >= self.config.frozen_while_driving_frames
                  and (any(self.backend.held().as_array()) or self._axes_deflected())):
                what = "keys are held" if any(self.backend.held().as_array()) else "the axes are deflected"
                why = Disengagement(DisengageReason.CAPTURE_STALE,
                                    f"frozen ({capture_health.identical_frames} identical frames) while {what}")
        if why is None and self.focus_check is not None and not self.focus_check():
            why = Disengagement(DisengageReason.FOCUS_LOST)
        if why is None and self.keyboard is not None:
            physical = self._physical_down()
            estop = physical & set(self.config.estop_keys)
            ours = {self.backend.keymap.physical(k) for k in keys_down(self.backend.held())}
            foreign = (physical & set(self._watch_keys)) - ours
            if estop:
                why = Disengagement(DisengageReason.ESTOP, ", ".join(sorted(estop)))
            elif foreign and self.config.detect_takeover:
                why = Disengagement(DisengageReason.TAKEOVER, ", ".join(sorted(foreign)))
        if why is not None:
            self.disengage(why)
        return why

    def apply(self, keys: KeysHeld, capture_health=None, axes=None) -> KeysHeld:
        """The per-tick call: check, apply ``keys`` (and ``axes``, an ``agent.io.axes.Axes``, to
        the analog output; None: neutral) if engaged, else release and centre; heartbeat. Returns
        the keys actually held afterwards (``axes_held``: the axes)."""
        self.check(capture_health)
        if self._engaged:
            # tell the guard process first what may be down, so a stall between
            # the key events and the heartbeat cannot hide a key from it
            before = self.backend.held()
            self.heartbeat(KeysHeld(*(a or b for a, b in zip(before.as_array(), keys.as_array()))))
            self.backend.apply(keys)
            if self.axes is not None:
                from agent.io.axes import NEUTRAL

                self.axes.send(axes if axes is not None else NEUTRAL)
                self.axes_held = axes if axes is not None else NEUTRAL
        else:
            self.backend.release_all()
            if self._axes_deflected():
                self.centre_axes()
        held = self.backend.held()
        self.heartbeat(held)
        return held

    def install_signal_handlers(self) -> None:
        """Turn SIGTERM (and SIGHUP) into SystemExit so ``finally`` / ``with`` blocks
        release the keys (SIGINT already raises KeyboardInterrupt). Call from the
        main thread of the driving program; the guard process covers the rest."""
        def _exit(signum, _frame):
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _exit)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, _exit)

    def close(self) -> None:
        """Release every key, stop the guard process, close the keyboard reader."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        atexit.unregister(self.close)
        self._engaged = False
        try:
            self.backend.release_all()
            if self.axes is not None:
                self.axes.close()  # goes neutral
        finally:
            if self._proc is not None:
                self._send(Quit())
                try:
                    self._proc.stdin.close()
                except OSError:
                    pass
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc.stdout.close()
            if self._owns_keyboard and self.keyboard is not None:
                self.keyboard.close()

    def __enter__(self) -> "SafetyGuard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- the guard process ------------------------------------------------------
def _say(fd: int, message: ToParent) -> None:
    """Tell the parent something on ``fd``; it may be gone (killed), which is fine."""
    try:
        os.write(fd, encode(message))
    except OSError:
        pass


@dataclass
class _Watch:
    period_s: float
    stall_periods: float
    last_beat: float = field(default_factory=time.monotonic)
    held: KeysHeld = field(default_factory=KeysHeld)
    released: bool = True
    locked: bool = False


#: The guard process releases this much before the stall limit, for its own wake-up and X round trip.
RELEASE_MARGIN_S: float = 0.01


def run_guard_process(spec: dict, period_s: float, stall_periods: float, stdin_fd: int = 0,
                      hosted: bool = False, stdout_fd: int = 1, axes_spec: dict | None = None,
                      hosted_axes: bool = False) -> int:
    """Body of ``python -m agent.io.guard``: watch heartbeats on ``stdin_fd``, answer on ``stdout_fd``.

    hosted: the backend is the agent's own (uinput): ``SetKeys`` applies a key state and
    is answered by ``Ack(seq)`` (``locked`` when presses are refused after a stall
    release, until ``Unlock`` from SafetyGuard.engage).

    A line that is not a parent -> guard message of this protocol version releases the
    keys (``Released(PROTOCOL_ERROR)``) and ends the process with exit code 2.

    axes_spec: the agent's analog output (``axes_from_spec``), centred with every release.
    hosted_axes: that output is the agent's own (a uinput gamepad): ``SetAxes`` holds axes and is
    answered by ``Ack(seq)`` (neutral and ``locked`` after a stall release, until ``Unlock``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's; its exit closes our pipe
    backend = backend_from_spec(spec)
    axes = axes_from_spec(axes_spec) if axes_spec is not None else None
    watch = _Watch(period_s, stall_periods)
    # Act a little early so the keys are up by ``stall_periods`` periods after the last heartbeat,
    # the wake-up and the X round trip (1-5 ms measured) included.
    stall_s = period_s * stall_periods - min(0.1 * period_s, RELEASE_MARGIN_S)

    def release(why: ReleaseReason) -> None:
        start = time.monotonic()
        if hosted or hosted_axes:
            watch.locked = why is ReleaseReason.STALL
        if hosted:
            backend.release_all()  # we hold the keys ourselves
        else:
            backend.force_release(watch.held)  # only what the agent held: a person keeps theirs
        if axes is not None:
            axes.neutral()  # the agent's own analog device: nobody else steers through it
        _say(stdout_fd, Released(why, 1e3 * (time.monotonic() - start)))
        watch.released = True

    def on_term(signum, _frame):
        release(ReleaseReason.SIGTERM)
        backend.close()
        if axes is not None:
            axes.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump_stdin() -> None:  # a thread: portable (Windows cannot select() on pipes)
        with os.fdopen(stdin_fd, "rb", buffering=0, closefd=False) as stream:
            buffer = b""
            while True:
                chunk = stream.read(4096)
                if not chunk:
                    lines.put(None)  # EOF: the parent is gone
                    return
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                for raw in done:
                    lines.put(raw)

    threading.Thread(target=pump_stdin, daemon=True, name="guard-stdin").start()
    _say(stdout_fd, Ready())
    try:
        while True:
            timeout = max(0.0, watch.last_beat + stall_s - time.monotonic())
            try:
                raw = lines.get(timeout=timeout)
            except queue.Empty:
                if not watch.released:
                    release(ReleaseReason.STALL)
                watch.last_beat = time.monotonic()  # re-arm; released stays True until a heartbeat
                continue
            if raw is None:
                release(ReleaseReason.EOF)
                return 0
            try:
                message = decode(raw, TO_GUARD)
                if not hosted and isinstance(message, SetKeys):
                    raise ProtocolError(f"a {message.TYPE.value!r} message needs a hosting guard process (--hosted)")
                if not hosted_axes and isinstance(message, SetAxes):
                    raise ProtocolError(f"a {message.TYPE.value!r} message needs a guard process hosting the axes "
                                        "(--hosted-axes)")
                if not (hosted or hosted_axes) and isinstance(message, Unlock):
                    raise ProtocolError(f"a {message.TYPE.value!r} message needs a hosting guard process")
            except ProtocolError as exc:
                release(ReleaseReason.PROTOCOL_ERROR)
                print(f"guard process: {exc}", file=sys.stderr, flush=True)
                return 2
            if isinstance(message, Quit):
                release(ReleaseReason.QUIT)
                return 0
            if isinstance(message, Heartbeat):
                if not hosted:
                    watch.held = message.keys
                watch.last_beat = time.monotonic()
                watch.released = False
            elif isinstance(message, SetKeys):
                keys = KeysHeld() if watch.locked else message.keys
                backend.apply(keys)
                watch.held = keys
                watch.last_beat = time.monotonic()
                watch.released = False
                _say(stdout_fd, Ack(message.seq, locked=watch.locked))
            elif isinstance(message, SetAxes):
                from agent.io.axes import NEUTRAL, Axes

                axes.send(NEUTRAL if watch.locked else Axes(message.steer, message.throttle, message.brake))
                watch.last_beat = time.monotonic()
                watch.released = False
                _say(stdout_fd, Ack(message.seq, locked=watch.locked))
            elif isinstance(message, Unlock):
                watch.locked = False
    finally:
        backend.close()
        if axes is not None:
            axes.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.io.guard",
        description="Guard process: releases every driving key when heartbeats on stdin stop "
                    "or stdin closes. Started by agent.io.guard.SafetyGuard.")
    parser.add_argument("--spec", required=True, help='backend recipe as JSON, e.g. {"kind": "x11", "display": ":0"}')
    parser.add_argument("--period", type=float, required=True, help="loop period in seconds")
    parser.add_argument("--stall-periods", type=float, default=3.0, help="silence in periods before releasing")
    parser.add_argument("--hosted", action="store_true",
                        help="own the key backend: apply the key states the parent sends (uinput)")
    parser.add_argument("--hosted-axes", action="store_true",
                        help="own the analog output --axes-spec names: hold the axes the parent sends (uinput gamepad)")
    parser.add_argument("--axes-spec", default=None,
                        help='the agent\'s analog output as JSON, centred with every release, e.g. '
                             '{"kind": "scs-controls", "path": "/dev/shm/SCS/SCSControls", "version": "..."}')
    args = parser.parse_args(argv)
    # the pipe to the parent carries protocol messages only: whatever a library prints goes to stderr
    pipe_fd = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return run_guard_process(json.loads(args.spec), args.period, args.stall_periods, hosted=args.hosted,
                             stdout_fd=pipe_fd, axes_spec=json.loads(args.axes_spec) if args.axes_spec else None,
                             hosted_axes=args.hosted_axes)


if __name__ == "__main__":
    sys.exit(main())
