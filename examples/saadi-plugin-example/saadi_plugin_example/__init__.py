"""Example third-party plugin for saadi.

Kept empty on purpose: saadi imports ``saadi_plugin_example.plugin`` while discovering plugins, and
Python imports this package first, so anything here would slow down every ``saadi`` command.
"""
