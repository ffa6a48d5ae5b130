"""Zoo entries, one module per lab or family; each exposes `ENTRIES: list[ZooEntry]`."""
