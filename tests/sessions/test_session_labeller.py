"""The labelling tool, driven by real pygame events on the dummy video driver."""
from __future__ import annotations

import pygame
import pytest
from sessionkit import make_session

from agent.recording.labeller import LabelTool
from training.sessions import Session

SCALE = 2


def post_key(key, mod=0):
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=mod, unicode="", scancode=0))


def post_drag(start, end):
    """A left-button drag in screen pixels: down, two motions, up."""
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=start, button=1))
    mid = ((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
    for pos in (mid, end):
        pygame.event.post(pygame.event.Event(pygame.MOUSEMOTION, pos=pos, rel=(0, 0), buttons=(1, 0, 0)))
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, pos=end, button=1))


@pytest.fixture()
def tool_for(tmp_path):
    tools = []

    def open_tool(path, **kwargs):
        tool = LabelTool(path, scale=SCALE, **kwargs)
        tools.append(tool)
        return tool

    yield open_tool
    for tool in tools:
        tool.close()


def pump(tool):
    tool.process_events()
    tool.draw()


def test_draw_class_direction_move_resize_delete_undo_save(tmp_path, tool_for):
    path = make_session(tmp_path / "s", n=5, labelled=False)
    tool = tool_for(path)
    assert tool.index == 0
    # draw a box from frame (10, 8) to (30, 24): screen coordinates are x SCALE
    post_drag((20, 16), (60, 48))
    pump(tool)
    post_key(pygame.K_2)  # class 2 = truck, on the selected (new) box
    post_key(pygame.K_l)  # direction left
    pump(tool)
    r = tool.record
    assert r.boxes == ((10.0, 8.0, 30.0, 24.0),) and r.labels == ("truck",) and r.direction == "left"
    # move it by (+4, +2) frame px, then resize its bottom-right corner to (40, 30)
    post_drag((40, 30), (48, 34))
    pump(tool)
    assert tool.record.boxes == ((14.0, 10.0, 34.0, 26.0),)
    post_drag((68, 52), (80, 60))
    pump(tool)
    assert tool.record.boxes == ((14.0, 10.0, 40.0, 30.0),)
    # a second box, class 1 = car (after a click on empty ground deselects), then deleted with Delete
    post_drag((120, 80), (120, 80))
    pump(tool)
    assert tool.selected is None
    post_key(pygame.K_1)
    post_drag((90, 10), (110, 30))
    pump(tool)
    assert tool.record.labels == ("truck", "car")
    post_key(pygame.K_DELETE)
    pump(tool)
    assert tool.record.labels == ("truck",)
    # next frame: set right, then undo it (Ctrl+Z), then save (Ctrl+S)
    post_key(pygame.K_RIGHT)
    post_key(pygame.K_r)
    pump(tool)
    assert tool.index == 1 and tool.record.direction == "right"
    post_key(pygame.K_z, mod=pygame.KMOD_LCTRL)
    post_key(pygame.K_s, mod=pygame.KMOD_LCTRL)
    pump(tool)
    assert tool.record.direction is None
    # last frame: soft-delete it
    post_key(pygame.K_END)
    post_key(pygame.K_x)
    pump(tool)
    assert tool.index == 4 and tool.record.deleted
    post_key(pygame.K_ESCAPE)
    pump(tool)
    assert not tool.running
    tool.close()

    session = Session.open(path)
    assert len(session) == 4 and session.quarantined == []
    r0, r1 = session.record(0), session.record(1)
    assert r0.boxes == ((14.0, 10.0, 40.0, 30.0),) and r0.labels == ("truck",) and r0.boxes_source == "human"
    assert (r0.direction, r0.direction_source) == ("left", "human")
    assert (r1.direction, r1.boxes, r1.boxes_source) == (None, (), None)
    assert session.record(4).deleted


def test_scrub_filters_and_confirm(tmp_path, tool_for):
    path = make_session(tmp_path / "s", n=40)
    tool = tool_for(path)
    slider = tool._slider_rect()
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(slider.right - 1, slider.centery), button=1))
    pygame.event.post(pygame.event.Event(pygame.MOUSEBUTTONUP, pos=(slider.right - 1, slider.centery), button=1))
    pump(tool)
    assert tool.index == 39
    post_key(pygame.K_HOME)
    post_key(pygame.K_PAGEDOWN)
    pump(tool)
    assert tool.index == 2
    post_key(pygame.K_RETURN)  # confirm frame 2: sim labels become "human"
    post_key(pygame.K_u)  # unlabelled filter: all sim-labelled frames count as labelled
    pump(tool)
    assert tool.filter == "unlabelled" and tool.view == []
    post_key(pygame.K_a)
    pump(tool)
    assert len(tool.view) == 40
    tool.close()
    r = Session.open(path).record(2)
    assert (r.direction_source, r.boxes_source) == ("human", "human")


def test_invalid_edit_is_refused_not_saved(tmp_path, tool_for):
    path = make_session(tmp_path / "s", n=2, labelled=False)
    tool = tool_for(path)
    post_key(pygame.K_9)  # only 4 classes: refused with a message
    pump(tool)
    assert "no class 9" in tool.status
    post_drag((10, 10), (11, 11))  # a click, not a box
    pump(tool)
    assert tool.record.boxes == ()


def test_model_draft_prefills_then_person_confirms(tmp_path, tool_for):
    """--draft with real (random-init, small) checkpoints through Perceiver.from_checkpoints."""
    torch = pytest.importorskip("torch")
    from perception.checkpoint import save_model
    from perception.config import DetectorConfig, DirectionConfig, TrunkConfig
    from perception.detector import SSDNet
    from perception.direction import DirectionNet

    from agent.recording.labeller import ModelDrafter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    trunk = TrunkConfig(weights="none")
    direction_ckpt = save_model(tmp_path / "direction.safetensors",
                                DirectionNet(DirectionConfig(input_size=(64, 64), trunk=trunk), init_trunk_weights=False))
    detector_ckpt = save_model(tmp_path / "detector.safetensors",
                               SSDNet(DetectorConfig(input_size=(64, 64), trunk=trunk), init_trunk_weights=False))
    path = make_session(tmp_path / "s", n=3, labelled=False)
    drafter = ModelDrafter.from_checkpoints(direction_ckpt, detector_ckpt, Session.open(path))
    expected = drafter(Session.open(path).load_image(Session.open(path).record(0)))
    tool = tool_for(path, drafter=drafter)
    pump(tool)
    r = tool.record
    assert (r.direction, r.direction_source) == (expected.direction, "model")
    assert r.boxes == expected.boxes and r.labels == expected.labels and r.boxes_source == "model"
    # the person disagrees with the model's direction on frame 0, and confirms frame 1 as drafted
    other = next(d for d in ("left", "straight", "right") if d != expected.direction)
    post_key({"left": pygame.K_l, "straight": pygame.K_s, "right": pygame.K_r}[other])
    post_key(pygame.K_RIGHT)
    post_key(pygame.K_RETURN)
    post_key(pygame.K_m)  # filter: model disagrees with the label
    pump(tool)
    assert tool.view == [0]
    tool.close()
    session = Session.open(path)
    r0, r1 = session.record(0), session.record(1)
    assert (r0.direction, r0.direction_source, r0.boxes_source) == (other, "human", "model")
    assert (r1.direction_source, r1.boxes_source) == ("human", "human")


def test_label_command_opens_the_window_and_quits(tmp_path):
    """`truckpilot label SESSION --filter unlabelled`: the real entry point, closed by a QUIT event
    posted from another thread (SDL's event queue is thread-safe)."""
    import threading

    from agent.apps.cli import main

    path = make_session(tmp_path / "s", n=3, labelled=False)
    done = threading.Event()

    def close_window_soon():
        done.wait(0.5)
        while not done.is_set():  # until the loop has seen it (posting needs the display up)
            if pygame.display.get_init():
                pygame.event.post(pygame.event.Event(pygame.QUIT))
            done.wait(0.2)

    closer = threading.Thread(target=close_window_soon, daemon=True)
    closer.start()
    try:
        assert main(["label", str(path), "--filter", "unlabelled", "--scale", "1"]) == 0
    finally:
        done.set()
        closer.join()
    assert main(["label", str(tmp_path / "missing")]) == 2
