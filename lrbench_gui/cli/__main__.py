import sys

from lrbench_gui.cli import main

sys.exit(main())
