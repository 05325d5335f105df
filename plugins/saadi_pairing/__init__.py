"""saadi first-party plugin: pairing — turns selector scores into preference pairs within one
condition (``threshold``, paper Eq. 3; ``best-worst``). ``plugin.py`` registers them lazily."""
