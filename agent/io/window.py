"""Find a window by title and read its on-screen geometry.

X11 (python-xlib): walks the window tree from the root and matches a substring
of ``_NET_WM_NAME`` (UTF-8) or ``WM_NAME``; the absolute position comes from
``translate_coords`` against the root, so it is right under a reparenting
window manager too. Windows (ctypes user32: EnumWindows / GetWindowTextW /
GetClientRect / ClientToScreen) is kept small and cannot be tested here.

Geometry is the window's client area in screen pixels: x, y of its top-left
corner, width, height.

A window that cannot be captured is one of two things, told apart by type: hidden
(``WindowHidden``: unmapped, or minimised — the window manager unmaps it (ICCCM) or keeps it
mapped with ``_NET_WM_STATE_HIDDEN`` (EWMH); it may come back, so a drive pauses) or gone
(``WindowGone`` itself: destroyed; the drive ends). ``WindowHidden`` is a ``WindowGone``, so
code that only knows the latter still stops.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)


class WindowNotFound(LookupError):
    """No (viewable) window has the requested title."""


class WindowGone(RuntimeError):
    """The window cannot be captured: destroyed (this class), or hidden (``WindowHidden``)."""


class WindowHidden(WindowGone):
    """The window exists but is not on screen: unmapped, or minimised (iconified)."""


@dataclass(frozen=True)
class WindowGeometry:
    """A window's client area on screen, in pixels (x, y: top-left corner)."""

    x: int
    y: int
    width: int
    height: int

    def as_region(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


@dataclass(frozen=True)
class WindowInfo:
    """A found window: platform id (X window id or HWND), its title, geometry."""

    window_id: int
    title: str
    geometry: WindowGeometry


class X11WindowLocator:
    """Window lookup on an X display (default $DISPLAY); owns one connection."""

    def __init__(self, display_name: str | None = None) -> None:
        from agent.io.keys.x11 import open_display

        self.display = open_display(display_name)
        self.root = self.display.screen().root
        self._net_wm_name = self.display.intern_atom("_NET_WM_NAME")
        self._utf8 = self.display.intern_atom("UTF8_STRING")
        self._net_wm_state = self.display.intern_atom("_NET_WM_STATE")
        self._net_wm_state_hidden = self.display.intern_atom("_NET_WM_STATE_HIDDEN")

    def title(self, window) -> str | None:
        """The window's _NET_WM_NAME, else WM_NAME, else None."""
        from Xlib.error import XError

        try:
            prop = window.get_full_property(self._net_wm_name, self._utf8)
            if prop is not None and prop.value:
                value = prop.value
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            name = window.get_wm_name()
            if name:
                return name.decode("latin-1") if isinstance(name, bytes) else str(name)
        except XError:
            return None
        return None

    def _walk(self, window):
        from Xlib.error import XError

        try:
            children = window.query_tree().children
        except XError:
            return
        for child in children:
            yield child
            yield from self._walk(child)

    def find(self, title: str) -> WindowInfo:
        """The viewable window whose title contains ``title`` (exact match
        preferred, then the largest); WindowNotFound lists the titles seen."""
        from Xlib import X
        from Xlib.error import XError

        matches, seen = [], []
        for window in self._walk(self.root):
            name = self.title(window)
            if not name:
                continue
            seen.append(name)
            if title not in name:
                continue
            try:
                if window.get_attributes().map_state != X.IsViewable:
                    continue
                geometry = self._geometry(window)
            except XError:
                continue
            matches.append((name == title, geometry.width * geometry.height, window, name, geometry))
        if not matches:
            shown = ", ".join(repr(s) for s in sorted(set(seen))[:20]) or "none"
            raise WindowNotFound(f"no viewable X window has a title containing {title!r}; titles seen: {shown}")
        matches.sort(key=lambda m: (m[0], m[1]), reverse=True)
        _, _, window, name, geometry = matches[0]
        return WindowInfo(window.id, name, geometry)

    def _geometry(self, window) -> WindowGeometry:
        geom = window.get_geometry()
        origin = self.root.translate_coords(window, 0, 0)  # window (0, 0) in root coordinates
        return WindowGeometry(origin.x, origin.y, geom.width, geom.height)

    def geometry(self, window_id: int) -> WindowGeometry:
        """Current geometry of ``window_id``: WindowHidden if unmapped or minimised (not viewable,
        or ``_NET_WM_STATE_HIDDEN`` set by the window manager), WindowGone if destroyed."""
        from Xlib import X, Xatom
        from Xlib.error import XError

        window = self.display.create_resource_object("window", window_id)
        try:
            if window.get_attributes().map_state != X.IsViewable:
                raise WindowHidden(f"X window {window_id:#x} is not viewable (unmapped or minimised)")
            state = window.get_full_property(self._net_wm_state, Xatom.ATOM)
            if state is not None and self._net_wm_state_hidden in state.value:
                raise WindowHidden(f"X window {window_id:#x} is minimised (_NET_WM_STATE_HIDDEN)")
            return self._geometry(window)
        except XError as exc:
            raise WindowGone(f"X window {window_id:#x} is gone: {exc}") from exc

    def focus(self, window_id: int) -> None:
        """Give ``window_id`` the keyboard focus (so XTest keys reach it)."""
        from Xlib import X

        window = self.display.create_resource_object("window", window_id)
        window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self.display.sync()

    def has_focus(self, window_id: int) -> bool:
        """Whether keyboard input goes to ``window_id``: the focus is the window,
        one of its children, or its window-manager frame (an ancestor)."""
        from Xlib import X
        from Xlib.error import XError

        focus = self.display.get_input_focus().focus
        if isinstance(focus, int):  # X.NONE / X.PointerRoot
            if focus != X.PointerRoot:
                return False
            focus = self.display.screen().root.query_pointer().child
            if not focus:
                return False
        try:
            node = self.display.create_resource_object("window", window_id)
            ancestors = set()
            while node.id != self.root.id:  # the window and its frames up to the root
                ancestors.add(node.id)
                node = node.query_tree().parent
            node = focus
            while node and node.id != self.root.id:  # the focus and its parents
                if node.id in ancestors or node.id == window_id:
                    return True
                node = node.query_tree().parent
        except XError:
            return False
        return False

    def close(self) -> None:
        self.display.close()


class Win32WindowLocator:
    """Window lookup through user32 (Windows only; untested on this project's Linux CI)."""

    def __init__(self, display_name: str | None = None) -> None:
        import ctypes
        from ctypes import wintypes

        self._ctypes, self._wintypes = ctypes, wintypes
        self.user32 = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
        try:  # physical pixels, so window rectangles match what mss grabs under display scaling
            ctypes.WinDLL("shcore").SetProcessDpiAwareness(2)  # type: ignore[attr-defined]
        except (OSError, AttributeError):
            self.user32.SetProcessDPIAware()

    def find(self, title: str) -> WindowInfo:
        ctypes, wintypes = self._ctypes, self._wintypes
        found: list[tuple[int, str]] = []

        @ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)
        def callback(hwnd, _):
            length = self.user32.GetWindowTextLengthW(hwnd)
            if length and self.user32.IsWindowVisible(hwnd):
                buf = ctypes.create_unicode_buffer(length + 1)
                self.user32.GetWindowTextW(hwnd, buf, length + 1)
                if title in buf.value:
                    found.append((hwnd, buf.value))
            return True

        self.user32.EnumWindows(callback, 0)
        if not found:
            raise WindowNotFound(f"no visible window has a title containing {title!r}")
        found.sort(key=lambda f: f[1] == title, reverse=True)
        hwnd, name = found[0]
        return WindowInfo(hwnd, name, self.geometry(hwnd))

    def geometry(self, window_id: int) -> WindowGeometry:
        ctypes, wintypes = self._ctypes, self._wintypes
        if not self.user32.IsWindow(window_id):
            raise WindowGone(f"window {window_id:#x} is gone")
        if self.user32.IsIconic(window_id) or not self.user32.IsWindowVisible(window_id):
            raise WindowHidden(f"window {window_id:#x} is minimised or hidden")
        rect = wintypes.RECT()
        self.user32.GetClientRect(window_id, ctypes.byref(rect))
        origin = wintypes.POINT(0, 0)
        self.user32.ClientToScreen(window_id, ctypes.byref(origin))
        return WindowGeometry(origin.x, origin.y, rect.right - rect.left, rect.bottom - rect.top)

    def focus(self, window_id: int) -> None:
        self.user32.SetForegroundWindow(window_id)

    def has_focus(self, window_id: int) -> bool:
        return self.user32.GetForegroundWindow() == window_id

    def close(self) -> None:
        pass


def window_locator(display_name: str | None = None):
    """The platform's locator: Win32WindowLocator on Windows, else X11WindowLocator."""
    if sys.platform == "win32":
        return Win32WindowLocator(display_name)
    return X11WindowLocator(display_name)


def find_window(title: str, display_name: str | None = None) -> WindowInfo:
    """One-shot lookup of a window by title substring."""
    locator = window_locator(display_name)
    try:
        return locator.find(title)
    finally:
        locator.close()


class FocusCheck:
    """Callable: True while ``window_id`` has the keyboard focus (owns a connection; close it).

    Give it to ``SafetyGuard(focus_check=...)`` so keys never go to another
    window after the user switches away from the game."""

    def __init__(self, window_id: int, display_name: str | None = None) -> None:
        self.window_id = window_id
        self._locator = window_locator(display_name)

    def __call__(self) -> bool:
        return self._locator.has_focus(self.window_id)

    def close(self) -> None:
        self._locator.close()


def focus_window(window_id: int, display_name: str | None = None) -> None:
    """One-shot: give ``window_id`` the keyboard focus."""
    locator = window_locator(display_name)
    try:
        locator.focus(window_id)
    finally:
        locator.close()
