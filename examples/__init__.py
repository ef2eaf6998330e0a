"""Sample workflows for diachronic, used by the demo and the end-to-end tests (run from the repository root)."""
