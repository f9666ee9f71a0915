"""``truckpilot doctor``: check the set-up a user will get wrong.

Checks, each printed as one OK / WARN / FAIL line with what to fix:
display server (X11, or Wayland with XWayland), screen or window capture
(black, frozen, offset), optional key injection read back from the X server
(``--key-test``), key backend choice, uinput permissions, GPU, whether the
ImageNet ResNet34 weights are in the torch hub cache, whether the game's SCS
telemetry block is reachable (path and plugin revision), and which analog output
backends (``agent.io.axes``: scs-controls, uinput-gamepad, vgamepad) could work here
and why the others cannot (looked at, never opened: no pad appears, nothing is
written). Exit code 1 on any FAIL.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "OK", "WARN", "FAIL"

#: torchvision's file name for ResNet34_Weights.IMAGENET1K_V1
RESNET34_FILE = "resnet34-b627a593.pth"


@dataclass(frozen=True)
class CheckResult:
    """One check: status OK/WARN/FAIL, what was found, and the fix (if any)."""

    name: str
    status: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"[{self.status:<4}] {self.name}: {self.message}"
        return text + (f"\n       fix: {self.fix}" if self.fix and self.status != OK else "")


def check_display(env=os.environ) -> CheckResult:
    session = env.get("XDG_SESSION_TYPE", "")
    wayland, display = env.get("WAYLAND_DISPLAY"), env.get("DISPLAY")
    if sys.platform == "win32":
        return CheckResult("display", OK, "Windows desktop")
    if (session == "wayland" or wayland) and not display:
        return CheckResult("display", FAIL, "Wayland session without XWayland (DISPLAY unset)",
                           "run the game under XWayland (it is, for Proton/Steam games) and export DISPLAY, "
                           "or log in to an X11 session; screen capture and XTest need X")
    if not display:
        return CheckResult("display", FAIL, "DISPLAY is not set",
                           "run inside an X session, or start Xvfb :1 and export DISPLAY=:1")
    try:
        from agent.io.keys.x11 import open_display

        d = open_display(display)
        screen = d.screen()
        size = f"{screen.width_in_pixels}x{screen.height_in_pixels}"
        xtest = d.has_extension("XTEST")
        d.close()
    except Exception as exc:  # noqa: BLE001 - reported
        return CheckResult("display", FAIL, f"cannot open X display {display}: {exc}",
                           "check DISPLAY and X authority (xhost +local: or XAUTHORITY)")
    where = "XWayland" if (session == "wayland" or wayland) else "X11"
    if not xtest:
        return CheckResult("display", WARN, f"{where} display {display} ({size}) lacks XTEST",
                           "enable the XTEST extension, or use the uinput key backend")
    return CheckResult("display", OK, f"{where} display {display} ({size}), XTEST present")


def find_capture_offset(window_image, screen_image, origin: tuple[int, int]) -> tuple[int, int] | None:
    """Where the window's pixels really are, relative to where the capture thinks.

    window_image: HxWx3 RGB grab of the window; screen_image: a grab of the
    screen around it whose top-left pixel is ``origin`` pixels up-left of the
    window's expected position. Returns (dx, dy) of the best match (0, 0 when
    the capture is aligned) or None when the image has too little texture
    to tell (e.g. a uniform window).
    """
    import cv2
    import numpy as np

    win = cv2.cvtColor(window_image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    scr = cv2.cvtColor(screen_image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if win.std() < 2.0 or scr.shape[0] < win.shape[0] or scr.shape[1] < win.shape[1]:
        return None
    scores = cv2.matchTemplate(scr, win, cv2.TM_SQDIFF_NORMED)
    _, _, best, _ = cv2.minMaxLoc(scores)
    ox, oy = origin
    if scores[oy, ox] <= scores[best[1], best[0]] + 1e-6:
        return (0, 0)
    return (best[0] - ox, best[1] - oy)


def _offset_check(window_image, geometry, display_name=None) -> tuple[int, int] | None:
    """Grab the screen around ``geometry`` and locate the window image in it."""
    from agent.io.capture import _monitor_geometry, open_capture

    screen = _monitor_geometry(display_name, 0)
    margin = 32
    x0, y0 = max(screen.x, geometry.x - margin), max(screen.y, geometry.y - margin)
    x1 = min(screen.x + screen.width, geometry.x + geometry.width + margin)
    y1 = min(screen.y + screen.height, geometry.y + geometry.height + margin)
    with open_capture(region=(x0, y0, x1 - x0, y1 - y0), display_name=display_name) as cap:
        around = cap.grab().image
    return find_capture_offset(window_image, around, (geometry.x - x0, geometry.y - y0))


def check_capture(window: str | None, region=None) -> CheckResult:
    """Grab twice; black, frozen (only a WARN: a paused game is static) or offset."""
    from agent.io.capture import CaptureConfig, open_capture

    what = f"window {window!r}" if window else "screen"
    try:
        with open_capture(window, region=region, config=CaptureConfig(frozen_after=1)) as cap:
            first = cap.grab()
            time.sleep(0.2)
            second = cap.grab()
            health = cap.health()
    except Exception as exc:  # noqa: BLE001
        return CheckResult("capture", FAIL, f"cannot capture the {what}: {exc}",
                           "check the window title (substring, case-sensitive) and that it is not minimised")
    h, w = second.image.shape[:2]
    geometry = health.geometry
    if health.black:
        return CheckResult("capture", FAIL, f"{what} ({w}x{h}) is black (mean level {health.mean_level:.1f})",
                           "the compositor may hide the window from X capture: run the game windowed or "
                           "borderless under X11/XWayland, disable hardware overlays, un-minimise it")
    if geometry is not None and (geometry.x < 0 or geometry.y < 0):
        return CheckResult("capture", WARN, f"{what} is partly off-screen at {geometry}",
                           "move the window fully onto the screen")
    if window and geometry is not None:
        try:
            offset = _offset_check(second.image, geometry)
        except Exception as exc:  # noqa: BLE001
            return CheckResult("capture", WARN, f"could not check the {what} for an offset: {exc}")
        if offset not in (None, (0, 0)):
            return CheckResult("capture", FAIL, f"{what} capture is offset by {offset} px from the window's pixels",
                               "display scaling (HiDPI) or window decorations shift the capture: set scaling "
                               "to 100 % or pass --region inside the window")
    message = f"{what} {w}x{h} at {geometry.x},{geometry.y}, mean level {health.mean_level:.0f}, " \
              f"grab {health.grab_ms:.1f} ms"
    if health.frozen:
        return CheckResult("capture", WARN, message + "; two grabs 0.2 s apart are identical",
                           "fine if the game is paused; otherwise the capture is frozen "
                           "(compositor, a stale window, or the wrong window)")
    del first
    return CheckResult("capture", OK, message)


def check_key_test(window: str | None) -> CheckResult:
    """XTest press + release of the throttle key, read back from the server keymap."""
    from agent.io.keys.x11 import X11Keys, read_held_keys
    from agent.types import KeysHeld

    try:
        if window:
            from agent.io.window import FocusCheck, find_window, focus_window

            window_id = find_window(window).window_id
            focus_window(window_id)
            check = FocusCheck(window_id)
            try:
                focused = check()
            finally:
                check.close()
            if not focused:
                return CheckResult("keys", FAIL, f"window {window!r} did not take the keyboard focus",
                                   "click into the game window; some window managers refuse focus requests")
        with X11Keys() as keys:
            keys.press("throttle")
            down = read_held_keys()
            keys.release("throttle")
            up = read_held_keys()
    except Exception as exc:  # noqa: BLE001
        return CheckResult("keys", FAIL, f"XTest key test failed: {exc}",
                           "use an X11/XWayland session with XTEST, or the uinput backend")
    if not down.throttle or up != KeysHeld():
        return CheckResult("keys", FAIL, f"pressed Up but the X server shows {down} / after release {up}",
                           "another program grabs the keyboard, or a person holds a key")
    target = f" to window {window!r} (focused)" if window else " (to the focused window)"
    return CheckResult("keys", OK, "XTest press and release of Up seen on the X server" + target)


def check_key_backend() -> CheckResult:
    from agent.io.keys import KeyBackendUnavailable, probe_key_backend

    try:
        backend, reason = probe_key_backend()
    except KeyBackendUnavailable as exc:
        return CheckResult("key backend", FAIL, str(exc), "see the display and uinput lines")
    backend.close()
    return CheckResult("key backend", OK, reason)


def check_uinput() -> CheckResult:
    if sys.platform != "linux":
        return CheckResult("uinput", OK, "not Linux: not needed")
    from agent.io.keys.uinput import uinput_problem

    problem = uinput_problem()
    if problem:
        return CheckResult("uinput", WARN, problem.split(":")[0],
                           problem.split(": ", 1)[1] if ": " in problem else "")
    return CheckResult("uinput", OK, "/dev/uinput is writable (kernel releases its keys if TruckPilot dies)")


def check_gpu() -> CheckResult:
    try:
        import torch
    except ImportError:
        return CheckResult("gpu", FAIL, "torch is not installed", "./run.sh installs everything")
    if torch.cuda.is_available():
        return CheckResult("gpu", OK, f"CUDA: {torch.cuda.get_device_name(0)} (torch {torch.__version__})")
    if torch.version.cuda:
        fix = (f"this torch is built for CUDA {torch.version.cuda} but sees no GPU: check `nvidia-smi`, "
               "the NVIDIA driver and CUDA_VISIBLE_DEVICES")
    else:
        fix = "this torch build is CPU-only: install a CUDA build of torch on a machine with an NVIDIA GPU"
    return CheckResult("gpu", WARN, f"no CUDA GPU (torch {torch.__version__}): driving and training run on CPU",
                       fix)


def check_weights() -> CheckResult:
    try:
        import torch

        hub = Path(torch.hub.get_dir())
    except ImportError:
        hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub"
    path = hub / "checkpoints" / RESNET34_FILE
    if path.exists():
        return CheckResult("weights", OK, f"ImageNet ResNet34 weights at {path}")
    return CheckResult("weights", WARN, f"ImageNet ResNet34 weights not in the torch hub cache ({path})",
                       "fine-tuning starts from random weights without them; on a machine with internet run "
                       "python -c \"import torchvision; torchvision.models.resnet34(weights='IMAGENET1K_V1')\" "
                       "and copy the file there")


def check_telemetry(path: str | None = None) -> CheckResult:
    """Whether the game's SCS telemetry block is readable (optional: WARN, not FAIL, when it is not)."""
    from agent.io.telemetry import TelemetryError, TelemetrySource

    try:
        with TelemetrySource.open(path) as source:
            r = source.read()
    except TelemetryError as exc:
        return CheckResult("telemetry", WARN, f"not reachable: {exc}",
                           "only needed to read the game's speed and inputs (`truckpilot telemetry`)")
    state = ("paused" if r.paused else "running") if r.sdk_active else "sdk inactive"
    return CheckResult("telemetry", OK, f"{r.path}: plugin revision {r.revision}, {r.game} "
                                        f"{r.version_major}.{r.version_minor}, {state}")


#: what each analog output backend is, for the doctor's line
AXIS_BACKEND_WHAT = {
    "scs-controls": "the SCS SDK input plugin's block (ETS2LA scs-sdk-controller)",
    "uinput-gamepad": "a Linux uinput virtual gamepad",
    "vgamepad": "a virtual Xbox 360 pad on ViGEmBus (Windows)",
}


def check_axis_outputs(problems: dict[str, str | None] | None = None) -> list[CheckResult]:
    """One line per analog output backend: OK where it could work here, else WARN with why (they are
    optional: the agent drives with keys without them). ``problems``: ``axis_backend_problems()``."""
    from agent.io.axes import axis_backend_problems

    if problems is None:
        problems = axis_backend_problems()
    results = []
    for name, problem in problems.items():
        what = AXIS_BACKEND_WHAT.get(name, name)
        if problem is None:
            results.append(CheckResult(f"axes {name}", OK, f"reachable: {what}"))
        else:
            results.append(CheckResult(f"axes {name}", WARN, f"not reachable: {problem}",
                                       f"only needed to drive with analog axes through {what}"))
    return results


def run_checks(window: str | None = None, key_test: bool = False, capture: bool = True) -> list[CheckResult]:
    results = [check_display()]
    x_ok = results[0].status != FAIL or sys.platform == "win32"
    if capture:
        results.append(check_capture(window) if x_ok else
                       CheckResult("capture", FAIL, "skipped: no display", "fix the display first"))
    if key_test:
        results.append(check_key_test(window) if x_ok else
                       CheckResult("keys", FAIL, "skipped: no display", "fix the display first"))
    results += [check_key_backend(), check_uinput(), check_gpu(), check_weights(), check_telemetry(),
                *check_axis_outputs()]
    return results


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="truckpilot doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", metavar="TITLE", help="check capture (and keys) of this window")
    parser.add_argument("--key-test", action="store_true",
                        help="press and release Up through XTest and read it back (focuses --window first)")
    parser.add_argument("--no-capture", action="store_true", help="skip the capture check")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    results = run_checks(args.window, args.key_test, capture=not args.no_capture)
    for result in results:
        print(result.line())
    failed = [r.name for r in results if r.status == FAIL]
    print(f"\n{len(results) - len(failed)} of {len(results)} checks passed or warned"
          + (f"; FAIL: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
