"""Graph-to-graph passes (imported as `irgraph.passes`)."""
