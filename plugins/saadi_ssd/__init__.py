"""saadi first-party plugin: ssd."""
