"""The sessionkv pytest plugin (fixtures arrive with the plugin issue)."""
