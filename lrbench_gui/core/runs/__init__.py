"""Trials as processes: the trial file (``trial``), the JSON-lines protocol (``protocol``), one
recorder that turns any event stream into a database record (``recorder``), the subprocess and
its slot queue (``runner``) and the Ray backend (``ray_backend``)."""
