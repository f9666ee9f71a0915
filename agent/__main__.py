import sys

from agent.apps.cli import main

sys.exit(main())
