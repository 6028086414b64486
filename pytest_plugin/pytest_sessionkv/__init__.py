"""pytest plugin of sessionkv: fixtures over :mod:`sessionkv.testing` (registered as the ``sessionkv`` pytest11 entry)."""
