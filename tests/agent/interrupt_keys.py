"""Child program of test_agent_keys_x11.py: Ctrl+C landing inside python-xlib calls.

A thread sends this process SIGINT every 0.3-1 ms for ``argv[1]`` seconds while the main
thread applies and releases Left through X11Keys and reads the keymap through
X11KeymapReader; the handler raises KeyboardInterrupt only inside those calls (elsewhere
it would interrupt this harness). Then, as at exit, it releases everything and closes
both, and prints "interrupts N". It hangs if an interrupt left the connection locked; the
test times it out and checks that no key was left down on the server.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

from agent.io.keys.x11 import X11KeymapReader, X11Keys
from agent.types import KeysHeld


def main(seconds: float) -> int:
    keys, reader = X11Keys(), X11KeymapReader()
    state = {"inside": False, "stop": False}

    def on_sigint(_signum, _frame):
        if state["inside"]:
            state["inside"] = False
            raise KeyboardInterrupt

    def pester():
        while not state["stop"]:
            time.sleep(0.0003 + 0.0007 * (time.monotonic_ns() % 7) / 7)  # the behaviour: SIGINTs at varied moments
            os.kill(os.getpid(), signal.SIGINT)

    signal.signal(signal.SIGINT, on_sigint)
    threading.Thread(target=pester, daemon=True).start()
    interrupts = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            state["inside"] = True
            keys.apply(KeysHeld(left=True))
            reader.down(["Left"])
            keys.apply(KeysHeld())
            state["inside"] = False
        except KeyboardInterrupt:
            interrupts += 1
    state["inside"], state["stop"] = False, True
    reader.down(["Left"])  # the reader's connection works again too
    keys.release_all()
    keys.close()
    reader.close()
    print("interrupts", interrupts, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1])))
