"""Notifier plugins, chosen by the scheme of an action URL.

Plugins are registered as ``alarmer.notifier`` entry points in
``setup.cfg``.
"""
