"""``truckpilot label SESSION``: review and correct a session's labels in a pygame window.

Keys and mouse (also shown at the bottom of the window):

    Left / Right        previous / next frame          Home / End     first / last frame
    PageUp / PageDown   jump 5% of the frames          click / drag the slider: scrub
    drag on the image   draw a box (current class)     drag a box: move it; drag its corner: resize
    click a box / Tab   select a box                   Delete / Backspace: delete the selected box
    1..9                pick the class (and set it on the selected box)
    L / S / R           direction left / straight / right (provenance "human")
    Enter / C           confirm the frame's (model or sim) labels as checked by a person
    X                   soft-delete / restore the frame
    Ctrl+Z              undo (appends the inverse edit)     Ctrl+S  save (every edit is already on disk)
    U / M / A           filter: unlabelled only / model disagrees with the label / all frames
    Esc / Q             quit

Every edit is appended to the session's ``edits.jsonl`` at once (one checksummed,
fsynced line), so a crash or kill loses nothing and never corrupts the session.

``--draft DIRECTION_CKPT [DETECTOR_CKPT]`` fills frames that have no direction or no
box label with the model's prediction (provenance "model") as each frame is
shown, for the person to correct or confirm (Enter). The model's direction is
also what the "model disagrees" filter compares with.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

import numpy as np

from perception.boxes import clip_box_list
from training.sessions import FrameRecord, Session, SessionError
from training.sessions.edits import SessionEditor

log = logging.getLogger(__name__)

CLASS_COLOURS = [(255, 80, 80), (80, 160, 255), (255, 220, 0), (80, 230, 120), (230, 120, 255), (255, 150, 60),
                 (0, 220, 220), (200, 200, 200), (150, 110, 70)]
PANEL_H = 78
SLIDER_H = 16
HANDLE_PX = 7  # screen pixels around a corner that grab it for resizing
MIN_BOX_PX = 2.0  # frame pixels; smaller drags are clicks, not boxes

FILTERS = ("all", "unlabelled", "disagree")


@dataclass(frozen=True)
class Draft:
    """A model's guess for one frame: direction (or None) and detections (box xyxy frame pixels, class)."""

    direction: str | None
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]


class ModelDrafter:
    """Wraps ``perception.perceiver.Perceiver`` to draft labels in the session's schema."""

    def __init__(self, perceiver, directions, classes) -> None:
        self.perceiver = perceiver
        self.directions, self.classes = tuple(directions), tuple(classes)

    @classmethod
    def from_checkpoints(cls, direction_path, detector_path, session: Session) -> "ModelDrafter":
        from perception.perceiver import Perceiver

        perceiver = Perceiver.from_checkpoints(direction_path, detector_path)
        return cls(perceiver, session.manifest.directions, session.manifest.classes)

    def __call__(self, image: np.ndarray) -> Draft:
        perception = self.perceiver(image)
        direction = perception.direction if perception.direction in self.directions else None
        boxes, labels = [], []
        h, w = image.shape[:2]
        for det in perception.detections:
            if det.label not in self.classes:
                continue
            x1, y1, x2, y2 = (float(v) for v in det.box)
            x1, x2 = max(0.0, min(x1, w)), max(0.0, min(x2, w))
            y1, y2 = max(0.0, min(y1, h)), max(0.0, min(y2, h))
            if x2 > x1 and y2 > y1:
                boxes.append((x1, y1, x2, y2))
                labels.append(det.label)
        return Draft(direction, tuple(boxes), tuple(labels))


def needs_review(record: FrameRecord) -> bool:
    """Unlabelled for the filter: no direction or no box label, or labels that are only a model's draft."""
    return (record.direction is None or record.boxes_source is None
            or record.direction_source == "model" or record.boxes_source == "model")


class LabelTool:
    """The labelling window. ``run()`` is the event loop; ``process_events()`` handles what is queued
    (tests post real pygame events and call it). Frame coordinates = screen coordinates / ``scale``."""

    def __init__(self, session_path, *, drafter=None, scale: int = 2) -> None:
        import pygame

        self.pg = pygame
        self.editor = SessionEditor.open(session_path)
        self.session = self.editor.session
        self.manifest = self.session.manifest
        self.classes = self.manifest.classes
        self.drafter = drafter
        self.scale = scale
        self.model_direction: dict[int, str] = {}
        self._drafted: set[int] = set()
        self.filter = "all"
        self.view: list[int] = self.editor.indices
        self.pos = 0
        self.current_class = 0
        self.selected: int | None = None
        self.drag: dict | None = None
        self.status = ""
        self.running = True
        self._image_cache: tuple[int, np.ndarray] | None = None
        w, h = self.manifest.width * scale, self.manifest.height * scale
        self.image_size = (w, h)
        pygame.display.init()
        pygame.font.init()
        self.screen = pygame.display.set_mode((max(w, 640), h + PANEL_H))
        pygame.display.set_caption(f"TruckPilot label: {self.session.path}")
        self.font = pygame.font.Font(None, 18)
        if not self.view:
            self.status = "this session has no frames"
        self._on_frame_change()

    # ------------------------------------------------------------------ state

    @property
    def index(self) -> int | None:
        return self.view[self.pos] if self.view else None

    @property
    def record(self) -> FrameRecord | None:
        return None if self.index is None else self.editor.record(self.index)

    def goto(self, pos: int) -> None:
        if not self.view:
            return
        self.pos = max(0, min(len(self.view) - 1, pos))
        self._on_frame_change()

    def set_filter(self, name: str) -> None:
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}: one of {FILTERS}")
        current = self.index
        if name == "disagree" and self.drafter is not None:
            self._draft_all()
        self.filter = name
        view = []
        for i in self.editor.indices:
            r = self.editor.record(i)
            if name == "unlabelled" and not needs_review(r):
                continue
            if name == "disagree":
                model = self.model_direction.get(i, r.extra.get("model_direction"))
                if model is None or r.direction is None or model == r.direction:
                    continue
            view.append(i)
        self.view = view
        self.pos = view.index(current) if current in view else 0
        self.status = f"filter {name}: {len(view)} frames"
        self._on_frame_change()

    def _on_frame_change(self) -> None:
        self.selected = None
        self.drag = None
        if self.drafter is not None and self.index is not None:
            self._draft(self.index)

    def _draft(self, index: int) -> None:
        if index in self._drafted:
            return
        self._drafted.add(index)
        r = self.editor.record(index)
        draft = self.drafter(self.session.load_image(r))
        if draft.direction is not None:
            self.model_direction[index] = draft.direction
        if r.direction is None and draft.direction is not None:
            self.editor.set_direction(index, draft.direction, source="model", undoable=False)
        if r.boxes_source is None:
            self.editor.set_boxes(index, draft.boxes, draft.labels, source="model", undoable=False)

    def _draft_all(self) -> None:
        from tqdm import tqdm

        todo = [i for i in self.editor.indices if i not in self._drafted]
        for i in tqdm(todo, desc="model drafts", unit="frame", disable=not todo):
            self._draft(i)

    def image(self) -> np.ndarray:
        index = self.index
        if self._image_cache is None or self._image_cache[0] != index:
            self._image_cache = (index, self.session.load_image(self.editor.record(index)))
        return self._image_cache[1]

    # ------------------------------------------------------------------ edits

    def _boxes(self) -> tuple[list[list[float]], list[str]]:
        r = self.record
        return [list(b) for b in r.boxes], list(r.labels)

    def _save_boxes(self, boxes, labels) -> None:
        self.editor.set_boxes(self.index, boxes, labels, source="human")

    def set_direction(self, direction: str) -> None:
        if self.index is None:
            return
        self.editor.set_direction(self.index, direction, source="human")
        self.status = f"direction {direction}"

    def pick_class(self, number: int) -> None:
        if number >= len(self.classes):
            self.status = f"no class {number + 1}: classes are {', '.join(self.classes)}"
            return
        self.current_class = number
        if self.selected is not None:
            boxes, labels = self._boxes()
            labels[self.selected] = self.classes[number]
            self._save_boxes(boxes, labels)
        self.status = f"class {self.classes[number]}"

    def delete_selected_box(self) -> None:
        if self.selected is None:
            return
        boxes, labels = self._boxes()
        del boxes[self.selected], labels[self.selected]
        self._save_boxes(boxes, labels)
        self.selected = None

    def undo(self) -> None:
        index = self.editor.undo()
        if index is None:
            self.status = "nothing to undo"
            return
        if index in self.view:
            self.pos = self.view.index(index)
        self.selected = None
        self.status = f"undid an edit of frame {index}"

    def toggle_deleted(self) -> None:
        if self.index is None:
            return
        if self.record.deleted:
            self.editor.restore(self.index)
        else:
            self.editor.delete(self.index)

    # ------------------------------------------------------------------ events

    def process_events(self) -> None:
        for event in self.pg.event.get():
            self.handle(event)

    def handle(self, event) -> None:
        pg = self.pg
        try:
            if event.type == pg.QUIT:
                self.running = False
            elif event.type == pg.KEYDOWN:
                self._key(event)
            elif event.type == pg.MOUSEBUTTONDOWN and event.button == 1:
                self._mouse_down(event.pos)
            elif event.type == pg.MOUSEMOTION and self.drag is not None:
                self._mouse_move(event.pos)
            elif event.type == pg.MOUSEBUTTONUP and event.button == 1 and self.drag is not None:
                self._mouse_up(event.pos)
        except (ValueError, SessionError) as exc:  # an edit that would be invalid: say so, keep running
            self.status = f"not saved: {exc}"
            log.warning("%s", exc)

    def _key(self, event) -> None:
        pg = self.pg
        ctrl = bool(event.mod & pg.KMOD_CTRL)
        k = event.key
        step = max(1, len(self.view) // 20)
        if ctrl and k == pg.K_z:
            self.undo()
        elif ctrl and k == pg.K_s:
            self.status = "saved (every edit is written as it is made)"
        elif k in (pg.K_ESCAPE, pg.K_q):
            self.running = False
        elif k == pg.K_RIGHT:
            self.goto(self.pos + 1)
        elif k == pg.K_LEFT:
            self.goto(self.pos - 1)
        elif k == pg.K_PAGEDOWN:
            self.goto(self.pos + step)
        elif k == pg.K_PAGEUP:
            self.goto(self.pos - step)
        elif k == pg.K_HOME:
            self.goto(0)
        elif k == pg.K_END:
            self.goto(len(self.view) - 1)
        elif pg.K_1 <= k <= pg.K_9:
            self.pick_class(k - pg.K_1)
        elif k in (pg.K_DELETE, pg.K_BACKSPACE):
            self.delete_selected_box()
        elif k == pg.K_TAB and self.record is not None and self.record.boxes:
            self.selected = 0 if self.selected is None else (self.selected + 1) % len(self.record.boxes)
        elif k == pg.K_l:
            self.set_direction("left")
        elif k == pg.K_s:
            self.set_direction("straight")
        elif k == pg.K_r:
            self.set_direction("right")
        elif k in (pg.K_RETURN, pg.K_KP_ENTER, pg.K_c) and self.index is not None:
            self.editor.confirm(self.index)
            self.status = "labels confirmed"
        elif k == pg.K_x:
            self.toggle_deleted()
        elif k == pg.K_u:
            self.set_filter("unlabelled")
        elif k == pg.K_m:
            self.set_filter("disagree")
        elif k == pg.K_a:
            self.set_filter("all")

    def _to_frame(self, pos) -> tuple[float, float]:
        x = min(max(pos[0], 0), self.image_size[0]) / self.scale
        y = min(max(pos[1], 0), self.image_size[1]) / self.scale
        return x, y

    def _slider_rect(self):
        w = self.screen.get_width()
        return self.pg.Rect(8, self.image_size[1] + PANEL_H - SLIDER_H - 6, w - 16, SLIDER_H)

    def _mouse_down(self, pos) -> None:
        slider = self._slider_rect()
        if slider.collidepoint(pos):
            self.drag = {"mode": "scrub"}
            self._scrub(pos[0])
            return
        if self.index is None or not (pos[0] < self.image_size[0] and pos[1] < self.image_size[1]):
            return
        fx, fy = self._to_frame(pos)
        boxes, _ = self._boxes()
        grab = HANDLE_PX / self.scale
        order = ([self.selected] if self.selected is not None else []) + list(range(len(boxes)))
        for i in order:  # a corner of the selected box first, then of any box
            x1, y1, x2, y2 = boxes[i]
            for cx, cy, corner in ((x1, y1, (0, 1)), (x2, y1, (2, 1)), (x1, y2, (0, 3)), (x2, y2, (2, 3))):
                if abs(fx - cx) <= grab and abs(fy - cy) <= grab:
                    self.selected = i
                    self.drag = {"mode": "resize", "box": i, "corner": corner, "start": (fx, fy), "orig": boxes[i]}
                    return
        inside = [i for i, (x1, y1, x2, y2) in enumerate(boxes) if x1 <= fx <= x2 and y1 <= fy <= y2]
        if inside:
            i = min(inside, key=lambda j: (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1]))
            self.selected = i
            self.drag = {"mode": "move", "box": i, "start": (fx, fy), "orig": boxes[i]}
            return
        self.selected = None
        self.drag = {"mode": "draw", "start": (fx, fy), "now": (fx, fy)}

    def _scrub(self, x: int) -> None:
        slider = self._slider_rect()
        if self.view:
            frac = (x - slider.x) / max(1, slider.width)
            self.goto(int(round(frac * (len(self.view) - 1))))

    def _dragged_box(self, pos) -> list[float] | None:
        d = self.drag
        fx, fy = self._to_frame(pos)
        W, H = self.manifest.width, self.manifest.height
        if d["mode"] == "draw":
            (sx, sy) = d["start"]
            box = [min(sx, fx), min(sy, fy), max(sx, fx), max(sy, fy)]
        elif d["mode"] == "move":
            x1, y1, x2, y2 = d["orig"]
            dx = min(max(fx - d["start"][0], -x1), W - x2)
            dy = min(max(fy - d["start"][1], -y1), H - y2)
            box = [x1 + dx, y1 + dy, x2 + dx, y2 + dy]
        elif d["mode"] == "resize":
            box = list(d["orig"])
            ix, iy = d["corner"]
            box[ix], box[iy] = fx, fy
            box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
        else:
            return None
        box = clip_box_list([box], (H, W))[0]
        return [round(v, 1) for v in box]

    def _mouse_move(self, pos) -> None:
        if self.drag["mode"] == "scrub":
            self._scrub(pos[0])
        else:
            self.drag["now_box"] = self._dragged_box(pos)

    def _mouse_up(self, pos) -> None:
        d, self.drag = self.drag, None
        if d["mode"] == "scrub":
            return
        box = self._dragged_box_from(d, pos)
        if box is None or box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
            return  # a click, not a box
        boxes, labels = self._boxes()
        if d["mode"] == "draw":
            boxes.append(box)
            labels.append(self.classes[self.current_class])
            self.selected = len(boxes) - 1
        else:
            if box == list(d["orig"]):
                return
            boxes[d["box"]] = box
        self._save_boxes(boxes, labels)

    def _dragged_box_from(self, d, pos):
        saved, self.drag = self.drag, d
        try:
            return self._dragged_box(pos)
        finally:
            self.drag = saved

    # ------------------------------------------------------------------ drawing

    def draw(self) -> None:
        pg = self.pg
        screen = self.screen
        screen.fill((24, 24, 28))
        r = self.record
        if r is None:
            screen.blit(self.font.render("no frames in this view (A shows all)", True, (230, 230, 230)), (10, 10))
            pg.display.flip()
            return
        image = self.image()
        surface = pg.surfarray.make_surface(np.ascontiguousarray(image.transpose(1, 0, 2)))
        screen.blit(pg.transform.scale(surface, self.image_size), (0, 0))
        for i, (box, label) in enumerate(zip(r.boxes, r.labels)):
            colour = CLASS_COLOURS[self.classes.index(label) % len(CLASS_COLOURS)] if label in self.classes else (255, 255, 255)
            rect = pg.Rect(*(int(v * self.scale) for v in (box[0], box[1])),
                           int((box[2] - box[0]) * self.scale), int((box[3] - box[1]) * self.scale))
            pg.draw.rect(screen, colour, rect, 3 if i == self.selected else 1)
            screen.blit(self.font.render(f"{label} [{r.boxes_source}]", True, colour), (rect.x, max(0, rect.y - 14)))
            if i == self.selected:
                for cx, cy in (rect.topleft, rect.topright, rect.bottomleft, rect.bottomright):
                    pg.draw.rect(screen, colour, pg.Rect(cx - 3, cy - 3, 7, 7))
        if self.drag is not None and self.drag.get("now_box"):
            b = self.drag["now_box"]
            pg.draw.rect(screen, (255, 255, 255), pg.Rect(int(b[0] * self.scale), int(b[1] * self.scale),
                                                          int((b[2] - b[0]) * self.scale), int((b[3] - b[1]) * self.scale)), 1)
        if r.deleted:
            screen.blit(self.font.render("DELETED (X restores)", True, (255, 60, 60)), (10, 10))
        self._draw_panel(r)
        pg.display.flip()

    def _draw_panel(self, r: FrameRecord) -> None:
        pg = self.pg
        y0 = self.image_size[1]
        model = self.model_direction.get(r.index, r.extra.get("model_direction"))
        lines = [
            f"frame {self.pos + 1}/{len(self.view)} (#{r.index}, t={r.timestamp:.2f}s)  filter: {self.filter}   "
            f"direction: {r.direction or '-'} [{r.direction_source or '-'}]"
            + (f"  model: {model}" if model else "")
            + f"   boxes: {len(r.boxes)} [{r.boxes_source or '-'}]   class: {self.current_class + 1} "
              f"{self.classes[self.current_class] if self.classes else '-'}",
            "arrows/PgUp/PgDn/Home/End move  drag: box  1-9 class  Del box  L/S/R direction  Enter confirm  "
            "X delete frame  ^Z undo  U/M/A filter",
            self.status,
        ]
        for i, text in enumerate(lines):
            self.screen.blit(self.font.render(text, True, (230, 230, 230)), (8, y0 + 4 + 16 * i))
        slider = self._slider_rect()
        pg.draw.rect(self.screen, (70, 70, 80), slider)
        if len(self.view) > 1:
            x = slider.x + int(self.pos / (len(self.view) - 1) * slider.width)
            pg.draw.rect(self.screen, (240, 200, 60), pg.Rect(x - 3, slider.y - 2, 6, slider.height + 4))

    # ------------------------------------------------------------------ loop

    def run(self, fps: int = 30) -> None:
        clock = self.pg.time.Clock()
        while self.running:
            self.process_events()
            if self.running:
                self.draw()
                clock.tick(fps)

    def close(self) -> None:
        self.editor.close()
        self.pg.display.quit()


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="truckpilot label", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("session", help="the session directory to review")
    p.add_argument("--draft", nargs="+", metavar="CKPT",
                   help="DIRECTION_CKPT [DETECTOR_CKPT] (.safetensors; '-' skips one): pre-fill unlabelled frames "
                        "from a model, provenance 'model' until confirmed")
    p.add_argument("--scale", type=int, default=2, help="window zoom (default 2)")
    p.add_argument("--filter", choices=FILTERS, default="all", help="start with this filter")
    return p


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    drafter = None
    try:
        if args.draft:
            if len(args.draft) > 2:
                print("truckpilot label: --draft takes DIRECTION_CKPT [DETECTOR_CKPT]", file=sys.stderr)
                return 2
            paths = [None if p == "-" else p for p in args.draft] + [None]
            drafter = ModelDrafter.from_checkpoints(paths[0], paths[1], Session.open(args.session))
        tool = LabelTool(args.session, drafter=drafter, scale=args.scale)
    except (SessionError, ValueError, FileNotFoundError) as exc:
        print(f"truckpilot label: {exc}", file=sys.stderr)
        return 2
    try:
        if args.filter != "all":
            tool.set_filter(args.filter)
        tool.run()
    finally:
        tool.close()
    return 0
