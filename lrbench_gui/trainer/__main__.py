import sys

from lrbench_gui.trainer.run import main

sys.exit(main())
