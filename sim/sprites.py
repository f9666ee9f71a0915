"""Flat-shaded pseudo-3D sprites: vehicles (boxes with a lit face, flank and
roof), people, signs and roadside scenery, drawn with ``pygame.draw``.

``SpritePainter`` is mixed into ``sim.render.Renderer``; it uses the
renderer's camera: ``_project(s, d) -> (screen x, f / forward) | None``,
``cy`` (horizon row), ``cam_h`` (eye height, m), ``_cam_d`` (the camera's d),
``width``, ``look`` and ``draw`` (a ``DrawnExtent`` around pygame.draw).
``_draw_item`` returns the box of the pixels the object's draw calls changed,
(x0, y0, x1, y1) in whole pixels, x1/y1 exclusive, clipped to the surface, or
None when it changed none. pygame truncates float rectangles to whole pixels,
so a box computed from the projection can miss a 1-2 px wide walker by a
pixel (IoU < 0.5 with what is on screen); the box of the changed pixels is
what a detector can see. (The ``_draw_*`` methods still return their projected
box; only whether it is None is used.) The same code draws the id mask
(``Shade`` with a flat colour).
"""
from __future__ import annotations

import math

from .actors import Pedestrian, Vehicle
from .conditions import Look


class Shade:
    """Turns an object's base colours into drawn colours: light level, tint and
    fog for normal drawing; one flat id colour when drawing the id mask."""

    __slots__ = ("kr", "kg", "kb", "ff", "fr", "fg", "fb", "flat", "visibility", "cache")

    def __init__(self, look: Look, light: float, fog_fraction: float, flat=None):
        g = 1.0 - fog_fraction
        self.kr, self.kg, self.kb = light * look.tint[0] * g, light * look.tint[1] * g, light * look.tint[2] * g
        self.ff = fog_fraction
        self.fr, self.fg, self.fb = (c * fog_fraction for c in look.fog)
        self.flat = flat
        self.visibility = 1.0
        self.cache: dict = {}

    def __call__(self, c, k: float = 1.0):
        if self.flat is not None:
            return self.flat
        key = (c, k)
        got = self.cache.get(key)
        if got is None:
            got = self.cache[key] = self._compute(c, k)
        return got

    def _compute(self, c, k: float):
        return (min(255, int(c[0] * self.kr * k + self.fr)), min(255, int(c[1] * self.kg * k + self.fg)),
                min(255, int(c[2] * self.kb * k + self.fb)))

    def lamp(self, c):
        """Emissive colour (lamps, lit windows): not darkened, fogged less."""
        if self.flat is not None:
            return self.flat
        f = self.ff * 0.6
        return (int(c[0] * (1 - f) + self.fr * 0.6), int(c[1] * (1 - f) + self.fg * 0.6),
                int(c[2] * (1 - f) + self.fb * 0.6))


class DrawnExtent:
    """``pygame.draw`` that remembers the union of the rectangles its calls changed.

    pygame.draw's functions return the bounding rect of the pixels they changed,
    clipped to the surface (zero size when none). ``begin`` forgets what was
    drawn; ``box`` is the union since then as (x0, y0, x1, y1) whole pixels,
    x1/y1 exclusive, or None.
    """

    __slots__ = ("_draw", "_x0", "_y0", "_x1", "_y1")

    def __init__(self, draw):
        self._draw = draw
        self.begin()

    def begin(self) -> None:
        self._x0 = self._y0 = 1 << 30
        self._x1 = self._y1 = -(1 << 30)

    def box(self) -> tuple[float, float, float, float] | None:
        if self._x1 <= self._x0 or self._y1 <= self._y0:
            return None
        return (float(self._x0), float(self._y0), float(self._x1), float(self._y1))

    def _note(self, changed):
        if changed.width > 0 and changed.height > 0:
            self._x0, self._y0 = min(self._x0, changed.x), min(self._y0, changed.y)
            self._x1, self._y1 = max(self._x1, changed.right), max(self._y1, changed.bottom)
        return changed

    def rect(self, surf, colour, rect, *args):
        return self._note(self._draw.rect(surf, colour, rect, *args))

    def polygon(self, surf, colour, points, *args):
        return self._note(self._draw.polygon(surf, colour, points, *args))

    def ellipse(self, surf, colour, rect, *args):
        return self._note(self._draw.ellipse(surf, colour, rect, *args))

    def line(self, surf, colour, start, end, *args):
        return self._note(self._draw.line(surf, colour, start, end, *args))


class SpritePainter:
    """Drawing of every kind of object (see the module docstring for what it needs)."""

    def _draw_item(self, surf, kind, obj, near_s, far_s, sh, pole_colour):
        """Draw one object; the box of the pixels it changed (module docstring) or None."""
        self.draw.begin()
        if kind == "vehicle":
            drew = self._draw_vehicle(surf, obj, near_s, far_s, sh)
        elif kind == "person":
            drew = self._draw_person(surf, obj, sh)
        else:
            drew = self._draw_static(surf, obj, near_s, far_s, sh, pole_colour)
        return None if drew is None else self.draw.box()

    # ------------------------------------------------------------ objects
    def _draw_vehicle(self, surf, v: Vehicle, near_s: float, far_s: float, sh: Shade):
        dl, dr = v.d - v.width / 2, v.d + v.width / 2
        nl, nr = self._project(near_s, dl), self._project(near_s, dr)
        if nl is None or nr is None:
            return None
        inv = 0.5 * (nl[1] + nr[1])
        x0, x1 = nl[0], nr[0]
        yb = self.cy + self.cam_h * inv
        yt = self.cy + (self.cam_h - v.height) * inv
        if x1 < -50 or x0 > self.width + 50 or yb - yt < 0.6:
            return None
        draw = self.draw
        body = v.color2 if (v.kind == "truck" and v.direction > 0) else v.color
        side_col = v.color2 if v.kind == "truck" else v.color
        bx0, by0, bx1, by1 = x0, yt, x1, yb
        fl = fr = None
        if far_s - near_s > 0.5 and (yb - yt) > 3:
            fl, fr = self._project(far_s, dl), self._project(far_s, dr)
        if fl is not None and fr is not None:
            inv_f = 0.5 * (fl[1] + fr[1])
            ybf = self.cy + self.cam_h * inv_f
            ytf = self.cy + (self.cam_h - v.height) * inv_f
            if self._cam_d > dr + 0.05:  # we see its right flank
                pts = ((x1, yb), (x1, yt), (fr[0], ytf), (fr[0], ybf))
                draw.polygon(surf, sh(side_col, 0.72), pts)
                bx1 = max(bx1, fr[0])
            elif self._cam_d < dl - 0.05:  # its left flank
                pts = ((x0, yb), (x0, yt), (fl[0], ytf), (fl[0], ybf))
                draw.polygon(surf, sh(side_col, 0.72), pts)
                bx0 = min(bx0, fl[0])
            if v.height < self.cam_h - 0.2:  # roof seen from the cab
                pts = ((x0, yt), (x1, yt), (fr[0], ytf), (fl[0], ytf))
                draw.polygon(surf, sh(side_col, 0.88), pts)
                by0 = min(by0, ytf)
                bx0, bx1 = min(bx0, fl[0]), max(bx1, fr[0])
        w, h = x1 - x0, yb - yt
        if h < 7 or w < 5:
            draw.rect(surf, sh(body), (x0, yt, max(1.0, w), max(1.0, h)))
            if self.look.lights_on and v.direction > 0:
                draw.rect(surf, sh.lamp((230, 30, 30)), (x0, yt + 0.45 * h, max(1.0, 0.25 * w), max(1.0, 0.2 * h)))
                draw.rect(surf, sh.lamp((230, 30, 30)), (x1 - max(1.0, 0.25 * w), yt + 0.45 * h, max(1.0, 0.25 * w), max(1.0, 0.2 * h)))
            elif self.look.lights_on:
                draw.rect(surf, sh.lamp((255, 250, 210)), (x0, yt + 0.6 * h, max(1.0, w), max(1.0, 0.2 * h)))
            return (bx0, by0, bx1, by1)
        dark = (25, 25, 28)
        glass = (55, 70, 90)
        lights = self.look.lights_on
        if v.kind == "car":
            draw.rect(surf, sh(body), (x0 + 0.1 * w, yt, 0.8 * w, 0.46 * h))
            draw.rect(surf, sh(glass), (x0 + 0.16 * w, yt + 0.07 * h, 0.68 * w, 0.32 * h))
            draw.rect(surf, sh(body), (x0, yt + 0.42 * h, w, 0.43 * h))
            draw.rect(surf, sh(dark), (x0 + 0.04 * w, yt + 0.84 * h, 0.2 * w, 0.16 * h))
            draw.rect(surf, sh(dark), (x0 + 0.76 * w, yt + 0.84 * h, 0.2 * w, 0.16 * h))
            draw.rect(surf, sh(v.color2, 0.7), (x0, yt + 0.74 * h, w, 0.1 * h))
        else:
            if v.direction > 0:
                if v.style == 1:  # tanker: round tank above a chassis
                    draw.ellipse(surf, sh(body), (x0, yt, w, 0.8 * h))
                else:
                    draw.rect(surf, sh(body), (x0, yt, w, 0.82 * h))
                    draw.line(surf, sh(body, 0.6), (x0 + 0.5 * w, yt + 0.05 * h), (x0 + 0.5 * w, yt + 0.78 * h))
                    if v.style == 2:
                        draw.rect(surf, sh(v.color, 0.9), (x0, yt + 0.1 * h, w, 0.12 * h))
            else:  # oncoming cab
                draw.rect(surf, sh(body), (x0, yt, w, 0.86 * h))
                draw.rect(surf, sh(glass), (x0 + 0.08 * w, yt + 0.12 * h, 0.84 * w, 0.28 * h))
                draw.rect(surf, sh(dark), (x0 + 0.25 * w, yt + 0.5 * h, 0.5 * w, 0.22 * h))
            draw.rect(surf, sh(dark), (x0 + 0.02 * w, yt + 0.82 * h, w * 0.96, 0.07 * h))
            draw.rect(surf, sh(dark), (x0 + 0.05 * w, yt + 0.89 * h, 0.25 * w, 0.11 * h))
            draw.rect(surf, sh(dark), (x0 + 0.7 * w, yt + 0.89 * h, 0.25 * w, 0.11 * h))
        if v.direction > 0:
            on = v.braking or lights
            red = (255, 40, 30) if v.braking else ((210, 30, 25) if lights else (150, 30, 30))
            col = sh.lamp(red) if on else sh(red)
            ly = yt + (0.5 if v.kind == "car" else 0.74) * h
            draw.rect(surf, col, (x0 + 0.02 * w, ly, 0.17 * w, 0.09 * h + 1))
            draw.rect(surf, col, (x0 + 0.81 * w, ly, 0.17 * w, 0.09 * h + 1))
        else:
            white = (255, 250, 215)
            col = sh.lamp(white) if lights else sh((210, 210, 200))
            ly = yt + (0.52 if v.kind == "car" else 0.6) * h
            draw.rect(surf, col, (x0 + 0.04 * w, ly, 0.18 * w, 0.1 * h + 1))
            draw.rect(surf, col, (x0 + 0.78 * w, ly, 0.18 * w, 0.1 * h + 1))
        return (bx0, by0, bx1, by1)

    def _draw_person(self, surf, p: Pedestrian, sh: Shade):
        pr = self._project(p.s, p.d)
        if pr is None:
            return None
        x, inv = pr
        yb = self.cy + self.cam_h * inv
        h = p.height * inv
        if h < 1.0:
            return None
        w = 0.5 * inv
        yt = yb - h
        x0 = x - w / 2
        draw = self.draw
        if h < 8:
            draw.rect(surf, sh(p.shirt), (x0, yt, max(1.0, w), max(1.0, 0.55 * h)))
            draw.rect(surf, sh(p.pants), (x0, yt + 0.55 * h, max(1.0, w), max(1.0, 0.45 * h)))
            return (x0, yt, x0 + max(1.0, w), yb)
        stride = 0.18 * math.sin(p.phase) * w if (p.v_lat or p.v_long) else 0.0
        lw = max(1.0, 0.3 * w)  # pygame truncates widths: a leg under 1 px would not be drawn at all
        draw.rect(surf, sh(p.pants), (x0 + 0.16 * w + stride, yt + 0.53 * h, lw, 0.47 * h))
        draw.rect(surf, sh(p.pants), (x0 + 0.54 * w - stride, yt + 0.53 * h, lw, 0.47 * h))
        draw.rect(surf, sh(p.shirt), (x0, yt + 0.17 * h, w, 0.4 * h))
        draw.ellipse(surf, sh(p.skin), (x0 + 0.24 * w, yt, 0.52 * w, 0.16 * h))
        draw.rect(surf, sh((40, 30, 25)), (x0 + 0.24 * w, yt, 0.52 * w, 0.05 * h))
        return (x0, yt, x0 + w, yb)

    def _draw_static(self, surf, o, near_s, far_s, sh: Shade, pole_colour):
        """A roadside object. Buildings get (near s, far s); everything else
        its projected foot (screen x, f / forward distance) as ``near_s``."""
        kind = o.kind
        draw = self.draw
        if kind == "building":
            half_depth = 4.0  # buildings are 8 m deep, their long side along the road
            dn, df = (o.d - half_depth, o.d + half_depth)
            nl, nr = self._project(near_s, dn), self._project(near_s, df)
            if nl is None or nr is None:
                return None
            inv = 0.5 * (nl[1] + nr[1])
            yb = self.cy + self.cam_h * inv
            yt = self.cy + (self.cam_h - o.height_m) * inv
            x0, x1 = nl[0], nr[0]
            fa = self._project(far_s, dn if o.d > 0 else df)
            if fa is not None:
                inv_f = fa[1]
                edge_x = x0 if o.d > 0 else x1
                pts = ((edge_x, yb), (edge_x, yt), (fa[0], self.cy + (self.cam_h - o.height_m) * inv_f),
                       (fa[0], self.cy + self.cam_h * inv_f))
                draw.polygon(surf, sh(o.color, 0.78), pts)
            w, h = x1 - x0, yb - yt
            draw.rect(surf, sh(o.color), (x0, yt, w, h))
            draw.rect(surf, sh(o.color2), (x0, yt, w, 0.1 * h + 1))
            if h > 10:
                lit = self.look.time_of_day != "day"
                wcol = sh.lamp((255, 220, 140)) if lit else sh(o.color3)
                for fy in (0.3, 0.62):
                    draw.rect(surf, wcol, (x0 + 0.15 * w, yt + fy * h, 0.25 * w, 0.16 * h))
                    draw.rect(surf, wcol, (x0 + 0.6 * w, yt + fy * h, 0.25 * w, 0.16 * h))
            return (min(x0, x1), yt, max(x0, x1), yb)
        x, inv = near_s  # projected foot from _collect_statics
        yb = self.cy + self.cam_h * inv
        if x < -60 or x > self.width + 60:
            return None
        if kind == "sign":
            top = yb - (o.base_m + o.height_m) * inv
            bottom = yb - o.base_m * inv
            pw = o.width_m * inv
            ph = bottom - top
            if ph < 0.8:
                return None
            pole = (0.09 * inv) + 1
            pc = pole_colour if pole_colour is not None else sh(o.color3)
            if sh.flat is not None:
                pc = (255, 255, 255)
            draw.rect(surf, pc, (x - pole / 2, bottom - 1, pole, yb - bottom + 1))
            draw.begin()  # a sign's box is its plate's: forget the pole
            x0 = x - pw / 2
            rect = (x0, top, pw, ph)
            shape = o.shape
            face, rim = sh(o.color), sh(o.color2)
            if shape == "circle":
                draw.ellipse(surf, rim, rect)
                if ph > 6:
                    draw.ellipse(surf, face, (x0 + 0.15 * pw, top + 0.15 * ph, 0.7 * pw, 0.7 * ph))
            elif shape == "triangle":
                draw.polygon(surf, rim, ((x0, top + ph), (x0 + pw, top + ph), (x, top)))
                if ph > 6:
                    draw.polygon(surf, face, ((x0 + 0.2 * pw, top + 0.82 * ph), (x0 + 0.8 * pw, top + 0.82 * ph),
                                              (x, top + 0.3 * ph)))
            elif shape == "diamond":
                draw.polygon(surf, face, ((x, top), (x0 + pw, top + ph / 2), (x, top + ph), (x0, top + ph / 2)))
                if ph > 6:
                    draw.rect(surf, rim, (x - 0.08 * pw, top + 0.3 * ph, 0.16 * pw, 0.4 * ph))
            elif shape == "octagon":
                a, b = 0.3, 0.7
                draw.polygon(surf, face, ((x0 + a * pw, top), (x0 + b * pw, top), (x0 + pw, top + a * ph),
                                          (x0 + pw, top + b * ph), (x0 + b * pw, top + ph), (x0 + a * pw, top + ph),
                                          (x0, top + b * ph), (x0, top + a * ph)))
                if ph > 6:
                    draw.rect(surf, rim, (x0 + 0.2 * pw, top + 0.42 * ph, 0.6 * pw, 0.16 * ph))
            else:  # rect / square boards
                draw.rect(surf, face, rect)
                if ph > 6:
                    if shape == "square":
                        draw.polygon(surf, rim, ((x0 + 0.2 * pw, top + 0.8 * ph), (x0 + 0.8 * pw, top + 0.8 * ph),
                                                 (x, top + 0.2 * ph)))
                    else:
                        draw.rect(surf, rim, (x0 + 0.1 * pw, top + 0.3 * ph, 0.8 * pw, 0.12 * ph))
                        draw.rect(surf, rim, (x0 + 0.1 * pw, top + 0.6 * ph, 0.5 * pw, 0.12 * ph))
            return (x0, top, x0 + pw, bottom)
        h = o.height_m * inv
        w = o.width_m * inv
        yt = yb - h
        if h < 1.0:
            return None
        if h < 6:  # far away: one blob
            draw.ellipse(surf, sh(o.color), (x - w / 2, yt, max(1.0, w), h))
        elif kind == "tree":
            draw.rect(surf, sh(o.color2), (x - 0.06 * w, yb - 0.4 * h, 0.12 * w + 1, 0.4 * h))
            draw.ellipse(surf, sh(o.color), (x - w / 2, yt, w, 0.72 * h))
        elif kind == "pine":
            draw.rect(surf, sh(o.color2), (x - 0.05 * w, yb - 0.2 * h, 0.1 * w + 1, 0.2 * h))
            draw.polygon(surf, sh(o.color), ((x - w / 2, yb - 0.15 * h), (x + w / 2, yb - 0.15 * h), (x, yt)))
        elif kind == "bush":
            draw.ellipse(surf, sh(o.color), (x - w / 2, yt, w, h))
        elif kind == "pole":
            pw = max(1.0, 0.25 * inv)
            draw.rect(surf, sh(o.color), (x - pw / 2, yt, pw, h))
            draw.rect(surf, sh(o.color), (x - 0.8 * inv, yt + 0.06 * h, 1.6 * inv, max(1.0, 0.12 * inv)))
        elif kind == "lamp":
            pw = max(1.0, 0.18 * inv)
            draw.rect(surf, sh(o.color), (x - pw / 2, yt, pw, h))
            arm = -1.5 * inv if o.d > 0 else 1.5 * inv
            draw.rect(surf, sh(o.color), (min(x, x + arm), yt, abs(arm), max(1.0, 0.12 * inv)))
            lamp = sh.lamp(o.color2) if self.look.lights_on else sh((200, 200, 190))
            draw.rect(surf, lamp, (min(x + arm, x + arm * 0.7), yt, max(1.0, 0.5 * inv), max(1.0, 0.2 * inv)))
        return (x - w / 2, yt, x + w / 2, yb)
