"""Built-in LR policies, one module per family: ``classic``, ``cyclic``, ``restart``, ``llm``,
``deepspeed`` and ``finder``."""
