"""Built-in tuners (study kinds): ``search`` (grid, random, bayes, halving), ``range_test``
(range-test, value-range), ``horizon``, ``path_switch`` and ``merge``."""
