"""A tiny real pygame window for the agent's X11 tests (run as a script).

usage: python window_app.py TITLE X Y W H [--black]
Opens a W x H window titled TITLE at screen X, Y (SDL_VIDEO_WINDOW_POS), draws
four known colour quadrants (top-left red, top-right green, bottom-left blue,
bottom-right white) or all black, prints "READY <pygame window id>" once
shown, then one line per key event: "KEYDOWN <name>" / "KEYUP <name>".
Exits on stdin EOF / "quit" line or a QUIT event.
"""
import os
import select
import sys

QUADRANTS = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 255)}


def main() -> None:
    title, x, y, w, h = sys.argv[1], *map(int, sys.argv[2:6])
    black = "--black" in sys.argv
    os.environ["SDL_VIDEO_WINDOW_POS"] = f"{x},{y}"
    import pygame

    pygame.display.init()
    screen = pygame.display.set_mode((w, h))
    pygame.display.set_caption(title)
    if black:
        screen.fill((0, 0, 0))
    else:
        screen.fill(QUADRANTS["tl"], (0, 0, w // 2, h // 2))
        screen.fill(QUADRANTS["tr"], (w // 2, 0, w - w // 2, h // 2))
        screen.fill(QUADRANTS["bl"], (0, h // 2, w // 2, h - h // 2))
        screen.fill(QUADRANTS["br"], (w // 2, h // 2, w - w // 2, h - h // 2))
    pygame.display.flip()
    print("READY", flush=True)
    clock = pygame.time.Clock()
    while True:
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                return
            if event.type in (pygame.KEYDOWN, pygame.KEYUP):
                kind = "KEYDOWN" if event.type == pygame.KEYDOWN else "KEYUP"
                print(kind, pygame.key.name(event.key), flush=True)
        if select.select([sys.stdin], [], [], 0)[0]:
            line = sys.stdin.readline()
            if not line or line.strip() == "quit":
                return
        pygame.display.flip()
        clock.tick(100)


if __name__ == "__main__":
    main()
