"""Built-in plugin of the core: registers the embedded datasets and folder loaders."""
