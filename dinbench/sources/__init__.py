"""Sources: where behaviours come from before the prepared-data contract takes over."""
