"""saadi first-party plugin: selectors."""
