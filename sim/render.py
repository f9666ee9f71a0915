"""Pseudo-3D drawing of a World from the truck's cab, plus ground-truth boxes.

The ground is drawn OutRun-style but per scanline: every screen row below the
horizon is a fixed distance z ahead (flat road, fixed camera height), so each
frame only needs, per row, where the road's centreline is (interpolated from
the centreline projected into the camera) and which markings that row crosses;
the row is then a run-length list of colour bands, expanded with one
``np.repeat``. Sky and distant hills are row fills. Objects (vehicles, people,
signs, scenery) are flat-shaded boxes and shapes drawn with ``pygame.draw``
onto a Surface that shares memory with the numpy frame, far to near.

Objects are drawn by ``sim.sprites``. Frames are HxWx3 uint8 RGB. Boxes are float32 xyxy in frame pixels, clipped
to the frame. pygame is imported when a Renderer is built, never at import.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from .conditions import make_look
from .labels import CLASSES
from .sprites import DrawnExtent, SpritePainter, Shade
from .world import World

NEAR_CLIP_M = 1.5
#: id colour painted for unlabelled parts (sign poles) in the id mask
UNLABELLED_ID = 0xFFFFFF

# ground colour classes
_GRASS_A, _GRASS_B, _SHOULDER, _ASPHALT, _LINE, _ZEBRA = range(6)
_BASE_GROUND = np.array([(72, 132, 58), (62, 120, 52), (122, 120, 114), (86, 87, 92), (232, 232, 228),
                         (238, 238, 238)], dtype=np.float64)
_LIT_BY_HEADLIGHTS = np.array([0.22, 0.22, 0.6, 1.0, 1.0, 1.0])


def _ground_bands(with_zebra: bool) -> tuple[np.ndarray, np.ndarray]:
    """Static lateral band edges (m, ascending) and the class of each band for
    the 8 row variants (bit0 grass stripe, bit1 dash on, bit2 zebra). The
    zebra set has 26 more edges; it is used only while a crossing is in view."""
    edges = {-9.0, -7.15, -6.95, -3.6, -3.4, -0.22, -0.08, 0.08, 0.22, 3.4, 3.6, 6.95, 7.15, 9.0}
    if with_zebra:
        for i in range(13):
            a = -6.25 + i * 1.0
            edges.update((a, a + 0.5))
    u = np.array(sorted(edges))
    mids = np.concatenate([[-50.0], 0.5 * (u[1:] + u[:-1]), [50.0]])
    table = np.zeros((8, len(mids)), dtype=np.intp)
    for variant in range(8):
        grass = _GRASS_B if variant & 1 else _GRASS_A
        dash, zebra = bool(variant & 2), bool(variant & 4)
        for k, m in enumerate(mids):
            a = abs(m)
            if a > 9.0:
                c = grass
            elif a > 7.15:
                c = _SHOULDER
            elif a > 6.95:
                c = _LINE
            elif 3.4 < a < 3.6:
                c = _LINE if dash else _ASPHALT
            elif 0.08 < a < 0.22:
                c = _LINE
            else:
                c = _ASPHALT
                if zebra and ((m + 6.25) % 1.0) < 0.5 and a < 6.3:
                    c = _ZEBRA
            table[variant, k] = c
    return u, table


@dataclass(frozen=True)
class RenderResult:
    """One drawn frame and its ground truth.

    frame: HxWx3 uint8 RGB (the renderer's buffer: copy it to keep it).
    boxes: float32 (N, 4) xyxy, the whole-pixel edges of each object's drawn
    pixels (x1/y1 exclusive, inside the frame); labels: N names from CLASSES;
    uids: N object ids (stable over an episode); id_mask: (H, W) int32 of
    draw-order indices + 1 into ``drawn_uids`` (0 = ground/sky,
    UNLABELLED_ID = an unlabelled part such as a sign's pole), only when asked.
    """

    frame: np.ndarray
    boxes: np.ndarray
    labels: tuple[str, ...]
    uids: tuple[int, ...]
    id_mask: np.ndarray | None = None
    drawn_uids: tuple[int, ...] = ()


class Renderer(SpritePainter):
    """Draws a World at ``width`` x ``height`` for one (time of day, weather)."""

    def __init__(self, width: int, height: int, time_of_day: str, weather: str, fov_deg: float = 62.0,
                 camera_height_m: float = 2.6, draw_distance_m: float = 180.0, min_box_height_px: float = 4.0,
                 min_visible_fraction: float = 0.35):
        import pygame  # lazily: only a renderer needs it

        self._pygame = pygame
        self.draw = DrawnExtent(pygame.draw)
        self.width, self.height = int(width), int(height)
        self.look = make_look(time_of_day, weather)
        self.cam_h = float(camera_height_m)
        self.draw_distance_m = float(draw_distance_m)
        self.min_box_height_px = float(min_box_height_px)
        self.min_visible_fraction = float(min_visible_fraction)
        W, H = self.width, self.height
        self.f = (W / 2) / math.tan(math.radians(fov_deg) / 2)
        self.cx = W / 2
        self.horizon = int(round(0.42 * H))
        self.cy = float(self.horizon)
        # one spare byte at the end lets the ground be written as 4-byte words at a
        # 3-byte stride (each word's 4th byte is overwritten by the next pixel's red);
        # measured ~3x faster than copying 3-byte items. Checked once below.
        self._buf = np.zeros(H * W * 3 + 1, dtype=np.uint8)
        self.frame = self._buf[:-1].reshape(H, W, 3)
        self.surface = pygame.image.frombuffer(self.frame, (W, H), "RGB")
        # ground rows
        rows = np.arange(self.horizon, H)
        self._z = self.f * self.cam_h / (rows + 0.5 - self.cy)
        self._inv_z = 1.0 / self._z
        self._rows_n = len(rows)
        self._row_ar = np.arange(len(rows))
        self._px_per_m = self.f * self._inv_z
        self._row_half_depth = 0.5 * self._z ** 2 / (self.f * self.cam_h)  # metres of road per row / 2
        # per band set: edges (m), and colour words per (row, variant, band)
        self._band_sets = []
        row_palette = self._make_row_palette()  # (rows, classes) uint32
        for zebra in (False, True):
            u, table = _ground_bands(zebra)
            words = row_palette[:, table]  # (rows, 8 variants, bands)
            ends = np.zeros((len(rows), len(u) + 2), dtype=np.intp)
            ends[:, -1] = W
            self._band_sets.append((u, np.ascontiguousarray(words), ends, np.empty((len(rows), len(u)))))
        self._sky = self._make_sky()
        self._hill_profile = self._make_hills()
        self._hill_rows = max(1, int(0.09 * H))
        step = max(1, W // 40)
        self._hill_cols = list(range(0, W + step, step))
        self._hill_col_angle = np.arctan((np.array(self._hill_cols) - self.cx) / self.f)
        self._rain_n = max(8, int(45 * W * H / (320 * 240))) if self.look.rain else 0
        streak = max(3, int(0.06 * H))  # pixels per streak, slanted 1 px left every 4 rows
        self._rain_offsets = np.array([r * W - r // 4 for r in range(streak)], dtype=np.intp)
        self._rain_colour = np.array((150, 155, 165) if self.look.time_of_day != "night" else (70, 72, 80), np.uint8)
        self._ground_words = np.ndarray(shape=((H - self.horizon) * W,), dtype=np.uint32, buffer=self._buf,
                                        offset=self.horizon * W * 3, strides=(3,))
        self._check_strided_write()
        self._shades: dict = {}
        self._statics_of, self._statics_n, self._statics_xy = None, -1, None

    def _check_strided_write(self) -> None:
        """Verify the overlapping 3-byte-stride word write gives exact RGB pixels."""
        n = self._ground_words.shape[0]
        words = (np.arange(n, dtype=np.uint32) * 2654435761) & 0x00FFFFFF
        self._ground_words[:] = words
        got = self.frame[self.horizon:].reshape(-1, 3)
        want = words.view(np.uint8).reshape(-1, 4)[:, :3]
        if not np.array_equal(got, want):
            raise RuntimeError("sim.render: strided ground write is not exact with this numpy; please report")
    # ------------------------------------------------------------ static layers
    def _make_row_palette(self) -> np.ndarray:
        look = self.look
        z = self._z[:, None, None]
        base = _BASE_GROUND[None, :, :]
        light = np.full(len(self._z), look.ambient)
        if look.headlight_range_m > 0:
            head = 0.85 * np.clip(1.0 - (self._z - 6.0) / look.headlight_range_m, 0.0, 1.0)
            light = np.minimum(1.0, look.ambient + head[:, None] * _LIT_BY_HEADLIGHTS[None, :])
        else:
            light = np.repeat(light[:, None], len(_BASE_GROUND), axis=1)
        fogf = 1.0 - np.exp(-3.0 * z / look.visibility_m)
        col = base * light[:, :, None] * np.array(look.tint)[None, None, :]
        col = col * (1 - fogf) + np.array(look.fog)[None, None, :] * fogf
        pal = np.clip(col, 0, 255).astype(np.uint32)
        # little-endian words whose first three bytes are R, G, B
        return pal[..., 0] | (pal[..., 1] << 8) | (pal[..., 2] << 16)

    def _make_sky(self) -> np.ndarray:
        H, W = self.horizon, self.width
        t = (np.arange(H) / max(1, H - 1))[:, None] ** 1.4
        top, hor = np.array(self.look.sky_top, float), np.array(self.look.sky_horizon, float)
        rowcol = top * (1 - t) + hor * t
        sky = np.repeat(rowcol[:, None, :], W, axis=1)
        if self.look.time_of_day == "night" and self.look.weather == "clear":
            rng = np.random.default_rng(7)
            n = W * H // 150
            ys, xs = rng.integers(0, max(1, int(H * 0.8)), n), rng.integers(0, W, n)
            sky[ys, xs] = rng.uniform(120, 230, (n, 1))
        return np.clip(sky, 0, 255).astype(np.uint8)

    def _make_hills(self) -> np.ndarray:
        """Height of the distant skyline (fraction of the hill band) per 0.1 degree of heading."""
        a = np.linspace(0, 2 * np.pi, 3600, endpoint=False)
        h = 0.45 + 0.25 * np.sin(3 * a + 1.0) + 0.15 * np.sin(7 * a + 2.0) + 0.1 * np.sin(17 * a)
        return np.clip(h, 0.05, 1.0)

    # ------------------------------------------------------------ camera
    def _camera(self, world: World) -> None:
        road = world.road
        t = world.truck
        s = t.eye_s
        x, y, th = road.pose_at(s)
        self._cam_s = s
        self._cam_d = t.d
        self._cam_x = x - math.sin(th) * t.d
        self._cam_y = y + math.cos(th) * t.d
        self._yaw = th + t.psi
        self._cyaw, self._syaw = math.cos(self._yaw), math.sin(self._yaw)
        if getattr(self, "_lists_of", None) is not road:  # Python lists: fast scalar reads in _project
            self._rx, self._ry, self._rth = road.x.tolist(), road.y.tolist(), road.theta.tolist()
            self._lists_of = road
        self._ds = road.ds
        self._nroad = len(road.x)

    def _project(self, s: float, d: float):
        """Frenet ground point -> (screen x, f / forward distance); None behind the near plane."""
        f = s / self._ds
        i = int(f)
        if i < 0:
            i, f = 0, 0.0
        elif i >= self._nroad - 1:
            i, f = self._nroad - 2, float(self._nroad - 1)
        a = f - i
        rx, ry, rth = self._rx, self._ry, self._rth
        th = rth[i] + (rth[i + 1] - rth[i]) * a
        px = rx[i] + (rx[i + 1] - rx[i]) * a - math.sin(th) * d - self._cam_x
        py = ry[i] + (ry[i + 1] - ry[i]) * a + math.cos(th) * d - self._cam_y
        fwd = px * self._cyaw + py * self._syaw
        if fwd < NEAR_CLIP_M:
            return None
        lat = -px * self._syaw + py * self._cyaw
        inv = self.f / fwd
        return self.cx + lat * inv, inv

    # ------------------------------------------------------------ ground and sky
    def _draw_ground(self, world: World) -> None:
        road = world.road
        # (clamped so that stepping on past the route's end never empties the window)
        i0 = min(max(0, int(self._cam_s / road.ds) - 1), len(road.s) - 2)
        i1 = min(len(road.s), i0 + int(self.draw_distance_m * 1.6 / road.ds) + 3)
        rel = (road.xy[i0:i1] - complex(self._cam_x, self._cam_y)) * complex(self._cyaw, -self._syaw)
        fwd, lat = rel.real, rel.imag  # camera frame: forward, right
        threl = road.theta[i0:i1] - self._yaw
        sw = road.s[i0:i1]
        fwd = np.maximum.accumulate(fwd)
        z = self._z
        lat_c = np.interp(z, fwd, lat)
        s_row = np.interp(z, fwd, sw)
        cos_row = np.maximum(np.cos(np.interp(z, fwd, threl)), 0.3)
        cr = road.crossings
        zebra_rows = None
        if cr.size:
            j = np.searchsorted(cr, [self._cam_s - 10, self._cam_s + self.draw_distance_m * 1.6])
            for c in cr[j[0]:j[1]]:
                near = np.abs(s_row - c) < 2.0 + self._row_half_depth  # a far row spans metres
                zebra_rows = near if zebra_rows is None else zebra_rows | near
        u, words, ends, tmp = self._band_sets[zebra_rows is not None]
        # band edges in pixels, rounded: x = cx + px_per_m * (lat_c + u / cos)
        np.divide(u[None, :], cos_row[:, None], out=tmp)
        tmp += lat_c[:, None]
        tmp *= self._px_per_m[:, None]
        tmp += self.cx + 0.5
        np.clip(tmp, 0, self.width, out=tmp)
        ends[:, 1:-1] = tmp  # truncation == rounding for values >= 0
        lens = ends[:, 1:] - ends[:, :-1]
        variant = (np.floor(s_row * (1 / 7.0)).astype(np.intp) & 1) + 2 * (np.mod(s_row, 12.0) < 4.5)
        if zebra_rows is not None:
            variant += 4 * zebra_rows
        cols = words[self._row_ar, variant]
        self._ground_words[:] = np.repeat(cols.ravel(), lens.ravel())

    def _draw_sky(self) -> None:
        hz = self.horizon
        self.frame[:hz] = self._sky
        band = self._hill_rows
        if band <= 0 or hz <= band:
            return
        ang = (self._yaw + self._hill_col_angle) % (2 * np.pi)
        h = self._hill_profile[(ang * (3600 / (2 * np.pi))).astype(np.intp) % 3600] * band
        pts = [(0, hz), *zip(self._hill_cols, (hz - h).tolist()), (self._hill_cols[-1], hz)]
        self.draw.polygon(self.surface, self.look.hills, pts)

    # ------------------------------------------------------------ main entry
    def render(self, world: World, rng: np.random.Generator | None = None, id_mask: bool = False) -> RenderResult:
        """Draw ``world``; ``rng`` drives rain streaks (deterministic per seed).
        With ``id_mask`` also draw every object in a flat id colour into a mask."""
        self._camera(world)
        self._draw_sky()
        self._draw_ground(world)
        items = self._collect(world)
        items.sort(key=lambda it: -it[0])
        drawn = []  # (bbox, label or None, uid)
        for depth, kind, obj, a, b in items:
            sh = self._shade_for(kind, obj, depth, a)
            bbox = self._draw_item(self.surface, kind, obj, a, b, sh, None)
            if bbox is not None:
                drawn.append((bbox, self._label_of(kind, obj), obj.uid, sh.visibility))
        mask = None
        if id_mask:
            mask_rgb = np.zeros((self.height, self.width, 3), dtype=np.uint8)
            msurf = self._pygame.image.frombuffer(mask_rgb, (self.width, self.height), "RGB")
            for n, (depth, kind, obj, a, b) in enumerate(items):
                flat = ((n + 1) & 255, ((n + 1) >> 8) & 255, ((n + 1) >> 16) & 255)
                sh = Shade(self.look, 1.0, 0.0, flat)
                sh.visibility = 1.0
                self._draw_item(msurf, kind, obj, a, b, sh, (255, 255, 255))
            mask = (mask_rgb[..., 0].astype(np.int32) | (mask_rgb[..., 1].astype(np.int32) << 8)
                    | (mask_rgb[..., 2].astype(np.int32) << 16))
        if self._rain_n and rng is not None:
            self._draw_rain(rng)
        boxes, labels, uids = self._ground_truth(drawn)
        drawn_uids = tuple(it[2].uid for it in items) if id_mask else ()
        return RenderResult(self.frame, boxes, labels, uids, mask, drawn_uids)

    @staticmethod
    def _label_of(kind: str, obj) -> str | None:
        if kind == "vehicle":
            return obj.kind
        if kind == "person":
            return "person"
        if kind == "static" and obj.kind == "sign":
            return "sign"
        return None

    def _collect(self, world: World) -> list:
        """(depth m, kind, object, near s, far s) for everything in view."""
        s0 = self._cam_s
        s_far = s0 + self.draw_distance_m
        near_min = s0 + NEAR_CLIP_M + 0.5
        items = []
        self._collect_statics(world, s0 + NEAR_CLIP_M, s_far, near_min, items)
        for v in world.vehicles:
            near, far = v.s - v.length / 2, v.s + v.length / 2
            if far < near_min or near > s_far:
                continue
            items.append((max(near, near_min) - s0, "vehicle", v, max(near, near_min), far))
        for p in world.pedestrians:
            if near_min < p.s < s_far:
                items.append((p.s - s0, "person", p, p.s, p.s))
        return items

    def _collect_statics(self, world: World, s_lo: float, s_hi: float, near_min: float, items: list) -> None:
        """Roadside objects in view, projected in one batch; those wholly off
        screen are skipped. Non-building items carry their projected foot
        (screen x, f / forward) in place of the near s."""
        side = world.roadside
        objs = side.objects
        if self._statics_of is not side or self._statics_n != len(objs):
            s = np.array([o.s for o in objs], dtype=np.float64)
            d = np.array([o.d for o in objs], dtype=np.float64)
            x, y = world.road.to_world(s, d)
            self._statics_xy = x + 1j * y
            self._statics_of, self._statics_n = side, len(objs)
        i0, i1 = bisect.bisect_left(side.s, s_lo), bisect.bisect_right(side.s, s_hi)
        if i1 <= i0:
            return
        rel = (self._statics_xy[i0:i1] - complex(self._cam_x, self._cam_y)) * complex(self._cyaw, -self._syaw)
        fwd = rel.real
        inv = self.f / np.maximum(fwd, 1e-3)
        sx = self.cx + rel.imag * inv
        # generous margin: the widest scenery (a building) is < 20 m
        ok = (fwd > NEAR_CLIP_M) & (np.abs(sx - self.cx) < self.cx + 10.0 * inv + 4.0)
        s0 = self._cam_s
        sx_l, inv_l = sx.tolist(), inv.tolist()
        for k in np.flatnonzero(ok).tolist():
            o = objs[i0 + k]
            if o.kind == "building":
                half = o.width_m / 2
                items.append((o.s - s0, "static", o, max(o.s - half, near_min), o.s + half))
            else:
                items.append((o.s - s0, "static", o, (sx_l[k], inv_l[k]), None))

    def _shade_for(self, kind: str, obj, depth: float, near_s: float) -> Shade:
        """Shading for an object ``depth`` m ahead; cached per 2 m of depth and
        light level, so its colour cache is shared across objects and frames."""
        look = self.look
        lateral = obj.d - self._cam_d
        light = look.light_level(depth, lateral)
        if kind == "static" and obj.kind == "sign" and look.headlight_range_m > 0:
            light = min(1.0, light * 1.6)  # retroreflective plates
        # how well a detector could see it: lamps make vehicles visible in the dark
        emissive = kind == "vehicle" and look.lights_on
        key = (int(depth * 0.5), int(light * 40), emissive)
        sh = self._shades.get(key)
        if sh is None:
            if len(self._shades) > 4096:
                self._shades.clear()
            fogf = look.fog_fraction(key[0] * 2.0 + 1.0)
            sh = Shade(look, key[1] / 40.0, fogf)
            sh.visibility = (1.0 - fogf) * (1.0 if emissive else min(1.0, (key[1] / 40.0) / 0.45))
            self._shades[key] = sh
        return sh

    def _draw_rain(self, rng: np.random.Generator) -> None:
        """Rain streaks: short slanted lines at random places (from ``rng``),
        painted as precomputed pixel offsets in one indexed write."""
        W, H = self.width, self.height
        n = self._rain_n
        starts = rng.integers(0, W * H, n)
        idx = starts[:, None] + self._rain_offsets[None, :]
        idx = idx[(idx < W * H)]
        self.frame.reshape(-1, 3)[idx] = self._rain_colour

    # ------------------------------------------------------------ ground truth
    def _ground_truth(self, drawn) -> tuple[np.ndarray, tuple[str, ...], tuple[int, ...]]:
        """Clip boxes, drop tiny, invisible (fog/dark) and mostly hidden ones.

        Hidden share: the part of a labelled box covered by the boxes of
        objects drawn after it (nearer), measured on a small boolean grid.
        """
        W, H = self.width, self.height
        boxes, labels, uids = [], [], []
        min_h = self.min_box_height_px
        for i, ((x0, y0, x1, y1), label, uid, vis) in enumerate(drawn):
            if label is None or vis < 0.3:
                continue
            x0, y0 = max(0.0, min(W, x0)), max(0.0, min(H, y0))
            x1, y1 = max(0.0, min(W, x1)), max(0.0, min(H, y1))
            if x1 - x0 < 1.0 or y1 - y0 < min_h:
                continue
            grid = None
            for (ox0, oy0, ox1, oy1), *_rest in drawn[i + 1:]:
                if ox0 >= x1 or ox1 <= x0 or oy0 >= y1 or oy1 <= y0:
                    continue
                if grid is None:
                    ix0, iy0 = int(x0), int(y0)
                    grid = np.ones((int(math.ceil(y1)) - iy0, int(math.ceil(x1)) - ix0), dtype=bool)
                grid[max(0, int(oy0) - iy0):max(0, int(math.ceil(oy1)) - iy0),
                     max(0, int(ox0) - ix0):max(0, int(math.ceil(ox1)) - ix0)] = False
            if grid is not None and grid.mean() < self.min_visible_fraction:
                continue
            boxes.append((x0, y0, x1, y1))
            labels.append(label)
            uids.append(uid)
        arr = np.array(boxes, dtype=np.float32).reshape(-1, 4)
        return arr, tuple(labels), tuple(uids)
