"""``truckpilot sessions ls | show | verify | export``."""
from __future__ import annotations

import argparse
import logging
import sys

from training.sessions.records import SessionError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="truckpilot sessions", description="Inspect, verify and export recorded sessions.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ls", help="one line per session under ROOT")
    p.add_argument("root", nargs="?", default="sessions", help="a folder of sessions, or one session (default: sessions)")
    p = sub.add_parser("show", help="a session's manifest, class balance and label counts")
    p.add_argument("session")
    p = sub.add_parser("verify", help="check every record and image; repair to the verified part")
    p.add_argument("sessions", nargs="+", help="session directories (or folders of sessions)")
    p.add_argument("--dry-run", action="store_true", help="report only, change nothing")
    p = sub.add_parser("export", help="plain formats: one image file per frame, CSV image,direction, COCO JSON boxes")
    p.add_argument("session")
    p.add_argument("--out", required=True,
                   help="folder to write images/, labels_directions.csv and coco.json into")
    return parser


def main(argv: list[str]) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except SessionError as exc:
        print(f"truckpilot sessions {args.command}: {exc}", file=sys.stderr)
        return 2


def _ls(args) -> int:
    from training.sessions.store import Session, list_sessions
    from training.sessions.summary import format_table, summarize

    summaries = []
    for path in list_sessions(args.root):
        try:
            summaries.append(summarize(Session.open(path, check_images="none")))
        except SessionError as exc:  # one bad session never hides the rest
            print(f"{path}: unreadable: {exc}", file=sys.stderr)
    print(format_table(summaries))
    return 0


def _show(args) -> int:
    from training.sessions.store import Session
    from training.sessions.summary import format_summary, summarize

    session = Session.open(args.session)
    print(format_summary(summarize(session)))
    for problem in session.quarantined:
        print(f"  quarantined  {problem.file} line {problem.line}: {problem.reason}")
    return 0


def _verify(args) -> int:
    from pathlib import Path

    from training.sessions.store import is_session_dir, list_sessions
    from training.sessions.verify import verify

    worst = 0
    rank = {"clean": 0, "repaired": 0, "lossy": 1, "error": 2}
    for given in args.sessions:
        path = Path(given)
        paths = [path] if not path.is_dir() or is_session_dir(path) else list_sessions(path) or [path]
        for p in paths:
            report = verify(p, repair=not args.dry_run)
            print(report.summary())
            worst = max(worst, rank[report.status])
    return worst


def _export(args) -> int:
    from training.sessions.export import export_session
    from training.sessions.store import Session

    result = export_session(Session.open(args.session), args.out, progress=True)
    print(f"wrote {result.images} images to {args.out}/images, {result.csv_rows} rows to "
          f"{args.out}/labels_directions.csv, {result.coco_images} images / {result.coco_annotations} boxes "
          f"to {args.out}/coco.json")
    return 0


_COMMANDS = {"ls": _ls, "show": _show, "verify": _verify, "export": _export}

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main(sys.argv[1:]))
