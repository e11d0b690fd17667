"""rlmodule."""
