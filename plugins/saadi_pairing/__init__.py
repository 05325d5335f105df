"""saadi first-party plugin: pairing."""
