"""Studies: planned sets of runs with their own protocol, driver, tables and claims (one package per study)."""
