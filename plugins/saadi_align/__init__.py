"""saadi first-party plugin: align."""
