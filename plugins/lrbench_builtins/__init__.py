"""The built-in plugins of lrbench-gui.

Each module is one family and registers through the ``lrbench`` entry-point group exactly like a
third party's plugin (see pyproject.toml): ``classic`` (fixed, step, exp, poly...), ``cyclic``
(CLR triangles, sines, cosines), ``restart`` (SGDR and LRBench's sawtooth family), ``llm``
(warmup + cosine / linear / WSD, one-cycle...) and ``deepspeed`` (DeepSpeed's schedulers).
"""
