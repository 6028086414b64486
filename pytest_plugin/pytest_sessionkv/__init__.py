"""The sessionkv pytest plugin: fixtures over :mod:`sessionkv.testing` (pytest11 entry point ``sessionkv``)."""
