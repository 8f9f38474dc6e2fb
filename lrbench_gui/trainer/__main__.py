import sys

if sys.argv[1:] == ["--worker"]:  # a warm worker: trial files on stdin (lrbench_gui.trainer.worker)
    from lrbench_gui.plugins import exit_if_plugin_threads
    from lrbench_gui.trainer.worker import main as worker_main

    status = worker_main()
    exit_if_plugin_threads(status)
    sys.exit(status)

from lrbench_gui.trainer.run import main

sys.exit(main())
