"""The surveyed architectures, declared as data (imported as `irgraph.model_zoo`)."""
