"""``python -m sim ...`` is ``truckpilot sim ...``."""
from .cli import main

raise SystemExit(main())
